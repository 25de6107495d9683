"""Command-line interface: one subcommand per workflow stage (``oncobench <stage> ...``).

Files are read and written here and in ``oncobench.io``; the science modules take and return
tensors, dataclasses and data frames. A user error (config, input file, plug-in model) ends
the command with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from oncobench.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("oncobench")

_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Config], None]]] = {}


def command(name: str, setup: Callable[[argparse.ArgumentParser], None]):
    """Register a stage: ``setup`` adds its arguments, the decorated function runs it."""

    def deco(fn: Callable[[argparse.Namespace, Config], None]):
        _COMMANDS[name] = (setup, fn)
        return fn

    return deco


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when available, else CPU; an unavailable CUDA device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config key 'device': {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def stamp_for(cfg: Config, **extra: object):
    from oncobench.io import Stamp

    return Stamp(config_hash=cfg.hash(), seed=cfg.seed, extra=tuple((k, str(v)) for k, v in sorted(extra.items())))


# --------------------------------------------------------------------------- config
def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="config_json", default=None, help="the whole config as JSON (instead of --config)")
    p.add_argument("--out", type=Path, required=True, help="resolved config (YAML, defaults filled)")


@command("config", _config_args)
def _config(args: argparse.Namespace, cfg: Config) -> None:
    """Validate a config and write it with every default filled in."""
    import json

    import yaml

    from oncobench.config import from_mapping
    from oncobench.io import atomic_write_text

    if args.config_json is not None:
        try:
            cfg = from_mapping(json.loads(args.config_json))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--set: not valid JSON ({exc})") from None
    atomic_write_text(args.out, yaml.safe_dump(dict(cfg.raw), sort_keys=True))
    log.info("config %s -> %s", cfg.hash(), args.out)


# --------------------------------------------------------------------------- cohort
def _cohort_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", type=int, required=True, help="shard index k in 0..cohort.shards-1")
    p.add_argument("--out", type=Path, required=True, help="output Parquet (Cohort schema)")


@command("cohort", _cohort_args)
def _cohort(args: argparse.Namespace, cfg: Config) -> None:
    from oncobench import cohort, io, models

    if not 0 <= args.shard < cfg.cohort.shards:
        raise ConfigError(f"--shard {args.shard}: expected 0..{cfg.cohort.shards - 1} (cohort.shards = {cfg.cohort.shards})")
    ids = cohort.shard_patient_ids(cfg.cohort.n_patients, cfg.cohort.shards, args.shard)
    model = models.load(cfg)
    df = model.cohort(ids)
    io.write_table(df, args.out, model.cohort_schema, stamp_for(cfg, shard=args.shard))
    log.info("cohort shard %d: %d patients -> %s", args.shard, len(df), args.out)


# --------------------------------------------------------------------------- simulate
def _simulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cohort", type=Path, required=True, help="cohort shard Parquet")
    p.add_argument("--gamma", type=float, required=True, help="confounding strength (one of policy.gamma)")
    p.add_argument("--out", type=Path, required=True, help="output Parquet (the model's trajectory schema)")
    p.add_argument("--out-outcomes", type=Path, default=None, help="per-patient factual outcomes (models that have them: nsclc)")


@command("simulate", _simulate_args)
def _simulate(args: argparse.Namespace, cfg: Config) -> None:
    """The factual course of a cohort shard under the historical policy of strength gamma."""
    import contextlib

    from oncobench import io, models

    _check_gamma(cfg, args.gamma)
    device = resolve_device(cfg.device)
    model = models.load(cfg)
    if (args.out_outcomes is None) != (model.factual_outcome_schema is None):
        raise ConfigError(f"--out-outcomes: model {model.name} {'needs' if args.out_outcomes is None else 'has no'} factual outcome table")
    cohort_df = io.read_table(args.cohort, model.cohort_schema)
    stamp = stamp_for(cfg, gamma=args.gamma, device=device)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        w = stack.enter_context(io.ShardWriter(args.out, model.trajectory_schema, stamp))
        wo = None
        if args.out_outcomes is not None:
            wo = stack.enter_context(io.ShardWriter(args.out_outcomes, model.factual_outcome_schema, stamp))
        for frame, outcomes in model.factual(cohort_df, args.gamma, device):
            w.write(frame)
            if wo is not None:
                wo.write(outcomes)
    dt = time.perf_counter() - t0
    days = cfg.nsclc.horizon_days if model.name == "nsclc" else cfg.simulation.days
    log.info(
        "simulate: %d patients x %d days on %s in %.2f s (%.0f patient-days/s incl. writing), %d rows -> %s",
        len(cohort_df), days, device, dt, len(cohort_df) * days / dt, w.rows, args.out,
    )


def _read_cohort(path: Path, device: torch.device):
    """One validated cohort shard as the model's tensors on ``device``."""
    from oncobench import cohort, io, schemas

    return cohort.from_frame(io.read_table(path, schemas.Cohort), device=device)


