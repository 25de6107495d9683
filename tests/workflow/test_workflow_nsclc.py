"""The whole default (NSCLC) workflow through the snakemake CLI on a tiny config."""

from __future__ import annotations

import json

import numpy as np

import pytest

from oncobench import io, schemas

from workflow_helpers import copy_workflow, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("wf_nsclc"))
    out = snakemake(wd, "--cores", "2", configfile="tiny_nsclc.yaml")
    assert out.returncode == 0, out.stderr[-4000:]
    return wd


def test_every_stage_wrote_valid_artifacts(finished):
    r = finished / "results"
    for k in (0, 1):
        io.read_table(r / f"cohort/shard-{k}.parquet", schemas.NsclcCohort)
        cf = io.read_table(r / f"counterfactuals/regimens/shard-{k}.parquet", schemas.NsclcOutcome)
        assert cf.regimen.nunique() == 7
        for g in ("0", "4"):
            io.read_table(r / f"trajectories/gamma-{g}/shard-{k}.parquet", schemas.NsclcTrajectory)
            io.read_table(r / f"factual/gamma-{g}/shard-{k}.parquet", schemas.NsclcOutcome)
    for g in ("0", "4"):
        io.read_table(r / f"verification/gamma-{g}/checks.parquet", schemas.VerificationCheck)
        io.read_table(r / f"verification/gamma-{g}/verdict.parquet", schemas.Verdict)
        metrics = io.read_table(r / f"metrics/gamma-{g}.parquet", schemas.Metric)
        assert {"oracle", "guideline", "t_learner"} <= set(metrics.model)
    summary = io.read_table(r / "trials/summary.parquet", schemas.TrialSummary)
    assert set(summary.trial) == {"keynote024", "keynote010"}
    patients = io.read_table(r / "trials/patients.parquet", schemas.TrialPatient)
    assert patients.groupby("trial").replicate.nunique().to_dict() == {"keynote010": 2, "keynote024": 2}
    assert (r / "trials/figures/keynote024.png").stat().st_size > 1000
    text = (r / "summary" / "summary.md").read_text()
    assert "Virtual trials" in text and "Verification" in text


def test_factual_course_is_a_counterfactual_row(finished):
    """Common random numbers: the factual outcome equals the counterfactual row of the same regimen."""
    r = finished / "results"
    factual = io.read_table(r / "factual/gamma-4/shard-0.parquet", schemas.NsclcOutcome)
    cf = io.read_table(r / "counterfactuals/regimens/shard-0.parquet", schemas.NsclcOutcome)
    both = factual.merge(cf, on=["patient_id", "regimen", "replicate"], suffixes=("", "_cf"))
    assert len(both) == len(factual)
    for col in ("os_days", "pfs_days", "best_response", "worst_grade", "days_grade3plus"):
        assert (both[col] == both[f"{col}_cf"]).all(), col
    # sums over the drug axis may round differently when a batch holds other regimens (the
    # simulator restricts the axis to the drugs a batch can receive): equal to rounding
    for col in ("qalys", "cost_gbp"):
        assert np.allclose(both[col], both[f"{col}_cf"], rtol=1e-12, atol=0), col


def test_mlflow_run_has_trials_stage(finished):
    from mlflow.tracking import MlflowClient

    info = json.loads((finished / "results/tracking/mlflow_run.json").read_text())
    client = MlflowClient(info["tracking_uri"])
    assert set(info["stage_runs"]) >= {"cohort", "simulate", "verify", "counterfactuals", "evaluate", "trials", "report"}
    trials = client.get_run(info["stage_runs"]["trials"]).data.metrics
    assert trials["published_values_compared"] > 0
    assert client.get_run(info["run_id"]).data.tags["oncobench.model"] == "nsclc"


def test_rerun_is_a_no_op(finished):
    out = snakemake(finished, "--cores", "1", "-n", configfile="tiny_nsclc.yaml")
    assert out.returncode == 0
    assert "Nothing to be done" in out.stdout + out.stderr
