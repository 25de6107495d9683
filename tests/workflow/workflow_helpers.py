"""Whole-workflow helpers: a fresh copy of the workflow in a temp folder, run via the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ("Snakefile", "rules", "workflow", "config", "envs")


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow (not the results) into ``dest``, as a fresh checkout would have it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=False)
        else:
            shutil.copy2(src, dest / name)
    for cfg in (ROOT / "tests" / "workflow").glob("*.yaml"):
        shutil.copy2(cfg, dest / cfg.name)
    return dest


def env_with_venv() -> dict[str, str]:
    """The environment with this interpreter's bin folder first on PATH (for `oncobench`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def snakemake(workdir: Path, *args: str, timeout: int = 900, configfile: str = "tiny.yaml") -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--configfile", configfile, *args]
    return subprocess.run(cmd, cwd=workdir, env=env_with_venv(), capture_output=True, text=True, timeout=timeout)
