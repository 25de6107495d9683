"""Figures of the workflow's results, drawn with matplotlib's Agg canvas.

Each function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
figure state, no display needed); the caller saves it.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from oncobench.models import geng2017 as g


def _figure(n_panels: int, *, panel_size: tuple[float, float] = (3.6, 3.2), max_cols: int = 4, sharey: bool = False):
    cols = min(n_panels, max_cols)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=sharey)).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def plot_recovery(predictions: pd.DataFrame) -> Figure:
    """Predicted against true value of each recovered parameter (RecoveryPrediction table).

    One panel per parameter: the posterior mean of every held-out patient with a +-1 SD bar,
    the identity line, and R^2 in the title.
    """
    params = list(dict.fromkeys(predictions["parameter"]))
    fig, axes = _figure(max(len(params), 1), max_cols=3)
    for ax, name in zip(axes, params):
        d = predictions[predictions["parameter"] == name]
        t = d["true_value"].to_numpy()
        m = d["predicted_mean"].to_numpy()
        s = d["predicted_sd"].to_numpy()
        sst = float(((t - t.mean()) ** 2).sum())
        r2 = 1.0 - float(((t - m) ** 2).sum()) / sst if sst > 0 else float("nan")
        ax.errorbar(t, m, yerr=s, fmt="o", ms=2, lw=0.4, alpha=0.35, color="tab:blue", ecolor="tab:blue")
        lo = float(np.nanmin(np.concatenate([t, m - s]))) if len(t) else 0.0
        hi = float(np.nanmax(np.concatenate([t, m + s]))) if len(t) else 1.0
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, ls="--", label="identity")
        ax.set_title(f"{name}\nR² = {r2:.3f}, n = {len(d)}", fontsize=9)
        ax.set_xlabel("true value")
        ax.set_ylabel("predicted mean ± 1 SD")
    if not params:
        axes[0].text(0.5, 0.5, "no predictions", ha="center", va="center")
    fig.suptitle("Parameter recovery on held-out release patients")
    return fig


def plot_trajectories_by_treatment(days: np.ndarray, by_regimen: Mapping[str, np.ndarray]) -> Figure:
    """Tumour volume (cm3, log scale) of the same patients under each regimen.

    Args:
        days: the day axis, shape (days,).
        by_regimen: regimen name -> volumes of shape (patients, days), rows in the same
            patient order for every regimen (so a patient keeps its colour across panels).

    Returns:
        One panel per regimen, sharing the y axis, with the death threshold dashed. Volumes of
        zero (recovered) are not drawn on the log axis.
    """
    names = list(by_regimen)
    fig, axes = _figure(max(len(names), 1), sharey=True)
    colours = [f"C{i % 10}" for i in range(max((len(v) for v in by_regimen.values()), default=0))]
    for ax, name in zip(axes, names):
        vol = np.asarray(by_regimen[name], dtype=np.float64)
        for i, row in enumerate(vol):
            ax.plot(days, np.where(row > 0, row, np.nan), lw=0.9, alpha=0.8, color=colours[i])
        ax.axhline(g.DEATH_VOLUME_CM3, color="black", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("day")
    if len(names):
        axes[0].set_ylabel("tumour volume (cm³)")
    else:
        axes[0].text(0.5, 0.5, "no regimens", ha="center", va="center")
    fig.suptitle("Tumour volume by treatment (same patients, common random numbers); dashed: death")
    return fig


def save(fig, path) -> None:
    """Save a figure atomically as PNG (150 dpi)."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=150, format="png")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def plot_survival_by_regimen(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, title: str) -> Figure:
    """Kaplan-Meier curves (x in months) of the same patients under each regimen, one axis."""
    fig, axes = _figure(1, panel_size=(7.0, 4.2))
    ax = axes[0]
    for i, (name, (t, s)) in enumerate(curves.items()):
        ax.step(t, s, where="post", lw=1.2, color=f"C{i % 10}", label=name)
    ax.set_xlabel("months from start of first-line treatment")
    ax.set_ylabel("overall survival")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    return fig