def _check_gamma(cfg: Config, gamma: float) -> None:
    if not any(abs(gamma - g) < 1e-12 for g in cfg.gammas):
        raise ConfigError(f"--gamma {gamma:g}: not one of policy.gamma {list(cfg.gammas)}")


# --------------------------------------------------------------------------- counterfactuals
def _counterfactuals_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cohort", type=Path, required=True, help="cohort shard Parquet")
    p.add_argument("--out", type=Path, required=True, help="output Parquet (the model's outcome schema)")


@command("counterfactuals", _counterfactuals_args)
def _counterfactuals(args: argparse.Namespace, cfg: Config) -> None:
    """Every patient under every candidate regimen (common random numbers)."""
    from oncobench import io, models

    device = resolve_device(cfg.device)
    model = models.load(cfg)
    cohort_df = io.read_table(args.cohort, model.cohort_schema)
    with io.ShardWriter(args.out, model.outcome_schema, stamp_for(cfg, device=device)) as w:
        for part in model.counterfactual(cohort_df, device):
            w.write(part)
    log.info("counterfactuals: %d patients, %d rows -> %s", len(cohort_df), w.rows, args.out)


def _test_sets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cohort", type=Path, required=True, help="cohort shard Parquet")
    p.add_argument("--gamma", type=float, required=True, help="confounding strength of the factual history")
    p.add_argument("--out-onestep", type=Path, required=True, help="output Parquet (OneStep schema)")
    p.add_argument("--out-taustep", type=Path, required=True, help="output Parquet (TauStep schema)")


