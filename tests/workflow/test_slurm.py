"""The tiny workflow through snakemake-executor-plugin-slurm on a real one-node SLURM cluster.

The cluster is started from Debian's SLURM packages by tests/slurm/cluster.sh (installed by the
test command when missing) and every daemon it started is stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from oncobench import io, schemas

from workflow_helpers import ROOT, copy_workflow, env_with_venv, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed (run `tests/slurm/cluster.sh install`, as `make test` does)")
    if os.geteuid() != 0:
        pytest.skip("the one-node test cluster runs its daemons as root")
    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(CLUSTER), "start", str(state)], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield state
    finally:
        subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, text=True, timeout=120)
        os.environ.pop("SLURM_CONF", None)


def test_tiny_workflow_runs_through_slurm(cluster, tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    env = env_with_venv()
    out = snakemake(wd, "--workflow-profile", "workflow/profiles/slurm", "--jobs", "4", "--latency-wait", "5", timeout=1500)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    logs = list((wd / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert any("simulate_trajectories" in str(p) for p in logs), "jobs were not submitted through sbatch"
    io.read_table(wd / "results" / "metrics" / "gamma-4.parquet", schemas.Metric)
    assert (wd / "results" / "tracking" / "mlflow_run.json").exists()
    # GPU rules asked SLURM for a GPU (fake GRES on the test node); CPU rules did not.
    jobs = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, env=env).stdout.splitlines()
    simulate = [j for j in jobs if "simulate_trajectories" in j]
    cohort = [j for j in jobs if "draw_cohort" in j]
    assert simulate and cohort, jobs[:3]
    assert all("gres:gpu:1" in j for j in simulate)
    assert not any("gres:gpu" in j for j in cohort)
