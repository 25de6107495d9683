"""Throughput of the NSCLC model's batched simulator against the backbone's per-patient loop.

    python benchmarks/bench_nsclc.py                    # 100,000 patients x 730 days (minutes)
    python benchmarks/bench_nsclc.py --quick            # 5,000 x 730, smoke run
    python benchmarks/bench_nsclc.py --wait-quiet 600   # on a shared machine

Measures, in one run:

1. ``oncobench.nsclc.simulator.simulate`` on CPU for 100,000 patients over 2 years (730 days):
   the default cohort (western population), each patient on their guideline first-line regimen
   (osimertinib, alectinib, pembrolizumab alone or with chemotherapy) with the model's pathway
   to later lines, scans every 6 weeks; one warm-up, then the median of ``--repeats`` timed
   runs, in patient-days per second (patients x days / wall seconds; the cohort and latent
   draws are not timed). Torch threads = ``os.cpu_count()``.
2. The baseline named by the issue: the backbone's per-patient Python loop of the literature
   generator (``oncobench.models.geng2017_loop.simulate_patient``, the same loop
   ``bench_simulate.py`` uses), 2,000 patients x 60 days, median of 3, and the ratio.

The target is 2,000,000 patient-days per second at 100,000 x 730 on CPU. Timed runs next to
other busy processes are retried as in ``bench_simulate.py`` (same helpers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_simulate import bench_loop, code_version, machine, timed_clean, wait_quiet  # noqa: E402

from oncobench.config import load_config  # noqa: E402
from oncobench.nsclc import policies  # noqa: E402
from oncobench.nsclc.model import NsclcModel  # noqa: E402
from oncobench.nsclc.simulator import Assignment, Schedule, simulate  # noqa: E402

TARGET = 2e6


def bench_nsclc(n: int, days: int, repeats: int) -> dict:
    cfg = load_config(overrides={"nsclc": {"horizon_days": days}})
    m = NsclcModel.from_config(cfg)
    pop, lat = m.draw(torch.arange(n))
    reg = m.library.indices(policies.GUIDELINE_REGIMENS)[policies.guideline_index(pop)]
    assignment = Assignment(reg, torch.full((n,), -1, dtype=torch.int64))
    schedule = Schedule(days=days, scan_days=tuple(range(42, days, 42)))
    table = m.tables("cpu")

    def run():
        out = simulate(pop, lat, assignment, schedule, m.params, m.library, seed=cfg.seed, tables=table)
        return float(out.os_event.double().mean())

    run()  # warm-up
    t = timed_clean(run, repeats, 3 * repeats)
    died = t.pop("extra")
    return {"n": n, "days": days, **t, "patient_days_per_s": n * days / t["median_s"], "share_died": died}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--wait-quiet", type=float, default=0.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    n = 5_000 if args.quick else 100_000
    report = {"machine": machine(), "code": code_version(), "target_patient_days_per_s": TARGET}
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    t0 = time.time()
    report["nsclc"] = bench_nsclc(n, 730, args.repeats)
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    report["loop"] = bench_loop(2_000 if not args.quick else 300, 60, 3)
    ratio = report["nsclc"]["patient_days_per_s"] / report["loop"]["patient_days_per_s"]
    report["ratio_vs_loop"] = ratio
    a, b = report["nsclc"], report["loop"]
    print(f"machine: {report['machine']['cpu_model']}, {report['machine']['cpu_count']} CPUs, torch threads {torch.get_num_threads()}")
    print(f"nsclc simulator  {a['n']:>7} x {a['days']} days: {a['patient_days_per_s'] / 1e6:6.2f} M patient-days/s "
          f"(median of {len(a['seconds'])}: {a['median_s']:.1f} s{'' if a['clean'] else ', NOT CLEAN'})")
    print(f"per-patient loop {b['n']:>7} x {b['days']} days: {b['patient_days_per_s'] / 1e6:6.3f} M patient-days/s "
          f"(geng2017_loop, the backbone's baseline{'' if b['clean'] else ', NOT CLEAN'})")
    print(f"ratio nsclc / loop: {ratio:.1f}x; target {TARGET / 1e6:.1f} M patient-days/s: "
          f"{'met' if a['patient_days_per_s'] >= TARGET else 'NOT met'}; total {time.time() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
