"""Figures of the workflow's results, drawn with matplotlib's Agg canvas.

Each function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
figure state, no display needed); the caller saves it.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
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
