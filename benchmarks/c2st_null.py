"""The null distribution of the verify gate's prior-vs-DAP C2ST, against the binomial SD it assumes.

    python benchmarks/c2st_null.py [--reps 100] [--n 300]

Draws two samples of ``n`` from one normal ``reps`` times and scores each pair with
``sbi.diagnostics.sbc.check_prior_vs_dap`` (the classifier the verify stage uses, on one
parameter), then prints the mean, SD and maximum of the accuracies, the share above the gate
1/2 + z/(2 sqrt(2n)) of ``inverse.diagnostics`` and the binomial SD 1/(2 sqrt(2n)) that gate
assumes. ``z`` and the default ``n`` are the default config's (``verify.thresholds.dap_c2st_z``,
``verify.test_patients``). Not a timing benchmark.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from sbi.diagnostics.sbc import check_prior_vs_dap

from oncobench.config import load_config


def main() -> None:
    verify = load_config().verify
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--n", type=int, default=verify.test_patients, help="draws per sample (the verify stage's test simulations)")
    args = ap.parse_args()
    torch.manual_seed(0)
    t = time.perf_counter()
    acc = np.array([float(check_prior_vs_dap(0.5 * torch.randn(args.n, 1), 0.5 * torch.randn(args.n, 1))[0]) for _ in range(args.reps)])
    binomial = 1.0 / (2.0 * math.sqrt(2 * args.n))
    gate = 0.5 + verify.thresholds.dap_c2st_z * binomial
    print(
        f"{args.reps} null C2STs of 2 x {args.n}, {time.perf_counter() - t:.0f} s: mean {acc.mean():.4f}, "
        f"SD {acc.std(ddof=1):.4f} (binomial {binomial:.4f}), max {acc.max():.4f}, above the gate {gate:.4f}: {(acc > gate).mean():.3f}"
    )


if __name__ == "__main__":
    main()
