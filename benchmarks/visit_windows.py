"""Would visit windows move the simulated PFS medians? A post-hoc approximation, one trial per row.

    python benchmarks/visit_windows.py keynote024 keynote010 keynote407 keynote189

The simulator scans every patient on the trial's scheduled days, so a progression is dated on a
scan week; real trials scan within a window (commonly +-7 days). This replays each shipped trial
with the shipped parameters (seed 20171, 40 replicates, as ``docs/calibration.md``), then shifts
every progression that is not a death by an integer day drawn from U{-w..w} (numpy seed 0) and
reanalyses. The tumour's growth during the shift is ignored, so this bounds the effect of windows
on the Kaplan-Meier medians rather than simulating them. Not a timing benchmark.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from oncobench.nsclc import params as pm
from oncobench.nsclc.regimens import load_library
from oncobench.trials import analysis, runner
from oncobench.trials.spec import shipped_specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trials", nargs="+", help="shipped trial names")
    ap.add_argument("--window-days", type=int, default=7)
    ap.add_argument("--replicates", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(2)
    params, library = pm.load_parameters(), load_library()
    draw = np.random.default_rng(0)
    w = args.window_days
    print(f"PFS medians (months), mean and 2.5-97.5% over {args.replicates} replicates: scheduled scans | +-{w}-day windows")
    for name in args.trials:
        spec = shipped_specs()[name]
        df = runner.run_trial(spec, params, library, seed=20171, replicates=args.replicates)
        shifted = df.copy()
        progression = shifted.pfs_event.astype(bool) & ~(shifted.os_event.astype(bool) & (shifted.os_days == shifted.pfs_days))
        shift = draw.integers(-w, w + 1, int(progression.sum()))
        shifted.loc[progression, "pfs_days"] = (shifted.loc[progression, "pfs_days"] + shift).clip(lower=1)
        rows = []
        for frame in (df, shifted):
            s = analysis.summarise(analysis.analyse_trial(frame, spec), spec)
            rows.append(s[(s.endpoint == "pfs") & s.statistic.str.startswith("median")].set_index("statistic"))
        for stat in rows[0].index:
            a, b = rows[0].loc[stat], rows[1].loc[stat]
            print(
                f"{name:11s} {stat:27s} published {a.published_text:>5s}: "
                f"{a.simulated_mean:5.2f} ({a.simulated_lower:.2f}-{a.simulated_upper:.2f}) | "
                f"{b.simulated_mean:5.2f} ({b.simulated_lower:.2f}-{b.simulated_upper:.2f})"
            )


if __name__ == "__main__":
    main()