@command("counterfactual-tests", _test_sets_args)
def _test_sets(args: argparse.Namespace, cfg: Config) -> None:
    """One-step and tau-step counterfactual test sets of the shard's test patients."""
    from oncobench import cohort, counterfactuals, io, schemas, trajectories

    _check_gamma(cfg, args.gamma)
    device = resolve_device(cfg.device)
    c = _read_cohort(args.cohort, device)
    test = cohort.is_test_patient(cfg.seed, c.patient_id, cfg.counterfactuals.test_fraction)
    c = c.take(torch.nonzero(test, as_tuple=True)[0])
    cf = cfg.counterfactuals
    common = dict(seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat, gamma=args.gamma,
                  window_days=cfg.policy.window_days)
    # branch rows per patient: 4 per day (one-step) + (2 tau_max + 1) per start day (tau-step)
    starts = max(1, (cfg.simulation.days - cf.tau_max) // cf.tau_start_every_days + 1)
    rows_per_patient = 4 * (cfg.simulation.days - 1) + (2 * cf.tau_max + 1) * starts
    size = max(1, trajectories.MAX_PATIENT_DAYS_PER_BATCH // (rows_per_patient * cf.tau_max))
    stamp = stamp_for(cfg, gamma=args.gamma, device=device)
    with io.ShardWriter(args.out_onestep, schemas.OneStep, stamp) as w1, io.ShardWriter(args.out_taustep, schemas.TauStep, stamp) as w2:
        if len(c) == 0:
            raise ConfigError(f"--cohort {args.cohort}: no test patients in this shard; raise counterfactuals.test_fraction or cohort.n_patients")
        for part in cohort.batches(c, size):
            w1.write(counterfactuals.one_step(part, **common))
            w2.write(counterfactuals.tau_step(part, tau_max=cf.tau_max, start_every_days=cf.tau_start_every_days, **common))
    log.info("counterfactual tests: %d test patients, %d one-step rows, %d tau-step rows", len(c), w1.rows, w2.rows)


# --------------------------------------------------------------------------- verify
def _read_many(paths: Sequence[Path], schema) -> "pd.DataFrame":
    import pandas as pd

    from oncobench import io

    return pd.concat([io.read_table(p, schema) for p in paths], ignore_index=True)


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gamma", type=float, required=True)
    p.add_argument("--cohort", type=Path, nargs="+", required=True, help="cohort shards")
    p.add_argument("--trajectories", type=Path, nargs="+", required=True, help="trajectory shards of this gamma")
    p.add_argument("--controls", type=Path, default=None, help="the release's negative-control table (verify-controls)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder of the verification tables and figures")


# The verify stage's tables in its output folder: (file, schema name, StageResult field); the
# verdict is written last, after the figures.
VERIFY_TABLES = (
    ("checks.parquet", "VerificationCheck", "checks"),
    ("parameters.parquet", "VerificationParameter", "parameters"),
    ("sbc_ranks.parquet", "SbcRank", "ranks"),
    ("coverage.parquet", "CoverageCurve", "coverage"),
    ("tarp.parquet", "TarpCurve", "tarp"),
    ("realism.parquet", "RealismNull", "realism"),
    ("predictions.parquet", "RecoveryPrediction", "predictions"),
    ("controls.parquet", "VerificationControl", "controls"),
)


def _release_tables(cfg: Config, cohort_paths: Sequence[Path], trajectory_paths: Sequence[Path]):
    from oncobench import schemas

    if cfg.model == "nsclc":
        return _read_many(cohort_paths, schemas.NsclcCohort), _read_many(trajectory_paths, schemas.NsclcTrajectory)
    return _read_many(cohort_paths, schemas.Cohort), _read_many(trajectory_paths, schemas.Trajectory)


def _reference(cfg: Config, problem):
    """The realism reference set of ``verify.reference`` (None: an independent simulation)."""
    import pandas as pd

    ref = cfg.verify.reference
    if ref is None:
        return None
    frames = []
    for key, path in (("cohort", ref.cohort), ("trajectories", ref.trajectories)):
        if not Path(path).is_file():
            raise ConfigError(f"verify.reference.{key}: {path} does not exist")
        frames.append(pd.read_parquet(path))
    try:
        return problem.encode(*frames)
    except KeyError as exc:
        raise ConfigError(
            f"verify.reference ({ref.cohort}, {ref.trajectories}): column {exc} missing; the reference must hold the "
            f"release tables' observed columns"
        ) from None


@command("verify", _verify_args)
def _verify(args: argparse.Namespace, cfg: Config) -> None:
    """Inverse verification of the simulator on the release cohort (``oncobench.inverse``)."""
    from oncobench import io, schemas
    from oncobench.figures import save
    from oncobench.inverse import figures as vfig
    from oncobench.inverse import problem_for, stage

    _check_gamma(cfg, args.gamma)
    device = resolve_device(cfg.device)
    problem = problem_for(cfg, args.gamma, device)
    cohort_df, traj = _release_tables(cfg, args.cohort, args.trajectories)
    release = problem.encode(cohort_df, traj)
    controls = None
    if cfg.verify.controls.enabled:
        if args.controls is None:
            raise ConfigError("verify.controls.enabled is true but no --controls table was given (run verify-controls first)")
        controls = io.read_table(args.controls, schemas.VerificationControl)
    result = stage.verify_release(
        problem, cfg, release, cohort_df["patient_id"].to_numpy(), reference=_reference(cfg, problem), controls=controls,
        device=str(device),
    )
    stamp = stamp_for(cfg, gamma=args.gamma, device=device)
    out = args.out_dir
    for name, schema, field in VERIFY_TABLES:
        io.write_table(getattr(result, field), out / name, getattr(schemas, schema), stamp)
    save(vfig.plot_sbc_ranks(result.ranks), out / "sbc_ranks.png")
    save(vfig.plot_coverage(result.coverage), out / "coverage.png")
    save(vfig.plot_recovery(result.recovery), out / "recovery.png")
    save(vfig.plot_realism(result.realism), out / "realism.png")
    io.write_table(result.verdict, out / "verdict.parquet", schemas.Verdict, stamp)
    v = result.verdict.iloc[0]
    log.info("verify gamma=%g: seconds %s", args.gamma, {k: round(t, 1) for k, t in result.seconds.items()})
    log.info("verify gamma=%g: verdict %s (%d of %d checks failed) %s", args.gamma, v.verdict, v.n_failed, v.n_checks, v.reasons)


def _verify_controls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="negative-control table (Parquet)")


@command("verify-controls", _verify_controls_args)
def _verify_controls(args: argparse.Namespace, cfg: Config) -> None:
    """Negative controls of the verify stage, once per release: each must fail the gate."""
    from oncobench import io, schemas
    from oncobench.inverse import problem_for, stage

    device = resolve_device(cfg.device)
    gamma = max(cfg.gammas)  # the most confounded branch: the hardest for the checks
    table = stage.run_controls(problem_for(cfg, gamma, device), cfg, n_release=cfg.cohort.n_patients, device=str(device))
    io.write_table(table, args.out, schemas.VerificationControl, stamp_for(cfg, gamma=gamma, device=device))
    for r in table.itertuples():
        log.info("control %s: %s (%d failed; %s)", r.control, r.outcome, r.n_failed, r.caught_by[:300])


# --------------------------------------------------------------------------- evaluate
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gamma", type=float, required=True)
    p.add_argument("--cohort", type=Path, nargs="+", required=True)
    p.add_argument("--regimens", type=Path, nargs="+", required=True, help="counterfactual outcome shards")
    p.add_argument("--trajectories", type=Path, nargs="+", default=None, help="trajectory shards (geng2017)")
    p.add_argument("--onestep", type=Path, nargs="+", default=None, help="one-step test shards (geng2017)")
    p.add_argument("--taustep", type=Path, nargs="+", default=None, help="tau-step test shards (geng2017)")
    p.add_argument("--factual", type=Path, nargs="+", default=None, help="factual outcome shards of this gamma (nsclc)")
    p.add_argument("--out", type=Path, required=True, help="output Parquet (Metric schema)")


@command("evaluate", _evaluate_args)
def _evaluate(args: argparse.Namespace, cfg: Config) -> None:
    """Score the built-in and configured models against the counterfactual truth."""
    from oncobench import evaluation, io, schemas

    _check_gamma(cfg, args.gamma)
    device = resolve_device(cfg.device)
    needed = ("factual",) if cfg.model == "nsclc" else ("trajectories", "onestep", "taustep")
    for name in needed:
        if getattr(args, name) is None:
            raise ConfigError(f"--{name}: required for model {cfg.model}")
    if cfg.model == "nsclc":
        from oncobench.nsclc.evaluation import evaluate_nsclc
        from oncobench.nsclc.model import NsclcModel

        m = NsclcModel.from_config(cfg)
        metrics = evaluate_nsclc(
            _read_many(args.cohort, schemas.NsclcCohort),
            _read_many(args.factual, schemas.NsclcOutcome),
            _read_many(args.regimens, schemas.NsclcOutcome),
            gamma=args.gamma,
            utility=cfg.nsclc.evaluate.utility,
            guideline=cfg.nsclc.evaluate.guideline,
            models=cfg.evaluate.models,
            bootstrap=cfg.evaluate.bootstrap,
            seed=cfg.seed,
            test_fraction=cfg.counterfactuals.test_fraction,
            device=device,
            horizon_days=cfg.nsclc.horizon_days,
            library=m.library,
        )
        io.write_table(metrics, args.out, schemas.Metric, stamp_for(cfg, gamma=args.gamma))
        log.info("evaluate gamma=%g: %d metric rows -> %s", args.gamma, len(metrics), args.out)
        return
    metrics = evaluation.evaluate(
        cfg=cfg,
        gamma=args.gamma,
        cohort=_read_many(args.cohort, schemas.Cohort),
        trajectories=_read_many(args.trajectories, schemas.Trajectory),
        onestep=_read_many(args.onestep, schemas.OneStep),
        taustep=_read_many(args.taustep, schemas.TauStep),
        regimen_outcomes=_read_many(args.regimens, schemas.RegimenOutcome),
        device=device,
    )
    io.write_table(metrics, args.out, schemas.Metric, stamp_for(cfg, gamma=args.gamma))
    log.info("evaluate gamma=%g: %d metric rows -> %s", args.gamma, len(metrics), args.out)


# --------------------------------------------------------------------------- report
def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="summary Markdown file")
    p.add_argument("--out-figure", type=Path, required=True, help="trajectories-by-treatment figure (PNG)")


