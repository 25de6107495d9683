"""The CLI as a user runs it: shard invariance, byte-identical output, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from oncobench import io, schemas
from oncobench.cli import main


def _cfg(tmp_path: Path, name: str, **over) -> Path:
    raw = {"seed": 7, "model": "geng2017", "device": "cpu", "cohort": {"n_patients": 90, "shards": 1}, "simulation": {"days": 25},
           "policy": {"gamma": [3]}, "counterfactuals": {"horizons_days": [10, 24], "tau_max": 3}, "evaluate": {"horizon_days": 24}}
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(tmp_path: Path, shards: int) -> dict[str, pd.DataFrame]:
    cfg = _cfg(tmp_path, f"k{shards}", cohort={"shards": shards})
    out: dict[str, list[pd.DataFrame]] = {"cohort": [], "traj": [], "regimens": [], "onestep": [], "taustep": []}
    for k in range(shards):
        d = tmp_path / f"k{shards}" / str(k)
        assert main(["cohort", "--config", str(cfg), "--shard", str(k), "--out", str(d / "c.parquet")]) == 0
        assert main(["simulate", "--config", str(cfg), "--cohort", str(d / "c.parquet"), "--gamma", "3", "--out", str(d / "t.parquet")]) == 0
        assert main(["counterfactuals", "--config", str(cfg), "--cohort", str(d / "c.parquet"), "--out", str(d / "r.parquet")]) == 0
        assert main(["counterfactual-tests", "--config", str(cfg), "--cohort", str(d / "c.parquet"), "--gamma", "3",
                     "--out-onestep", str(d / "o.parquet"), "--out-taustep", str(d / "s.parquet")]) == 0
        out["cohort"].append(io.read_table(d / "c.parquet", schemas.Cohort))
        out["traj"].append(pq.read_table(d / "t.parquet").to_pandas())
        out["regimens"].append(io.read_table(d / "r.parquet", schemas.RegimenOutcome))
        out["onestep"].append(io.read_table(d / "o.parquet", schemas.OneStep))
        out["taustep"].append(io.read_table(d / "s.parquet", schemas.TauStep))
    return {k: pd.concat(v, ignore_index=True) for k, v in out.items()}


def test_outputs_do_not_depend_on_shard_count(tmp_path):
    one, three = _run(tmp_path, 1), _run(tmp_path, 3)
    for name in one:
        pd.testing.assert_frame_equal(one[name], three[name], check_exact=True, obj=name)


def test_same_seed_gives_identical_bytes(tmp_path):
    cfg = _cfg(tmp_path, "a")
    paths = []
    for rep in ("x", "y"):
        c, t = tmp_path / rep / "c.parquet", tmp_path / rep / "t.parquet"
        main(["cohort", "--config", str(cfg), "--shard", "0", "--out", str(c)])
        main(["simulate", "--config", str(cfg), "--cohort", str(c), "--gamma", "3", "--out", str(t)])
        paths.append(t)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_bad_config_is_one_line_naming_the_key(tmp_path, capsys):
    cfg = _cfg(tmp_path, "bad", cohort={"n_patient": 5})
    assert main(["cohort", "--config", str(cfg), "--shard", "0", "--out", str(tmp_path / "c.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'n_patient' was unexpected" in err[0]


def test_missing_input_and_wrong_gamma(tmp_path, capsys):
    cfg = _cfg(tmp_path, "ok")
    assert main(["simulate", "--config", str(cfg), "--cohort", str(tmp_path / "nope.parquet"), "--gamma", "3", "--out", str(tmp_path / "t.parquet")]) == 2
    assert "nope.parquet: file not found" in capsys.readouterr().err
    main(["cohort", "--config", str(cfg), "--shard", "0", "--out", str(tmp_path / "c.parquet")])
    assert main(["simulate", "--config", str(cfg), "--cohort", str(tmp_path / "c.parquet"), "--gamma", "5", "--out", str(tmp_path / "t.parquet")]) == 2
    assert "--gamma 5: not one of policy.gamma" in capsys.readouterr().err
    assert not (tmp_path / "t.parquet").exists()


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "oncobench.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for stage in ("cohort", "simulate", "verify", "counterfactuals", "evaluate", "report", "track"):
        assert stage in out.stdout


def test_broken_plugin_is_one_line_naming_the_model(tmp_path, capsys):
    cfg = _cfg(tmp_path, "plug", evaluate={"horizon_days": 24, "bootstrap": 10, "factual_model": {"epochs": 1},
                                          "models": [{"name": "ghost", "import": "no_such_module_xyz:make"}]})
    d = tmp_path / "p"
    args = ["--config", str(cfg)]
    assert main(["cohort", *args, "--shard", "0", "--out", str(d / "c.parquet")]) == 0
    assert main(["simulate", *args, "--cohort", str(d / "c.parquet"), "--gamma", "3", "--out", str(d / "t.parquet")]) == 0
    assert main(["counterfactuals", *args, "--cohort", str(d / "c.parquet"), "--out", str(d / "r.parquet")]) == 0
    assert main(["counterfactual-tests", *args, "--cohort", str(d / "c.parquet"), "--gamma", "3",
                 "--out-onestep", str(d / "o.parquet"), "--out-taustep", str(d / "s.parquet")]) == 0
    capsys.readouterr()
    rc = main(["evaluate", *args, "--gamma", "3", "--cohort", str(d / "c.parquet"), "--trajectories", str(d / "t.parquet"),
               "--regimens", str(d / "r.parquet"), "--onestep", str(d / "o.parquet"), "--taustep", str(d / "s.parquet"),
               "--out", str(d / "m.parquet")])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert rc == 2 and len(err) == 1 and "'ghost'" in err[0] and "no_such_module_xyz" in err[0]
    assert not (d / "m.parquet").exists()
