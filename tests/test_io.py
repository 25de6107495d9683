"""Validated, stamped, atomic Parquet artifacts."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from oncobench import cohort, io, schemas


@pytest.fixture
def cohort_df():
    return cohort.to_frame(cohort.draw(1, torch.arange(20)))


STAMP = io.Stamp(config_hash="abc", seed=1)


def test_roundtrip_and_stamp(tmp_path, cohort_df):
    path = tmp_path / "c.parquet"
    io.write_table(cohort_df, path, schemas.Cohort, STAMP)
    back = io.read_table(path, schemas.Cohort)
    pd.testing.assert_frame_equal(back, cohort_df)
    meta = io.read_stamp(path)
    assert meta["config_hash"] == "abc" and meta["seed"] == 1 and meta["schema"] == "Cohort"
    assert {"package_version", "git_commit"} <= set(meta)


def test_bad_value_names_column_and_row(tmp_path, cohort_df):
    cohort_df.loc[3, "initial_diameter_cm"] = 50.0
    with pytest.raises(io.ArtifactError, match=r"initial_diameter_cm.*row 3"):
        io.write_table(cohort_df, tmp_path / "c.parquet", schemas.Cohort, STAMP)
    assert not list(tmp_path.iterdir())


def test_extra_and_missing_columns_are_errors(tmp_path, cohort_df):
    with pytest.raises(io.ArtifactError, match="surprise"):
        io.write_table(cohort_df.assign(surprise=1), tmp_path / "c.parquet", schemas.Cohort, STAMP)
    with pytest.raises(io.ArtifactError, match="stage"):
        io.write_table(cohort_df.drop(columns="stage"), tmp_path / "c.parquet", schemas.Cohort, STAMP)


def test_duplicate_patients_rejected(tmp_path, cohort_df):
    df = pd.concat([cohort_df, cohort_df.iloc[:1]], ignore_index=True)
    with pytest.raises(io.ArtifactError, match="unique_patients"):
        io.write_table(df, tmp_path / "c.parquet", schemas.Cohort, STAMP)


def test_reading_wrong_schema_missing_or_foreign_file(tmp_path, cohort_df):
    path = tmp_path / "c.parquet"
    io.write_table(cohort_df, path, schemas.Cohort, STAMP)
    with pytest.raises(io.ArtifactError, match="expected Trajectory"):
        io.read_table(path, schemas.Trajectory)
    with pytest.raises(io.ArtifactError, match="file not found"):
        io.read_table(tmp_path / "nope.parquet", schemas.Cohort)
    cohort_df.to_parquet(tmp_path / "foreign.parquet")
    with pytest.raises(io.ArtifactError, match="no oncobench metadata"):
        io.read_table(tmp_path / "foreign.parquet", schemas.Cohort)
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(io.ArtifactError, match="not a readable Parquet"):
        io.read_table(tmp_path / "junk.parquet", schemas.Cohort)


def test_interrupted_stream_leaves_no_file(tmp_path, cohort_df):
    path = tmp_path / "c.parquet"
    with pytest.raises(RuntimeError):
        with io.ShardWriter(path, schemas.Cohort, STAMP) as w:
            w.write(cohort_df.iloc[:10])
            raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())


def test_stream_writes_all_chunks(tmp_path, cohort_df):
    path = tmp_path / "c.parquet"
    with io.ShardWriter(path, schemas.Cohort, STAMP) as w:
        w.write(cohort_df.iloc[:10])
        w.write(cohort_df.iloc[10:])
    pd.testing.assert_frame_equal(io.read_table(path, schemas.Cohort), cohort_df)
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)
