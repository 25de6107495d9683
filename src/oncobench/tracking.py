"""The one MLflow writer: logs a finished workflow run as a parent run with a nested run per stage.

Called once, locally, by the final ``track_run`` rule; cluster jobs never write to MLflow.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from oncobench import __version__
from oncobench.config import Config, format_gamma
from oncobench.inverse.gate import check_release

STAGE_DIRS = {
    # stage name: (benchmark rule names, artifact folders under the results dir)
    "cohort": (("draw_cohort",), ("cohort",)),
    "simulate": (("simulate_trajectories",), ("trajectories",)),
    "verify": (("verify_controls", "verify_simulator"), ("verification",)),
    "counterfactuals": (("simulate_counterfactual_regimens", "build_counterfactual_test_sets"), ("counterfactuals",)),
    "evaluate": (("evaluate_models",), ("metrics",)),
    "report": (("write_summary",), ("summary",)),
}
NSCLC_STAGE_DIRS = {
    **STAGE_DIRS,
    "simulate": (("simulate_trajectories",), ("trajectories", "factual")),
    "counterfactuals": (("simulate_counterfactual_regimens",), ("counterfactuals",)),
    "trials": (("run_trials",), ("trials",)),
}


def stage_dirs(cfg: Config) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Stages of the workflow of ``cfg.model``: benchmark rule names and artifact folders."""
    return NSCLC_STAGE_DIRS if cfg.model == "nsclc" else STAGE_DIRS


def split_artifacts(results_dir: Path, folder: str, max_mb: float) -> tuple[list[Path], list[Path]]:
    """Files under ``results_dir/folder``: those to copy into MLflow, and those over ``max_mb``."""
    root = results_dir / folder
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.exists() else []
    limit = max_mb * 1024 * 1024
    return [p for p in files if p.stat().st_size <= limit], [p for p in files if p.stat().st_size > limit]


def tracking_uri(cfg: Config, results_dir: Path) -> str:
    """Config ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file in the results."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"cohort.n_patients": "2000", ...}``; lists as JSON."""
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def read_benchmarks(results_dir: Path) -> dict[str, list[dict[str, float]]]:
    """Snakemake ``benchmark:`` files grouped by rule: one dict of columns per job."""
    out: dict[str, list[dict[str, float]]] = defaultdict(list)
    root = results_dir / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        rule = path.relative_to(root).parts[0]
        with path.open() as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                vals = {}
                for k, v in row.items():
                    try:
                        vals[k] = float(v)
                    except (TypeError, ValueError):
                        continue
                vals["job"] = str(path.relative_to(root / rule).with_suffix(""))  # type: ignore[assignment]
                out[rule].append(vals)
    return out


_SAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def metric_key(*parts: str) -> str:
    return _SAFE.sub("_", ".".join(p for p in parts if p))[:250]


def _stage_metrics(stage: str, results_dir: Path, cfg: Config) -> dict[str, float]:
    from oncobench import io, schemas

    m: dict[str, float] = {}
    if stage == "cohort":
        m["n_patients"] = float(cfg.cohort.n_patients)
        m["shards"] = float(cfg.cohort.shards)
    elif stage == "simulate":
        days = cfg.nsclc.horizon_days if cfg.model == "nsclc" else cfg.simulation.days
        m["patient_days_per_gamma"] = float(cfg.cohort.n_patients * days)
    elif stage == "trials":
        summary = io.read_table(results_dir / "trials" / "summary.parquet", schemas.TrialSummary)
        for row in summary.itertuples():
            if pd.notna(row.simulated_mean):
                m[metric_key(row.trial, row.endpoint, row.statistic)] = float(row.simulated_mean)
        hits = summary.within_target.dropna()
        m["published_values_within_target"] = float(hits.sum())
        m["published_values_compared"] = float(len(hits))
    elif stage == "verify":
        for g in cfg.gammas:
            d = results_dir / "verification" / f"gamma-{format_gamma(g)}"
            checks = io.read_table(d / "checks.parquet", schemas.VerificationCheck)
            for row in checks.itertuples():
                if pd.notna(row.value):
                    m[metric_key(f"gamma{format_gamma(g)}", row.check, row.subject, row.metric)] = float(row.value)
            verdict = io.read_table(d / "verdict.parquet", schemas.Verdict)
            m[metric_key(f"gamma{format_gamma(g)}", "verdict_pass")] = float(verdict.verdict.iloc[0] == "pass")
            controls = io.read_table(d / "controls.parquet", schemas.VerificationControl)
            for row in controls.itertuples():
                m[metric_key(f"gamma{format_gamma(g)}", "control", row.control, "failed_as_expected")] = float(row.outcome == "fail")
    elif stage == "evaluate":
        for g in cfg.gammas:
            metrics = io.read_table(results_dir / "metrics" / f"gamma-{format_gamma(g)}.parquet", schemas.Metric)
            for row in metrics[metrics.tier == "all"].itertuples():
                if pd.notna(row.estimate):
                    m[metric_key(f"gamma{format_gamma(g)}", row.model, row.task, row.metric)] = float(row.estimate)
    return m