@command("report", _report_args)
def _report(args: argparse.Namespace, cfg: Config) -> None:
    """Write the human summary (Markdown) with its figures; refused if a verify verdict is not
    'pass' and the config does not override the gate."""
    from oncobench import report
    from oncobench.inverse.gate import check_release

    check_release(cfg, args.results_dir)
    if cfg.model == "nsclc":
        report.write_summary_nsclc(cfg, args.results_dir, args.out, args.out_figure)
    else:
        report.write_summary(cfg, args.results_dir, args.out, args.out_figure)
    log.info("summary -> %s", args.out)


# --------------------------------------------------------------------------- track
def _track_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-dir", type=Path, required=True)
    p.add_argument("--snakemake-version", default="unknown")
    p.add_argument("--out", type=Path, required=True, help="JSON with the MLflow run ids")


@command("track", _track_args)
def _track(args: argparse.Namespace, cfg: Config) -> None:
    """Log the finished workflow run to MLflow (parent run + one nested run per stage)."""
    import json

    from oncobench import tracking
    from oncobench.io import atomic_write_text

    info = tracking.log_workflow_run(
        cfg, args.results_dir, snakemake_version=args.snakemake_version, device=str(resolve_device(cfg.device))
    )
    atomic_write_text(args.out, json.dumps(info, indent=2, sort_keys=True) + "\n")
    log.info("tracked as MLflow run %s at %s", info["run_id"], info["tracking_uri"])


