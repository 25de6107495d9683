"""The one place Parquet is read and written: schema validation, metadata stamps, atomic writes.

A file appears under its final name only after it was written completely (temporary file in
the same folder, then ``os.replace``), so a killed job never leaves a complete-looking file.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import pandera.errors
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.parquet as pq

from oncobench import __version__

META_KEY = b"oncobench"


class ArtifactError(ValueError):
    """An input file that is missing, unreadable or does not match its schema."""


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the working tree (``ONCOBENCH_GIT_COMMIT`` wins), or 'unknown'."""
    if os.environ.get("ONCOBENCH_GIT_COMMIT"):
        return os.environ["ONCOBENCH_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class Stamp:
    """Metadata stamped into every artifact."""

    config_hash: str
    seed: int
    extra: tuple[tuple[str, str], ...] = ()

    def to_json(self, schema_name: str) -> bytes:
        payload = {
            "package_version": __version__,
            "config_hash": self.config_hash,
            "seed": self.seed,
            "git_commit": git_commit(),
            "schema": schema_name,
            **dict(self.extra),
        }
        return json.dumps(payload, sort_keys=True).encode()


def validate(df: pd.DataFrame, schema: type[pa.DataFrameModel], where: str) -> pd.DataFrame:
    """Validate lazily; raise :class:`ArtifactError` listing every failure, naming ``where``."""
    try:
        return schema.validate(df, lazy=True)
    except (pandera.errors.SchemaErrors, pandera.errors.SchemaError) as exc:
        cases = getattr(exc, "failure_cases", None)
        if cases is not None and len(cases):
            rows = []
            for _, c in cases.head(10).iterrows():
                rows.append(f"column {c.get('column')!s}: {c.get('check')!s} (row {c.get('index')!s}, value {c.get('failure_case')!s})")
            detail = "; ".join(rows)
        else:
            detail = str(exc).splitlines()[0]
        raise ArtifactError(f"{where}: does not match schema {schema.__name__}: {detail}") from None


def _table(df: pd.DataFrame, stamp: Stamp, schema_name: str) -> pa_arrow.Table:
    table = pa_arrow.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = stamp.to_json(schema_name)
    return table.replace_schema_metadata(meta)


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; artifacts are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (for JSON and Markdown outputs)."""
    path = Path(path)
    with _atomic_path(path) as tmp:
        tmp.write_text(text)


def write_table(df: pd.DataFrame, path: str | Path, schema: type[pa.DataFrameModel], stamp: Stamp) -> None:
    """Validate ``df`` and write it atomically to ``path`` with the stamp in its metadata."""
    path = Path(path)
    df = validate(df, schema, str(path))
    with _atomic_path(path) as tmp:
        pq.write_table(_table(df, stamp, schema.__name__), tmp)


class ShardWriter:
    """Stream validated chunks into one Parquet file; it appears only on a clean close."""

    def __init__(self, path: str | Path, schema: type[pa.DataFrameModel], stamp: Stamp) -> None:
        self.path = Path(path)
        self.schema = schema
        self.stamp = stamp
        self._ctx = _atomic_path(self.path)
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def __enter__(self) -> "ShardWriter":
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, df: pd.DataFrame) -> None:
        df = validate(df, self.schema, str(self.path))
        table = _table(df, self.stamp, self.schema.__name__)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table)
        self.rows += len(df)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._writer is not None:
            self._writer.close()
        elif exc_type is None:
            raise ArtifactError(f"{self.path}: no rows were written")
        if exc_type is None:
            return bool(self._ctx.__exit__(None, None, None))
        self._ctx.__exit__(exc_type, exc, tb)
        return False


def read_table(path: str | Path, schema: type[pa.DataFrameModel], columns: list[str] | None = None) -> pd.DataFrame:
    """Read and validate one artifact; a wrong or missing file raises one :class:`ArtifactError`."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file not found (expected a {schema.__name__} table)")
    try:
        table = pq.read_table(path)
    except (OSError, pa_arrow.ArrowException) as exc:
        raise ArtifactError(f"{path}: not a readable Parquet file ({exc})") from None
    meta = read_stamp(path, table.schema.metadata)
    if meta.get("schema") != schema.__name__:
        raise ArtifactError(f"{path}: holds a {meta.get('schema')!r} table; expected {schema.__name__}")
    df = table.to_pandas()
    df = validate(df, schema, str(path))
    return df[columns] if columns else df


def read_stamp(path: str | Path, metadata: dict | None = None) -> dict:
    """The oncobench stamp of a Parquet file (raises if the file was not written by oncobench)."""
    if metadata is None:
        metadata = pq.read_schema(path).metadata
    raw = (metadata or {}).get(META_KEY)
    if raw is None:
        raise ArtifactError(f"{path}: no oncobench metadata; was it written by oncobench?")
    return json.loads(raw)