def log_workflow_run(cfg: Config, results_dir: str | Path, *, snakemake_version: str, device: str) -> dict[str, Any]:
    """Log the finished run; returns ids and the URI (also written by the CLI as JSON)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from oncobench import io, schemas

    results_dir = Path(results_dir)
    uri = tracking_uri(cfg, results_dir)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        artifact_root = None
        if uri.startswith("sqlite:"):
            artifact_root = (results_dir / "mlartifacts").resolve().as_uri()
        exp_id = client.create_experiment(cfg.tracking.experiment, artifact_location=artifact_root)
    else:
        exp_id = exp.experiment_id

    gate = check_release(cfg, results_dir)  # refuses a failed verdict unless overridden
    verdicts = gate.verdicts
    tags = {
        "oncobench.version": __version__,
        "oncobench.git_commit": io.git_commit(),
        "oncobench.device": device,
        "oncobench.snakemake_version": snakemake_version,
        "oncobench.release": cfg.tracking.release,
        "oncobench.config_hash": cfg.hash(),
        "oncobench.model": cfg.model,
        **gate.tags(),
    }
    benchmarks = read_benchmarks(results_dir)
    children: dict[str, str] = {}
    with mlflow.start_run(experiment_id=exp_id, run_name=f"oncobench-{cfg.tracking.release}-{cfg.hash()}", tags=tags) as parent:
        mlflow.log_params(flatten(cfg.raw))
        mlflow.log_artifact(str(results_dir / "config.resolved.yaml"))
        for stage, (rules, folders) in stage_dirs(cfg).items():
            with mlflow.start_run(experiment_id=exp_id, run_name=stage, nested=True, tags={"oncobench.stage": stage}) as child:
                metrics = _stage_metrics(stage, results_dir, cfg)
                for rule in rules:
                    jobs = benchmarks.get(rule, [])
                    if jobs:
                        metrics[metric_key("benchmark", rule, "jobs")] = float(len(jobs))
                        metrics[metric_key("benchmark", rule, "total_s")] = sum(j.get("s", 0.0) for j in jobs)
                        metrics[metric_key("benchmark", rule, "max_rss_mb")] = max(j.get("max_rss", 0.0) for j in jobs)
                        for j in jobs:
                            metrics[metric_key("benchmark", rule, str(j["job"]), "s")] = j.get("s", 0.0)
                if metrics:
                    mlflow.log_metrics(metrics)
                skipped = []
                for folder in folders:
                    keep, skip = split_artifacts(results_dir, folder, cfg.tracking.max_artifact_mb)
                    for path in keep:
                        mlflow.log_artifact(str(path), artifact_path=str(path.parent.relative_to(results_dir)))
                    skipped += [{"path": str(p.relative_to(results_dir)), "bytes": p.stat().st_size} for p in skip]
                if skipped:
                    # too large to copy into the store: recorded by path, left in the results folder
                    mlflow.log_dict({"max_artifact_mb": cfg.tracking.max_artifact_mb, "files": skipped}, "artifacts_not_copied.json")
                children[stage] = child.info.run_id
        mlflow.log_artifact(str(results_dir / "summary" / "summary.md"))
        run_id = parent.info.run_id
    return {"tracking_uri": uri, "experiment_id": exp_id, "run_id": run_id, "stage_runs": children, "verdicts": verdicts}