# --------------------------------------------------------------------------- trials
def _trials_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-patients", type=Path, required=True, help="per-patient outcomes of every replicate (TrialPatient)")
    p.add_argument("--out-summary", type=Path, required=True, help="published vs simulated per endpoint (TrialSummary)")
    p.add_argument("--out-figures", type=Path, required=True, help="folder for one Kaplan-Meier figure per trial")
    p.add_argument("--replicates", type=int, default=None, help="override nsclc.trials.replicates")


def trial_specs(cfg: Config) -> list:
    """The configured trials: shipped names or paths to spec files (nsclc.trials.specs)."""
    from oncobench.trials.spec import load_spec, shipped_specs

    shipped = shipped_specs()
    out = []
    for i, item in enumerate(cfg.nsclc.trials.specs):
        if item in shipped:
            out.append(shipped[item])
        elif item.endswith((".yaml", ".yml")):
            out.append(load_spec(item))
        else:
            raise ConfigError(f"config key 'nsclc.trials.specs[{i}]': '{item}' is neither a shipped trial {sorted(shipped)} nor a .yaml path")
    return out


@command("trials", _trials_args)
def _trials(args: argparse.Namespace, cfg: Config) -> None:
    """Run the configured virtual trials (replicated) and compare them with their published results."""
    import pandas as pd

    from oncobench import io, schemas
    from oncobench.nsclc.model import NsclcModel
    from oncobench.trials import analysis, runner

    device = resolve_device(cfg.device)
    m = NsclcModel.from_config(cfg)
    reps = args.replicates or cfg.nsclc.trials.replicates
    patients, summaries = [], []
    args.out_figures.mkdir(parents=True, exist_ok=True)
    for spec in trial_specs(cfg):
        t0 = time.perf_counter()
        df = runner.run_trial(spec, m.params, m.library, seed=cfg.seed, replicates=reps, device=device)
        per = analysis.analyse_trial(df, spec)
        summ = analysis.summarise(per, spec)
        summ.insert(0, "trial", spec.name)
        summ.insert(1, "calibration", bool(spec.calibration))
        summ["replicates"] = reps
        summaries.append(summ)
        patients.append(df.assign(trial=spec.name))
        analysis.km_figure(df, spec, args.out_figures / f"{spec.name}.png")
        hits = summ["within_target"].dropna()
        log.info("trial %s: %d replicates x %d patients in %.1f s; %d of %d published values within target",
                 spec.name, reps, spec.sample_size, time.perf_counter() - t0, int(hits.sum()), len(hits))
    stamp = stamp_for(cfg, device=device)
    summary = pd.concat(summaries, ignore_index=True)
    summary["within_target"] = summary["within_target"].astype("boolean")
    io.write_table(pd.concat(patients, ignore_index=True), args.out_patients, schemas.TrialPatient, stamp)
    io.write_table(summary, args.out_summary, schemas.TrialSummary, stamp)


