"""Where things live on disk, and how outputs are written atomically.

Layout under the pipeline home (``$PIPELINE_HOME``, default ``<repo>/var``)::

    data/                 inputs (the demo's synthetic log lands in data/demo)
    runs/<run_key>/       one folder per DAG run, named by :class:`RunLayout`
    curated/<name>/       nightly increments: listens/date=YYYY-MM-DD/ (see pipeline.increments)
    state/idmap/          the persistent, append-only ID map (versioned)
    mlflow/               the embedded MLflow store (mlflow.db + artifacts/)
    airflow/              AIRFLOW_HOME for the embedded set-up
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "pipeline_home", "run_dir", "run_key", "RunLayout", "IngestLayout", "atomic_dir", "atomic_write_text", "file_lock", "sha256_file",
    "fingerprint", "DiskFull", "disk_full", "naming_a_full_disk",
]

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


@dataclass(frozen=True)
class IngestLayout:
    """One ingest folder (a run's ``ingest/``, a CLI ``--out``, a nightly partition being staged)."""

    root: Path

    @property
    def validated(self) -> Path:
        return self.root / "validated"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def data_docs(self) -> Path:
        return self.root / "data_docs"

    @property
    def validation_report(self) -> Path:
        return self.root / "validation.json"

    @property
    def validate_summary(self) -> Path:
        return self.root / "validate_summary.json"

    @property
    def listens(self) -> Path:
        return self.root / "listens"

    @property
    def tracks(self) -> Path:
        return self.root / "tracks"

    @property
    def dedup_summary(self) -> Path:
        return self.root / "dedup_summary.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"


@dataclass(frozen=True)
class RunLayout:
    """Every input and output of one run, by name: the only place that spells the run folder's layout.

    ``runs/<run_key>/``::

        context.json            the run's record (start): parent MLflow run, input, fingerprint, config
        ingest/                 validate: validated/, quarantine/, data_docs/, validation.json,
                                validate_summary.json (partitions/ for nightly increments);
                                dedup: listens/, tracks/, summary.json
        split/                  train/, val/, test/, stats.json, stats.md
        popularity/<config>/    model/, result.json (one per baseline variant)
        sweep/<config>/         model/, result.json (one per ALS or engine grid point)
        select/                 leaderboard.{md,json}, sweep plots
        test/metrics.json       the selected model and the best baseline on the test window
        test/per_user.npz       the served model's per-user test metrics
        health/                 the night's checks against the previous nights (health.json, trend.png)
        index_tuning/           every measured index setting, tuning.json, tradeoffs.png
        bundle/                 what the served model loads (index, ID maps, factors, fallback)
        promotion.json          the registry decision
    """

    root: Path

    @classmethod
    def for_run(cls, key: str, *, home: Path | None = None) -> RunLayout:
        return cls(run_dir(key, home=home))

    # -- start
    @property
    def record(self) -> Path:
        return self.root / "context.json"

    def read_record(self) -> dict[str, Any]:
        if not self.record.exists():
            raise FileNotFoundError(f"{self.record} is missing: the run's first task (start) did not finish")
        return json.loads(self.record.read_text())

    # -- validate and dedup
    @property
    def ingest(self) -> IngestLayout:
        return IngestLayout(self.root / "ingest")

    @property
    def partitions(self) -> Path:
        """Nightly increments: each pending partition validated into its own ingest folder."""
        return self.ingest.root / "partitions"

    # -- split, sweeps, selection
    @property
    def split(self) -> Path:
        return self.root / "split"

    @property
    def split_table(self) -> Path:
        return self.split / "stats.md"

    @property
    def popularity(self) -> Path:
        return self.root / "popularity"

    @property
    def sweep(self) -> Path:
        return self.root / "sweep"

    @property
    def results(self) -> tuple[Path, Path]:
        """The folders whose ``<config>/result.json`` make the leaderboard."""
        return self.popularity, self.sweep

    @property
    def select(self) -> Path:
        return self.root / "select"

    @property
    def leaderboard(self) -> Path:
        return self.select / "leaderboard.json"

    @property
    def leaderboard_table(self) -> Path:
        return self.select / "leaderboard.md"

    # -- test, index, promotion
    @property
    def test_metrics(self) -> Path:
        return self.root / "test" / "metrics.json"

    @property
    def test_per_user(self) -> Path:
        """The served model's per-user test metrics (pairs it with the incumbent at promotion)."""
        return self.root / "test" / "per_user.npz"

    @property
    def health(self) -> Path:
        return self.root / "health"

    @property
    def index_tuning(self) -> Path:
        return self.root / "index_tuning"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def promotion(self) -> Path:
        return self.root / "promotion.json"


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
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves nothing behind
    return path


class DiskFull(OSError):
    """A stage ran out of disk space; the message names the disk and what to do."""


def disk_full(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain that is "no space left on device" (ours or the JVM's words), or None."""
    seen: BaseException | None = exc
    while seen is not None:
        if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or "No space left on device" in str(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def naming_a_full_disk(what: str, where: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise a full disk inside the block as one :class:`DiskFull` line that names the file being written
    (else ``where``), the free space of its disk and the fix; other errors pass through."""
    try:
        yield
    except Exception as exc:
        full = disk_full(exc)
        if full is None:
            raise
        # a copy names its source in filename and its destination in filename2
        named = getattr(full, "filename2", None) or getattr(full, "filename", None)
        place = Path(named or where)
        while not place.exists() and place != place.parent:
            place = place.parent
        usage = shutil.disk_usage(place)
        raise DiskFull(errno.ENOSPC, (
            f"{what} ran out of disk space writing {named or f'under {where}'} (its disk has "
            f"{usage.free / 2**20:,.1f} MiB free of {usage.total / 2**20:,.1f} MiB); nothing of it was marked "
            "complete. Free space there, or point PIPELINE_HOME at a larger disk, then clear the task to run it "
            "again")) from None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing, never truncated) for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fingerprint(entries: Iterable[Iterable[Any]]) -> str:
    """16 hex digits of SHA-256 over one line per entry (e.g. a file's name, size and hash or mtime)."""
    h = hashlib.sha256()
    for entry in entries:
        h.update(("\0".join(map(str, entry)) + "\n").encode())
    return h.hexdigest()[:16]
