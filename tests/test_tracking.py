"""Tracking helpers that do not need a whole workflow run."""

from __future__ import annotations

from oncobench import tracking
from oncobench.config import load_config


def test_large_files_are_not_copied(tmp_path):
    (tmp_path / "trajectories" / "gamma-1").mkdir(parents=True)
    small = tmp_path / "trajectories" / "gamma-1" / "shard-0.parquet"
    big = tmp_path / "trajectories" / "gamma-1" / "shard-1.parquet"
    small.write_bytes(b"x" * 1000)
    big.write_bytes(b"x" * 3_000_000)
    (tmp_path / "trajectories" / ".shard-2.parquet.tmp").write_bytes(b"partial")
    keep, skip = tracking.split_artifacts(tmp_path, "trajectories", max_mb=1)
    assert keep == [small] and skip == [big]
    assert tracking.split_artifacts(tmp_path, "missing", max_mb=1) == ([], [])


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(load_config(), tmp_path) == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(load_config(), tmp_path) == "http://127.0.0.1:5000"
    cfg = load_config(overrides={"tracking": {"uri": "sqlite:////tmp/x.db"}})
    assert tracking.tracking_uri(cfg, tmp_path) == "sqlite:////tmp/x.db"


def test_flatten_config():
    flat = tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x"})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "d": "x"}