# --------------------------------------------------------------------------- calibrate
def _calibrate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parameters", type=Path, default=None, help="starting parameter file (default: nsclc.parameters)")
    p.add_argument("--out", type=Path, required=True, help="fitted parameter file (same format, comments kept)")
    p.add_argument(
        "--n-per-arm", type=int, default=4000,
        help="patients per trial (each simulated under every arm); at 1000 a flat survival curve's median was fitted to noise",
    )
    p.add_argument("--passes", type=int, default=2, help="passes over the parameter blocks")
    p.add_argument("--max-nfev", type=int, default=20, help="least-squares evaluations per block")
    p.add_argument("--blocks", default=None, help="comma-separated blocks to fit (default: all, in order)")


@command("calibrate", _calibrate_args)
def _calibrate(args: argparse.Namespace, cfg: Config) -> None:
    """Fit the NSCLC model's drug-class parameters to the calibration trials (nsclc.calibration)."""
    from importlib import resources

    from oncobench.io import atomic_write_text
    from oncobench.nsclc import calibration
    from oncobench.nsclc.params import SHIPPED, load_parameters
    from oncobench.nsclc.regimens import load_library
    from oncobench.trials.spec import shipped_specs

    source = args.parameters or (Path(cfg.nsclc.parameters) if cfg.nsclc.parameters else None)
    params = load_parameters(source)
    text = source.read_text() if source is not None else resources.files("oncobench").joinpath(SHIPPED).read_text()
    specs = [s for s in shipped_specs().values() if s.calibration]
    started = time.time()
    cal = calibration.calibrate(
        params,
        load_library(cfg.nsclc.regimens),
        specs,
        seed=cfg.seed,
        n_per_arm=args.n_per_arm,
        passes=args.passes,
        max_nfev=args.max_nfev,
        device=resolve_device(cfg.device),
        progress=log.info,
        blocks=tuple(args.blocks.split(",")) if args.blocks else None,
    )
    atomic_write_text(args.out, calibration.write_values(text, calibration.fitted_values(cal.params)))
    footer = [
        f"oncobench calibrate: seed {cfg.seed}, {args.n_per_arm} patients per trial, {args.passes} passes,",
        f"{cal.evaluations} evaluations, {time.time() - started:.0f} s; trials {', '.join(s.name for s in specs)}",
        *cal.log,
    ]
    atomic_write_text(args.out.with_suffix(".log"), "\n".join(footer) + "\n")
    log.info("calibrated parameters -> %s", args.out)


