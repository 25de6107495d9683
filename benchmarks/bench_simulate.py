"""Throughput and memory of oncobench's simulator against a per-patient Python loop.

    python benchmarks/bench_simulate.py                    # full run: minutes on 2 idle cores
    python benchmarks/bench_simulate.py --quick            # smoke run, small sizes (~15 s)
    python benchmarks/bench_simulate.py --wait-quiet 1200  # on a shared machine (see below)

Measures, in one run:

1. ``engine.simulate_course`` on CPU, 100,000 patients x 60 days, the confounded policy at
   gamma 2 (15-day window), scans every 3 days, ``compat='none'`` and ``'reference'`` with
   torch threads = ``os.cpu_count()``, and ``'none'`` with 1 thread: one warm-up run, then
   the median of 3 timed runs, in patient-days per second (patients x days / wall seconds;
   the cohort draw is not timed);
2. the literature model as a plain per-patient Python loop
   (``oncobench.models.geng2017_loop.simulate_patient``) on 5,000 patients x 60 days, median
   of 3, in the same unit, and the ratio oncobench / loop;
3. 100,000 patients x 730 days once, in a fresh subprocess (wall time and peak RSS);
4. the full CLI path at 1,000,000 patients x 60 days: ``oncobench cohort`` then
   ``oncobench simulate`` (torch's default threads) in subprocesses with a temporary config,
   each one's wall time and peak resident memory (``ru_maxrss`` of that child, ``os.wait4``).

Shared machines: with OpenMP threads on every core, any other busy process stalls torch by a
factor of 10 or more. Every timed run therefore records the CPU seconds other processes used
meanwhile (from /proc/stat); a repeat during which they used more than 5 % of the CPUs is
discarded and retried (up to 5 x repeats runs; rows without 3 clean repeats are marked NOT
CLEAN). ``--wait-quiet S`` waits up to S seconds for idle CPUs before each measurement.

``--parts engine,loop,long,cli`` runs a subset; ``--profile`` adds a torch.profiler table of
one 100,000 x 60 ``reference`` run; ``--json PATH`` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from oncobench import engine
from oncobench.models import geng2017 as g
from oncobench.models import geng2017_loop as lit

GAMMA = 2.0
WINDOW = 15
SEED = 20171
GIB = 1024**3
CLEAN_LIMIT = 0.05  # a timed run is clean if other processes used <= 5 % of the CPU time meanwhile

FULL = dict(n=100_000, days=60, repeats=3, loop_n=5_000, long_n=100_000, long_days=730, cli_n=1_000_000)
QUICK = dict(n=10_000, days=60, repeats=3, loop_n=500, long_n=5_000, long_days=730, cli_n=20_000)

TARGETS = {
    "patient_days_per_s": 8e6,  # at 100k x 60 on CPU
    "peak_rss_bytes": 8 * GIB,  # at 1M x 60 through the CLI
    "literature_steps_per_s": 80_000,  # the literature generator, quoted (not measured here)
}


# --------------------------------------------------------------------------- machine
def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(mem / GIB, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def code_version() -> dict:
    """The commit of the working tree and the uncommitted changes under src/oncobench."""
    root = Path(__file__).resolve().parent.parent

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    return {"commit": git("rev-parse", "HEAD"), "src_changes": git("status", "--porcelain", "--", "src/oncobench").splitlines()}


def cpu_busy_s() -> float:
    """CPU seconds spent busy by every process on the machine so far (from /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Others:
    """CPU seconds other processes used while the block ran (our own process time subtracted).

    The machine may be shared: with torch's OpenMP threads on every core, another busy
    process stalls each parallel region, so timings taken next to one are not representative.
    """

    def __enter__(self) -> "Others":
        self.busy0, self.self0 = cpu_busy_s(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = max(0.0, (cpu_busy_s() - self.busy0) - (time.process_time() - self.self0))


def wait_quiet(max_wait_s: float, busy_limit: float = 0.1) -> float:
    """Wait until the machine's CPUs are less than ``busy_limit`` busy over 2 s, at most
    ``max_wait_s``; return the busy fraction last seen."""
    deadline = time.monotonic() + max_wait_s
    ncpu = os.cpu_count() or 1
    while True:
        b0 = cpu_busy_s()
        time.sleep(2.0)
        frac = (cpu_busy_s() - b0) / (2.0 * ncpu)
        if frac < busy_limit or time.monotonic() >= deadline:
            return frac
        print(f"machine {frac:.0%} busy; waiting for it to go quiet", flush=True)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------- oncobench engine
def run_engine(cohort: g.Geng2017Cohort, days: int, compat: str) -> engine.Course:
    return engine.simulate_course(
        cohort, seed=SEED, days=days, compat=compat,
        treatment=engine.Policy(GAMMA, WINDOW), observation=engine.Observation(3, 0.05),
    )


def timed_clean(fn, repeats: int, max_attempts: int) -> dict:
    """Time ``fn()`` until ``repeats`` runs were *clean* (other processes used at most
    ``CLEAN_LIMIT`` of the machine's CPU time meanwhile), at most ``max_attempts`` runs.
    Without enough clean runs, the median is over every run and ``clean`` is False."""
    ncpu = os.cpu_count() or 1
    runs = []
    for _ in range(max_attempts):
        with Others() as o:
            t0 = time.perf_counter()
            extra = fn()
            dt = time.perf_counter() - t0
        runs.append({"s": dt, "others_cpu_s": o.seconds, "clean": o.seconds <= CLEAN_LIMIT * dt * ncpu, "extra": extra})
        if sum(r["clean"] for r in runs) >= repeats:
            break
    good = [r for r in runs if r["clean"]]
    clean = len(good) >= repeats
    used = good if clean else runs
    return {
        "seconds": [r["s"] for r in used],
        "others_cpu_s": [r["others_cpu_s"] for r in used],
        "median_s": statistics.median(r["s"] for r in used),
        "clean": clean,
        "attempts": len(runs),
        "discarded_s": [round(r["s"], 3) for r in runs if not r["clean"]] if clean else [],
        "extra": used[-1]["extra"],
    }


def bench_engine(n: int, days: int, compat: str, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    try:
        cohort = g.draw_cohort(SEED, torch.arange(n))
        run_engine(cohort, days, compat)  # warm-up
        def run() -> None:
            run_engine(cohort, days, compat)

        t = timed_clean(run, repeats, 5 * repeats)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    t.pop("extra")
    return {"n": n, "days": days, "compat": compat, "threads": threads, **t, "patient_days_per_s": n * days / t["median_s"]}


# --------------------------------------------------------------------------- per-patient loop
def bench_loop(n: int, days: int, repeats: int) -> dict:
    rng = np.random.default_rng(SEED)
    params = lit.draw_params(n, rng)
    patients = [lit.patient(params, i) for i in range(n)]

    def run() -> int:
        steps = 0
        for p in patients:
            r = lit.simulate_patient(p, days, GAMMA, rng, WINDOW)
            steps += r["sequence_length"]  # loop iterations t = 1 .. last t
        return steps

    t = timed_clean(run, repeats, 5 * repeats)
    steps = t.pop("extra")
    return {"n": n, "days": days, **t, "patient_days_per_s": n * days / t["median_s"],
            "executed_steps_per_s": steps / t["median_s"]}


# --------------------------------------------------------------------------- subprocesses
def run_measured(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd``; return its exit code, wall time and peak RSS (its own ``ru_maxrss``)."""
    with open(log, "wb") as fh:
        busy0, self0 = cpu_busy_s(), time.process_time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        busy = cpu_busy_s() - busy0 - (time.process_time() - self0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    return {
        "cmd": " ".join(cmd),
        "returncode": proc.returncode,
        "wall_s": wall,
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "others_cpu_s": max(0.0, busy - (usage.ru_utime + usage.ru_stime)),
        "log_tail": text[-1500:],
    }


def bench_long(n: int, days: int, workdir: Path) -> dict:
    """``n`` x ``days`` once, in a fresh interpreter, so its peak RSS is its own."""
    res = run_measured(
        [sys.executable, str(Path(__file__).resolve()), "--_child-long", str(n), str(days)], workdir / "long.log"
    )
    if res["returncode"] != 0:
        raise RuntimeError(f"long run failed:\n{res['log_tail']}")
    child = json.loads(res["log_tail"].strip().splitlines()[-1])
    child.update(peak_rss_bytes=res["peak_rss_bytes"], process_wall_s=res["wall_s"], others_cpu_s=res["others_cpu_s"])
    return child


def _child_long(n: int, days: int) -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    cohort = g.draw_cohort(SEED, torch.arange(n))
    t0 = time.perf_counter()
    course = run_engine(cohort, days, "none")
    dt = time.perf_counter() - t0
    alive = int((course.status == g.STATUS_ALIVE).sum())
    print(json.dumps({"n": n, "days": days, "compat": "none", "seconds": dt, "patient_days_per_s": n * days / dt, "alive_at_end": alive}))


def bench_cli(n: int, workdir: Path) -> dict:
    cfg = workdir / "bench.yaml"
    cfg.write_text(f"cohort: {{n_patients: {n}, shards: 1}}\npolicy: {{gamma: [{GAMMA:g}]}}\n")
    cli = [sys.executable, "-m", "oncobench.cli"]
    cohort_out, traj_out = workdir / "cohort.parquet", workdir / "traj.parquet"
    steps = {
        "cohort": cli + ["cohort", "--config", str(cfg), "--shard", "0", "--out", str(cohort_out)],
        "simulate": cli + ["simulate", "--config", str(cfg), "--cohort", str(cohort_out), "--gamma", f"{GAMMA:g}", "--out", str(traj_out)],
    }
    out = {"n": n, "days": 60, "config": cfg.read_text()}
    for name, cmd in steps.items():
        res = run_measured(cmd, workdir / f"{name}.log")
        if res["returncode"] != 0:
            raise RuntimeError(f"oncobench {name} failed (exit {res['returncode']}):\n{res['log_tail']}")
        out[name] = res
    out["cohort_bytes"] = cohort_out.stat().st_size
    out["trajectory_bytes"] = traj_out.stat().st_size
    return out


# --------------------------------------------------------------------------- profile
def profile(n: int, days: int, compat: str, attempts: int = 5) -> str:
    """torch.profiler table of one run, retried (up to ``attempts``) until no other process
    competed for the CPUs: with OpenMP on every core, a competitor turns every operator into
    a multi-millisecond stall and the table shows contention, not the engine."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    cohort = g.draw_cohort(SEED, torch.arange(n))
    run_engine(cohort, days, compat)
    ncpu = os.cpu_count() or 1
    for _ in range(attempts):
        with Others() as o:
            t0 = time.perf_counter()
            with tprofile(activities=[ProfilerActivity.CPU]) as prof:
                run_engine(cohort, days, compat)
            dt = time.perf_counter() - t0
        clean = o.seconds <= CLEAN_LIMIT * dt * ncpu
        if clean:
            break
    note = "" if clean else f" (NOT CLEAN: other processes used {o.seconds:.1f} CPU s)"
    return f"wall {dt:.3f} s under the profiler{note}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)


# --------------------------------------------------------------------------- report
def fmt_rate(x: float) -> str:
    return f"{x / 1e6:,.2f} M" if x >= 1e6 else f"{x / 1e3:,.1f} k"


def report(res: dict) -> str:
    m = res["machine"]
    ncpu = m["cpu_count"]
    busy = "n/a" if res.get("busy_before") is None else f"{res['busy_before']:.0%}"
    lines = [
        "Machine",
        f"  CPU        {m['cpu_model']} ({m['cpu_count']} logical CPUs, {m['cpus_usable']} usable)",
        f"  RAM        {m['ram_gib']} GiB",
        f"  software   Python {m['python']}, torch {m['torch']}, numpy {m['numpy']}",
        f"  load avg   start {res['load_start']}, end {res['load_end']}; CPUs busy just before start: {busy}",
        f"  code       commit {res['code']['commit'][:12]}; uncommitted under src/oncobench: "
        f"{', '.join(res['code']['src_changes']) or 'none'}",
        "",
        f"{'what':62s} {'median s':>9s} {'patient-days/s':>15s} {'others CPU s':>13s}",
    ]

    def row(what: str, sec: float, rate: float, others: list[float] | float | None, clean: bool = True) -> str:
        if isinstance(others, list):
            others = max(others) if others else None
        o = "" if others is None else f"{others:13.2f}"
        return f"{what:62s} {sec:9.3f} {fmt_rate(rate):>15s} {o}{'' if clean else '  NOT CLEAN'}"

    for e in res["engine"]:
        what = f"oncobench engine {e['n']:,} x {e['days']}, compat={e['compat']}, {e['threads']} thread(s)"
        lines.append(row(what, e["median_s"], e["patient_days_per_s"], e["others_cpu_s"], e["clean"]))
    lp = res["loop"]
    if lp is not None:
        lines.append(row(f"per-patient Python loop (geng2017_loop) {lp['n']:,} x {lp['days']}", lp["median_s"],
                         lp["patient_days_per_s"], lp["others_cpu_s"], lp["clean"]))
        lines.append(f"{'  (loop steps actually executed per s)':62s} {'':9s} {fmt_rate(lp['executed_steps_per_s']):>15s}")
    lg = res["long"]
    if lg is not None:
        lines.append(row(f"oncobench engine {lg['n']:,} x {lg['days']}, compat=none, once", lg["seconds"],
                         lg["patient_days_per_s"], lg.get("others_cpu_s")))
    lines.append("  ('others CPU s': CPU seconds other processes used during a timed run, worst kept repeat; medians are")
    lines.append(f"   over {res['sizes']['repeats']} clean repeats, runs during which others used > {CLEAN_LIMIT:.0%} of the CPUs are")
    lines.append("   discarded and retried; NOT CLEAN marks rows without enough clean repeats. Single runs are not retried.)")
    lines.append("")
    for e in res["engine"]:
        ratio = f"{e['patient_days_per_s'] / lp['patient_days_per_s']:,.1f}x" if lp is not None else "n/a"
        lines.append(
            f"ratio oncobench ({e['compat']}, {e['threads']} thread(s)) / per-patient loop: {ratio}; "
            f"/ the literature generator as quoted (80,000 patient-steps/s, not measured here): "
            f"{e['patient_days_per_s'] / TARGETS['literature_steps_per_s']:,.0f}x"
        )
    if lg is not None:
        lines.append(f"{lg['n']:,} x {lg['days']} days: peak RSS {lg['peak_rss_bytes'] / GIB:.2f} GiB (fresh process), "
                     f"{lg['alive_at_end']:,} rows alive at the end")
    c = res["cli"]
    if c is not None:
        lines += ["", f"CLI path, {c['n']:,} patients x {c['days']} days (config: {c['config'].strip()!r})",
                  f"{'step':10s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS GiB':>13s} {'others CPU s':>13s}"]
        for step in ("cohort", "simulate"):
            st = c[step]
            lines.append(f"{step:10s} {st['wall_s']:8.1f} {st['cpu_s']:8.1f} {st['peak_rss_bytes'] / GIB:13.2f} {st['others_cpu_s']:13.1f}")
        lines.append(f"outputs: cohort {c['cohort_bytes'] / 1e6:,.1f} MB, trajectories {c['trajectory_bytes'] / 1e6:,.1f} MB "
                     f"({c['n'] * c['days'] / c['simulate']['wall_s'] / 1e6:.2f} M patient-days/s end to end for simulate)")
    lines += ["", "Targets"]
    for e in res["engine"]:
        if e["threads"] != ncpu:
            continue
        ok = e["patient_days_per_s"] >= TARGETS["patient_days_per_s"]
        lines.append(f"  >= 8 M patient-days/s at {e['n']:,} x {e['days']} ({e['compat']}): "
                     f"{'MET' if ok else 'MISSED'} ({fmt_rate(e['patient_days_per_s'])})")
    if c is not None:
        peak = max(c["cohort"]["peak_rss_bytes"], c["simulate"]["peak_rss_bytes"])
        lines.append(f"  peak RSS < 8 GiB at {c['n']:,} x 60 via the CLI: "
                     f"{'MET' if peak < TARGETS['peak_rss_bytes'] else 'MISSED'} ({peak / GIB:.2f} GiB)")
    if res.get("quick"):
        lines.append("  (--quick: sizes are below the targets' sizes; the verdicts above are indicative only)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--profile", action="store_true", help="add a torch.profiler table of one engine run")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--skip-cli", action="store_true", help="skip the CLI memory measurement")
    ap.add_argument("--parts", default="engine,loop,long,cli",
                    help="comma-separated subset of engine,loop,long,cli to run (default: all)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each measurement, wait up to S seconds for other processes to leave the CPUs idle")
    ap.add_argument("--_child-long", nargs=2, type=int, metavar=("N", "DAYS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child_long:
        _child_long(*args._child_long)
        return 0

    torch.set_num_threads(os.cpu_count() or 1)
    sizes = QUICK if args.quick else FULL
    res: dict = {"quick": args.quick, "sizes": sizes, "machine": machine(), "code": code_version(), "argv": sys.argv}
    quiet = (lambda: wait_quiet(args.wait_quiet)) if args.wait_quiet > 0 else (lambda: None)
    res["busy_before"] = quiet()
    res["load_start"] = loadavg()
    print(f"sizes: {sizes}", flush=True)
    parts = set(args.parts.split(","))
    if args.skip_cli:
        parts.discard("cli")
    res["engine"], res["loop"], res["long"], res["cli"] = [], None, None, None
    ncpu = os.cpu_count() or 1
    if "engine" in parts:
        for compat, threads in (("none", ncpu), ("reference", ncpu), ("none", 1)):
            quiet()
            e = bench_engine(sizes["n"], sizes["days"], compat, sizes["repeats"], threads)
            print(f"engine {compat}, {threads} thread(s): {[round(x, 3) for x in e['seconds']]} s -> "
                  f"{fmt_rate(e['patient_days_per_s'])} patient-days/s (clean: {e['clean']}, other processes used "
                  f"{[round(x, 2) for x in e['others_cpu_s']]} CPU s; discarded runs {e['discarded_s']})", flush=True)
            res["engine"].append(e)
    if "loop" in parts:
        quiet()
        res["loop"] = bench_loop(sizes["loop_n"], sizes["days"], sizes["repeats"])
        print(f"loop: {[round(x, 3) for x in res['loop']['seconds']]} s -> {fmt_rate(res['loop']['patient_days_per_s'])} "
              f"patient-days/s (clean: {res['loop']['clean']})", flush=True)
    with tempfile.TemporaryDirectory(prefix="oncobench-bench-") as tmp:
        tmpdir = Path(tmp)
        if "long" in parts:
            quiet()
            res["long"] = bench_long(sizes["long_n"], sizes["long_days"], tmpdir)
            print(f"long: {res['long']['seconds']:.2f} s, peak RSS {res['long']['peak_rss_bytes'] / GIB:.2f} GiB", flush=True)
        if "cli" in parts:
            quiet()
            res["cli"] = bench_cli(sizes["cli_n"], tmpdir)
            print(f"cli: cohort {res['cli']['cohort']['wall_s']:.1f} s, simulate {res['cli']['simulate']['wall_s']:.1f} s", flush=True)
    res["load_end"] = loadavg()
    print()
    print(report(res))
    if args.profile:
        quiet()
        res["profile"] = profile(sizes["n"], sizes["days"], "reference")
        print("\ntorch.profiler, one run of", sizes["n"], "x", sizes["days"], "compat=reference\n" + res["profile"])
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
