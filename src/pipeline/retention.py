"""Retention: disk stays bounded over a year of nights.

The DAG's last task, ``retain`` (a teardown: it runs whatever became of the night, and its own
state never decides the run's), keeps the newest ``keep_runs`` runs and removes the rest:

- **Run folders** under ``<home>/runs/`` beyond the newest ``keep_runs``, newest by when their
  ``start`` task last wrote the run's record. The current run is always kept. Of a removed run whose
  registered version still carries an alias (``champion``, ``challenger``), ``bundle/``,
  ``context.json`` and ``promotion.json`` stay: what it serves, and the record of why.
- **Registered versions** of ``music-recs`` without an alias, beyond the newest ``keep_runs``: the
  version and its model artifacts (the copy of its bundle in MLflow's artifact store). Its parent
  run, with every param, metric and the promotion tag, stays in MLflow and is tagged with what was
  removed.
- **Spark spill** under ``SPARK_LOCAL_DIRS`` that nothing wrote to for :data:`SPILL_AGE_HOURS`:
  what killed applications left behind (a live application's folders are written as it runs).

A removed date re-runs from its input (or, for nightly increments, from the curated table), with
the same split and seeds: its metrics come back the same.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SPILL_AGE_HOURS", "Freed", "prune"]

log = logging.getLogger(__name__)

SPILL_AGE_HOURS = 6.0
_KEPT_OF_ALIASED = ("bundle", "context.json", "promotion.json")


@dataclass
class Freed:
    """What one pass removed, and what it kept that it would otherwise have removed."""

    run_folders: list[str] = field(default_factory=list)
    bundles_kept: list[str] = field(default_factory=list)  # removed runs whose aliased bundle stayed
    versions: list[str] = field(default_factory=list)
    spill: list[str] = field(default_factory=list)
    bytes: int = 0

    def summary(self) -> str:
        return (f"freed {self.bytes / 2**20:,.1f} MB: {len(self.run_folders)} run folder(s)"
                + (f" ({len(self.bundles_kept)} aliased bundle(s) kept)" if self.bundles_kept else "")
                + f", {len(self.versions)} registered version(s), {len(self.spill)} Spark spill folder(s)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune(*, runs_root: Path, keep: int, current: Path, spill_dir: Path | None, registry: bool = True,
          now: float | None = None) -> Freed:
    """One retention pass (module docstring); ``registry`` false leaves MLflow alone."""
    if keep < 1:
        raise ValueError(f"param keep_runs={keep!r} must be >= 1: the current run is always kept")
    freed = Freed()
    versions, aliases = _versions() if registry else ([], {})
    aliased = {v.tags.get("pipeline.run_key") for v in versions if str(v.version) in aliases}
    for folder in _old_runs(runs_root, keep, current):
        key = _record(folder).get("run_key")
        if key in aliased:
            freed.bytes += _remove_all_but(folder, _KEPT_OF_ALIASED)
            freed.bundles_kept.append(folder.name)
        else:
            freed.bytes += _remove(folder)
        freed.run_folders.append(folder.name)
    if registry:
        _prune_versions(versions, set(aliases), keep, freed)
    if spill_dir is not None:
        _prune_spill(spill_dir, (now or time.time()) - SPILL_AGE_HOURS * 3600, freed)
    log.info("retention: %s", freed.summary())
    return freed


def _old_runs(runs_root: Path, keep: int, current: Path) -> list[Path]:
    """Run folders beyond the newest ``keep`` (by their record's time), never ``current``."""
    if not runs_root.exists():
        return []
    folders = [f for f in runs_root.iterdir() if f.is_dir() and f.resolve() != current.resolve()]
    folders.sort(key=_started, reverse=True)
    return folders[max(0, keep - 1):]  # the current run is one of the kept


def _started(folder: Path) -> float:
    record = folder / "context.json"
    return (record if record.exists() else folder).stat().st_mtime


def _record(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "context.json").read_text())
    except (OSError, ValueError):
        return {}


def _versions() -> tuple[list[Any], dict[str, list[str]]]:
    """Every registered version, and the aliases of those that carry one (version -> aliases).

    The aliases come from the registered model: ``search_model_versions`` leaves them out.
    """
    from mlflow.exceptions import MlflowException

    from pipeline import tracking
    from pipeline.serving import MODEL_NAME

    c = tracking.client()
    try:
        model = c.get_registered_model(MODEL_NAME)
    except MlflowException as exc:  # nothing registered yet
        log.info("retention: no registered model %s (%s)", MODEL_NAME, exc)
        return [], {}
    aliases: dict[str, list[str]] = {}
    for alias, version in model.aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    return list(c.search_model_versions(f"name = '{MODEL_NAME}'")), aliases


def _prune_versions(versions: list[Any], aliased: set[str], keep: int, freed: Freed) -> None:
    """Delete the unaliased versions beyond the newest ``keep``, with their model artifacts."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from pipeline import tracking
    from pipeline.serving import MODEL_NAME

    c = tracking.client()
    unaliased = sorted((v for v in versions if str(v.version) not in aliased), key=lambda v: int(v.version),
                       reverse=True)
    for v in unaliased[keep:]:
        location = _artifact_location(c, v)
        if location:
            before = _local_size(location)
            get_artifact_repository(location).delete_artifacts()
            freed.bytes += before
        c.delete_model_version(MODEL_NAME, v.version)
        if v.run_id:
            c.set_tag(v.run_id, "pipeline.retention", f"registered version {v.version} and its model artifacts "
                                                      "removed by retention (no alias, older than keep_runs)")
        freed.versions.append(str(v.version))


def _artifact_location(c: Any, version: Any) -> str | None:
    """Where a version's model artifacts live (MLflow 3: its logged model's artifact location)."""
    source = str(version.source or "")
    if source.startswith("models:/m-"):
        return c.get_logged_model(source.removeprefix("models:/")).artifact_location
    return None


def _local_size(location: str) -> int:
    path = Path(location.removeprefix("file://"))
    return _size(path) if path.exists() else 0  # a remote store's bytes are freed there, not counted here


def _prune_spill(spill_dir: Path, before: float, freed: Freed) -> None:
    if not spill_dir.exists():
        return
    for entry in spill_dir.iterdir():
        if _newest_mtime(entry) < before:
            freed.bytes += _remove(entry)
            freed.spill.append(entry.name)


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for p in path.rglob("*"):
            try:
                newest = max(newest, p.lstat().st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _remove_all_but(folder: Path, kept: Iterable[str]) -> int:
    kept = set(kept)
    return sum(_remove(p) for p in folder.iterdir() if p.name not in kept)


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _remove(path: Path) -> int:
    size = _size(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return size