def _single_fit_args(what: str, n_help: str):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--parameters", type=Path, default=None, help="starting parameter file (default: nsclc.parameters)")
        p.add_argument("--out", type=Path, required=True, help=f"parameter file with the fitted {what} (same format, comments kept)")
        p.add_argument("--n", type=int, default=4000, help=n_help)

    return add


def _single_fit(args: argparse.Namespace, cfg: Config, name: str, fit_one) -> None:
    """Shared by the one-number fits: load the starting parameter file, ``fit_one(params, library,
    seed, n, device)`` -> (key, value, log lines), write the file with that value and its .log."""
    from importlib import resources

    from oncobench.io import atomic_write_text
    from oncobench.nsclc import calibration
    from oncobench.nsclc.params import SHIPPED, load_parameters
    from oncobench.nsclc.regimens import load_library

    source = args.parameters or (Path(cfg.nsclc.parameters) if cfg.nsclc.parameters else None)
    params = load_parameters(source)
    text = source.read_text() if source is not None else resources.files("oncobench").joinpath(SHIPPED).read_text()
    started = time.time()
    key, value, lines = fit_one(params, load_library(cfg.nsclc.regimens), cfg.seed, args.n, resolve_device(cfg.device))
    atomic_write_text(args.out, calibration.write_values(text, {key: value}))
    footer = [f"oncobench {name}: seed {cfg.seed}, {args.n} patients, {time.time() - started:.0f} s", *lines]
    atomic_write_text(args.out.with_suffix(".log"), "\n".join(footer) + "\n")
    for line in lines:
        log.info("%s", line)
    log.info("fitted parameters -> %s", args.out)


@command("calibrate-radiotherapy", _single_fit_args("rate", "stage III patients simulated on chemoradiation"))
def _calibrate_radiotherapy(args: argparse.Namespace, cfg: Config) -> None:
    """Fit the clearance rate of tumour killed by radiotherapy to imaging (nsclc.regression)."""
    from oncobench.nsclc import regression

    def fit_one(params, library, seed, n, device):
        fit = regression.fit_doomed_clearance(params, library, seed=seed, n=n, device=device)
        return regression.KEY, fit.rate_per_day, fit.lines()

    _single_fit(args, cfg, "calibrate-radiotherapy", fit_one)


@command("calibrate-stage-iii", _single_fit_args("share", "stage III patients simulated on chemoradiation for five years"))
def _calibrate_stage_iii(args: argparse.Namespace, cfg: Config) -> None:
    """Fit the radiosensitive share of tumours to RTOG 0617's 60 Gy arm (nsclc.stage_iii)."""
    from oncobench.nsclc import stage_iii

    def fit_one(params, library, seed, n, device):
        fit = stage_iii.fit_stage_iii(params, library, seed=seed, n=n, device=device)
        return stage_iii.KEY, fit.share, fit.lines()

    _single_fit(args, cfg, "calibrate-stage-iii", fit_one)


def _calibration_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parameters", type=Path, default=None, help="parameter file to report (default: nsclc.parameters)")
    p.add_argument("--replicates", type=int, default=100, help="replicates of each trial")
    p.add_argument("--fit-log", type=Path, default=None, help="the calibrate command's .log, quoted in the report")
    p.add_argument("--out", type=Path, required=True, help="Markdown report")
    p.add_argument("--out-table", type=Path, required=True, help="the same table as Parquet (TrialSummary)")


