"""The whole workflow through the snakemake CLI on a tiny config, and its MLflow run read back."""

from __future__ import annotations

import json

import pytest

from oncobench import io, schemas

from workflow_helpers import copy_workflow, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("wf"))
    out = snakemake(wd, "--cores", "2")
    assert out.returncode == 0, out.stderr[-4000:]
    return wd


def test_every_stage_wrote_valid_artifacts(finished):
    r = finished / "results"
    for k in (0, 1):
        io.read_table(r / f"cohort/shard-{k}.parquet", schemas.Cohort)
        io.read_table(r / f"counterfactuals/regimens/shard-{k}.parquet", schemas.RegimenOutcome)
        for g in ("0", "4"):
            io.read_table(r / f"trajectories/gamma-{g}/shard-{k}.parquet", schemas.Trajectory)
            io.read_table(r / f"counterfactuals/gamma-{g}/onestep/shard-{k}.parquet", schemas.OneStep)
            io.read_table(r / f"counterfactuals/gamma-{g}/taustep/shard-{k}.parquet", schemas.TauStep)
    for g in ("0", "4"):
        io.read_table(r / f"verification/gamma-{g}/checks.parquet", schemas.VerificationCheck)
        io.read_table(r / f"verification/gamma-{g}/verdict.parquet", schemas.Verdict)
        assert (r / f"verification/gamma-{g}/recovery.png").stat().st_size > 1000
        metrics = io.read_table(r / f"metrics/gamma-{g}.parquet", schemas.Metric)
        assert {"oracle", "factual_mlp"} <= set(metrics.model)
    summary = (r / "summary" / "summary.md").read_text()
    assert "Verification" in summary and ".png" in summary
    assert (r / "summary" / "trajectories_by_treatment.png").stat().st_size > 1000
    assert list((r / "benchmarks").rglob("*.tsv"))


def test_rerun_is_a_no_op(finished):
    out = snakemake(finished, "--cores", "2", "-n")
    assert out.returncode == 0
    assert "Nothing to be done" in out.stdout + out.stderr


def test_mlflow_run_reads_back(finished):
    from mlflow.tracking import MlflowClient

    info = json.loads((finished / "results" / "tracking" / "mlflow_run.json").read_text())
    assert info["tracking_uri"].startswith("sqlite:///") and str(finished / "results" / "mlflow.db") in info["tracking_uri"]
    client = MlflowClient(info["tracking_uri"])
    run = client.get_run(info["run_id"])
    assert run.data.params["cohort.n_patients"] == "120"
    assert run.data.params["policy.gamma"] == "[0, 4]"
    tags = run.data.tags
    for key in ("oncobench.version", "oncobench.git_commit", "oncobench.device", "oncobench.snakemake_version", "oncobench.release"):
        assert tags.get(key), key
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    stages = {c.data.tags["oncobench.stage"]: c for c in children}
    assert set(stages) == {"cohort", "simulate", "verify", "counterfactuals", "evaluate", "report"}
    assert any(k.startswith("benchmark.simulate_trajectories") for k in stages["simulate"].data.metrics)
    assert any("verdict_pass" in k for k in stages["verify"].data.metrics)
    assert any(k.startswith("gamma4.oracle") for k in stages["evaluate"].data.metrics)
    artifacts = {a.path for a in client.list_artifacts(stages["cohort"].info.run_id, "cohort")}
    assert "cohort/shard-0.parquet" in artifacts


def test_invalid_config_stops_before_any_job(tmp_path):
    wd = copy_workflow(tmp_path / "bad")
    out = snakemake(wd, "--cores", "1", "--config", "simulation={'days': 1}")
    assert out.returncode != 0
    assert "simulation" in out.stderr and "days" in out.stderr
    assert not (wd / "results" / "cohort").exists()


def test_config_change_reruns_from_the_resolved_config(finished):
    out = snakemake(finished, "--cores", "1", "-n", "--config", "seed=12", "cohort={n_patients: 100, shards: 2}")
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "resolve_config" in text and "draw_cohort" in text
