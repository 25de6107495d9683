"""Figures of the verify stage: SBC rank histograms with binomial bands, the HPD coverage curve,
recovery scatter plots, and the realism classifier's accuracy against its null."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from oncobench.figures import _figure

# Rank histogram: bins, and the central probability of the binomial band (Talts et al. use 99%).
RANK_BINS = 20
BAND = 0.99


def plot_sbc_ranks(ranks: pd.DataFrame) -> Figure:
    """One histogram per parameter (SbcRank table), with the band a uniform rank histogram's bin
    counts fall in with probability ``BAND`` (binomial, per bin)."""
    params = list(dict.fromkeys(ranks["parameter"]))
    fig, axes = _figure(max(len(params), 1), max_cols=4, panel_size=(3.2, 2.6))
    for ax, name in zip(axes, params):
        d = ranks[ranks["parameter"] == name]
        n_samples = int(d["n_samples"].iloc[0])
        b = len(d)
        bins = np.minimum((d["rank"].to_numpy() * RANK_BINS) // (n_samples + 1), RANK_BINS - 1)
        counts = np.bincount(bins, minlength=RANK_BINS)
        lo, hi = stats.binom.interval(BAND, b, 1.0 / RANK_BINS)
        ax.axhspan(lo, hi, color="0.85", label=f"{BAND:.0%} band")
        ax.axhline(b / RANK_BINS, color="0.5", lw=0.8)
        ax.bar(np.arange(RANK_BINS), counts, width=0.9, color="tab:blue")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_xlabel(f"rank bin (of {RANK_BINS})", fontsize=7)
    if not params:
        axes[0].text(0.5, 0.5, "no ranks", ha="center", va="center")
    fig.suptitle(f"SBC ranks of {len(ranks) // max(len(params), 1)} held-out simulations")
    return fig


def plot_coverage(coverage: pd.DataFrame) -> Figure:
    """Empirical HPD coverage against nominal level, per posterior, with +-2 SE around the
    diagonal (below: over-confident)."""
    fig, (ax,) = _figure(1, panel_size=(4.4, 4.0))
    lv = np.linspace(0.0, 1.0, 101)
    n = int(coverage["n"].iloc[0]) if len(coverage) else 1
    se = np.sqrt(lv * (1 - lv) / n)
    ax.fill_between(lv, lv - 2 * se, lv + 2 * se, color="0.85", label="nominal ± 2 SE")
    ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
    for (name, d), color in zip(coverage.groupby("posterior", sort=False), ("tab:blue", "tab:red", "tab:green")):
        ax.plot(d["level"], d["empirical"], marker="o", ms=3, color=color, label=name)
    ax.set_xlabel("nominal HPD level")
    ax.set_ylabel("empirical coverage")
    ax.legend(fontsize=8)
    ax.set_title(f"Expected coverage, {n} held-out simulations", fontsize=9)
    return fig


def plot_recovery(recovery: dict[str, np.ndarray]) -> Figure:
    """Posterior mean against truth per parameter on held-out simulations (rows: truth, mean)."""
    names = list(recovery)
    fig, axes = _figure(max(len(names), 1), max_cols=4, panel_size=(3.0, 2.8))
    for ax, name in zip(axes, names):
        t, m = recovery[name]
        sst = float(((t - t.mean()) ** 2).sum())
        r2 = 1.0 - float(((t - m) ** 2).sum()) / sst if sst > 0 else float("nan")
        ax.scatter(t, m, s=3, alpha=0.5)
        lo, hi = float(min(t.min(), m.min())), float(max(t.max(), m.max()))
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
        ax.set_title(f"{name}\nR² = {r2:.2f}", fontsize=8)
        ax.set_xlabel("true", fontsize=7)
        ax.set_ylabel("posterior mean", fontsize=7)
    fig.suptitle("Recovery on held-out simulations")
    return fig


def plot_realism(realism: pd.DataFrame) -> Figure:
    """The C2ST accuracy against its permutation null and the analytic gate."""
    fig, (ax,) = _figure(1, panel_size=(4.4, 3.2))
    null = realism.loc[realism["kind"] == "permutation", "accuracy"].to_numpy()
    observed = float(realism.loc[realism["kind"] == "observed", "accuracy"].iloc[0])
    gate = float(realism["threshold"].iloc[0])
    if len(null):
        ax.hist(null, bins=max(5, int(math.sqrt(len(null))) + 2), color="0.7", label=f"permutation null ({len(null)})")
    ax.axvline(gate, color="black", ls="--", label=f"gate {gate:.3f}")
    ax.axvline(observed, color="tab:red", lw=2, label=f"observed {observed:.3f}")
    ax.set_xlabel("cross-validated accuracy")
    ax.legend(fontsize=8)
    ax.set_title(str(realism["subject"].iloc[0]), fontsize=9)
    return fig


__all__ = ["plot_coverage", "plot_realism", "plot_recovery", "plot_sbc_ranks"]
