"""Where things live on disk, and how outputs are written atomically.

Layout under the pipeline home (``$PIPELINE_HOME``, default ``<repo>/var``)::

    data/                 inputs (the demo's synthetic log lands in data/demo)
    runs/<run_key>/       one folder per DAG run: ingest/, split/, sweep/<config>/, ...
    curated/<name>/       nightly increments: listens/date=YYYY-MM-DD/ (see pipeline.increments)
    state/idmap/          the persistent, append-only ID map (versioned)
    mlflow/               the embedded MLflow store (mlflow.db + artifacts/)
    airflow/              AIRFLOW_HOME for the embedded set-up
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["pipeline_home", "run_dir", "run_key", "atomic_dir", "atomic_write_text"]

_REPO_ROOT = Path(__file__).resolve().parents[2]


def pipeline_home() -> Path:
    """The root folder for data, runs, state and the embedded MLflow store."""
    return Path(os.environ.get("PIPELINE_HOME", _REPO_ROOT / "var")).resolve()


def run_key(run_id: str) -> str:
    """A folder-safe name for a DAG run id (``manual__2026-01-01T00:00:00+00:00``)."""
    key = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id).strip("-")
    if not key:
        raise ValueError(f"run id {run_id!r} has no usable characters for a folder name")
    return key


def run_dir(run_id: str, *, home: Path | None = None) -> Path:
    """The folder that holds every output of one DAG run."""
    return (home or pipeline_home()) / "runs" / run_key(run_id)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` in one rename.

    A failed or killed writer leaves only a ``.tmp-*`` folder behind, never a half
    output under ``final``; a retry simply writes again and replaces the old result.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if final.exists():
            trash = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