@command("calibration-report", _calibration_report_args)
def _calibration_report(args: argparse.Namespace, cfg: Config) -> None:
    """Run the shipped trials with a parameter file and report published vs simulated values."""
    import pandas as pd

    from oncobench import io, schemas
    from oncobench.io import atomic_write_text
    from oncobench.nsclc.params import load_parameters
    from oncobench.nsclc.regimens import load_library
    from oncobench.trials import analysis, runner
    from oncobench.trials.spec import shipped_specs

    source = args.parameters or (Path(cfg.nsclc.parameters) if cfg.nsclc.parameters else None)
    params = load_parameters(source)
    library = load_library(cfg.nsclc.regimens)
    device = resolve_device(cfg.device)
    rows, md = [], []
    started = time.time()
    for spec in shipped_specs().values():
        df = runner.run_trial(spec, params, library, seed=cfg.seed, replicates=args.replicates, device=device)
        summ = analysis.summarise(analysis.analyse_trial(df, spec), spec)
        summ.insert(0, "trial", spec.name)
        summ.insert(1, "calibration", bool(spec.calibration))
        summ["replicates"] = args.replicates
        rows.append(summ)
        log.info("calibration report: %s done", spec.name)
    table = pd.concat(rows, ignore_index=True)
    table["within_target"] = table["within_target"].astype("boolean")
    io.write_table(table, args.out_table, schemas.TrialSummary, stamp_for(cfg, parameters=params.source))
    md.append("# Calibration report of the NSCLC model\n")
    md.append(
        f"Parameters `{params.source}`; seed {cfg.seed}; {args.replicates} replicates of each trial at its published "
        f"sample size, accrual and data cut-offs; {time.time() - started:.0f} s. Regenerate with "
        f"`oncobench calibration-report {f'--parameters {args.parameters} ' if args.parameters else ''}"
        f"--replicates {args.replicates}{f' --fit-log {args.fit_log}' if args.fit_log else ''} "
        f"--out {args.out} --out-table {args.out_table}`.\n"
    )
    md.append(
        "Targets: hazard ratio (geometric mean over replicates) inside the published 95% CI; median within 15% of "
        "the published median; ORR (and grade >= 3 AE rate) within 10 percentage points. Interval = 2.5-97.5% "
        "percentiles across replicates; power = share of replicates with log-rank p < 0.05 and HR < 1.\n"
    )
    for trial, part in table.groupby("trial", sort=False):
        kind = "calibration trial" if part.calibration.iloc[0] else "**not used in the fit**"
        hits = part.within_target.dropna()
        md.append(f"## {trial} ({kind}): {int(hits.sum())} of {len(hits)} within target\n")
        cols = ["endpoint", "statistic", "published_text", "simulated_mean", "simulated_lower", "simulated_upper", "power", "within_target"]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in part[cols].itertuples(index=False):
            cells = [f"{v:.3g}" if isinstance(v, float) and not pd.isna(v) else ("" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)) for v in r]
            lines.append("| " + " | ".join(cells) + " |")
        md.append("\n".join(lines) + "\n")
    if args.fit_log is not None and args.fit_log.is_file():
        md.append("## The fit\n\n```\n" + args.fit_log.read_text().strip() + "\n```\n")
    atomic_write_text(args.out, "\n".join(md))
    log.info("calibration report -> %s", args.out)


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oncobench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"oncobench {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, (setup, fn) in _COMMANDS.items():
        p = sub.add_parser(name, help=(fn.__doc__ or name).strip().splitlines()[0] if fn.__doc__ else name)
        p.add_argument("--config", type=Path, default=None, help="YAML config (default: embedded defaults)")
        p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
        setup(p)
    return parser


def _version() -> str:
    from oncobench import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    from oncobench.inverse.gate import ReleaseRefused
    from oncobench.io import ArtifactError
    from oncobench.predictors import ModelError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        # Snakemake passes the rule's {threads}: more would oversubscribe cores shared with other jobs.
        torch.set_num_threads(max(1, args.threads))
    try:
        cfg = load_config(args.config)
        _COMMANDS[args.command][1](args, cfg)
    except (ConfigError, ArtifactError, ModelError, ReleaseRefused) as exc:
        print(f"oncobench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
