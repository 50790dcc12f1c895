"""Nightly increments: date-partitioned raw listens → one curated, append-only listens table.

Raw layout (detected automatically: an input folder whose children are ``date=`` folders)::

    <input_root>/date=2026-01-01/   a complete input in the run's format
    <input_root>/date=2026-01-02/   (listenbrainz: interactions/ + tracks.parquet)

or a folder of ListenBrainz dumps as downloaded, a partition per dump date (:func:`dump_partitions`)::

    <input_root>/listenbrainz-listens-dump-2001-20260101-000003-full.tar.zst
    <input_root>/listenbrainz-listens-dump-2003-20260102-000002-incremental.tar.zst

Curated layout (``<PIPELINE_HOME>/curated/<input folder name>/`` by default)::

    dataset.json                    which raw root and format this table is built from
    listens/date=D/                 user_idx, track_idx, timestamp, play_count, source_row
    listens/date=D/_partition.json  the partition's record: counts, raw fingerprint, ID map version
    meta/date=D/                    quarantine/ (rows + reason), tracks/ (display names),
                                    validation.json, data_docs/, stage summaries

**Exactly once.** A partition counts as ingested iff ``listens/date=D/`` exists: it is written
into a temporary sibling and renamed into place in one step (:func:`pipeline.paths.atomic_dir`)
with its record inside, under a file lock. Everything before that rename (validation, the ID
map update, ``meta/date=D``) is safe to redo: a retried or re-run task finds the committed
folder and skips the partition, and a task killed before the rename leaves nothing that counts.

**Order and duplicates.** Pending partitions (date <= the run's date, not yet committed) go one
by one in date order through the same two stages as a snapshot
(:func:`pipeline.ingest.validate_stage`, :func:`pipeline.ingest.dedup_stage`), extending the
ID map each time. A listen already in the curated history (same user_idx, track_idx,
timestamp) is dropped and counted in ``duplicates`` (``duplicates_of_history``), so
``rows_in = rows_out + duplicates + quarantined`` holds per partition.

**Changed raw files.** The record lists every raw file (relative name, size, modification
time, SHA-256). Each run compares the committed partitions' raw folders with it (content is
re-hashed only when size or mtime moved) and stops, naming the partition and the fix, when a
file was added, removed or rewritten.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import IngestConfig
from pipeline.paths import (
    IngestLayout, atomic_dir, atomic_write_text, file_lock, fingerprint, pipeline_home, run_key, sha256_file,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "RawPartition", "PartitionChanged", "is_partitioned", "raw_partitions", "default_curated_dir",
    "committed", "check_unchanged", "pending", "validate_pending", "commit_pending", "ingest_pending",
    "run_summary", "training_listens", "write_tracks", "partition_log", "day_end",
]

log = logging.getLogger(__name__)

_PART = re.compile(r"^date=(.*)$")
RECORD = "_partition.json"
# what a partition's staged ingest folder keeps in the curated table's meta/<partition>/
_KEPT = ("quarantine", "tracks", "data_docs", "validation_report", "validate_summary", "dedup_summary")


class PartitionChanged(ValueError):
    """A committed partition's raw files changed after it was ingested."""


@dataclass(frozen=True)
class RawPartition:
    date: dt.date
    path: Path

    @property
    def name(self) -> str:
        return f"date={self.date.isoformat()}"


def day_end(day: dt.date) -> dt.datetime:
    """The end of a UTC day (the next midnight): validation's ``as_of`` for that day's partition."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)


def _visible(p: Path) -> bool:
    return not p.name.startswith((".", "_"))


def _dump(p: Path) -> "re.Match[str] | None":
    """The ListenBrainz dump name of ``p`` (an archive or the folder it extracts to), or None."""
    from pipeline.loaders.listenbrainz import DUMP_NAME
    from pipeline.loaders.release import plain_name

    return DUMP_NAME.fullmatch(plain_name(p.name))


def is_partitioned(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder of ``date=...`` sub-folders or of ListenBrainz dumps (nightly increments)."""
    p = Path(path)
    return p.is_dir() and _dump(p) is None and any((c.is_dir() and _PART.match(c.name)) or _dump(c) for c in p.iterdir())


def dump_partitions(root: Path) -> tuple[list[RawPartition], list[str]]:
    """A folder of ListenBrainz dumps as partitions: one dump per dump date, in date order; and what was left out.

    ListenBrainz makes an incremental dump every day and a full one on the 1st and 15th, with the same
    time as that day's incremental: the full holds every listen up to then, that incremental included
    (listenbrainz-server, listenbrainz/dumps/manager.py). So on a day with both, the first partition
    takes the full (the base) and a later one the incremental (the full adds nothing but what earlier
    dumps hold). The same dump as archive and extracted folder counts once (the folder is read).
    """
    dumps: dict[str, Path] = {}
    kinds, stray = set(), []
    for c in sorted(root.iterdir()):
        if not _visible(c) or c.name.endswith((".md5", ".sha256", ".txt")):
            continue
        m = _dump(c)
        if m is None:
            stray.append(c.name)
            continue
        kinds.add(m["kind"])
        if m.group(0) not in dumps or c.is_dir():
            dumps[m.group(0)] = c
    if stray:
        raise ValueError(f"{root} mixes ListenBrainz dumps with other entries {stray}; a folder of dumps holds only "
                         "listenbrainz-*-dump-<id>-<date>-<time>-<full|incremental> archives or folders (move the rest "
                         "away, or prefix it with '_' to be ignored)")
    if len(kinds) > 1:
        raise ValueError(f"{root} holds both listens (JSON) and Spark (Parquet) dumps; keep one kind per folder")
    by_day: dict[dt.date, dict[str, Path]] = {}
    for name, path in dumps.items():
        m = _dump(path)
        day = dt.datetime.strptime(m["date"], "%Y%m%d").date()
        if m["type"] in by_day.setdefault(day, {}):
            raise ValueError(f"{root} holds two {m['type']} dumps dated {day} ({by_day[day][m['type']].name}, {path.name}); "
                             "keep one")
        by_day[day][m["type"]] = path
    parts, left_out = [], []
    for i, day in enumerate(sorted(by_day)):
        both = by_day[day]
        pick = "full" if "full" in both and (i == 0 or "incremental" not in both) else "incremental"
        parts.append(RawPartition(day, both[pick]))
        left_out += [p.name for t, p in both.items() if t != pick]
    return parts, left_out


def raw_partitions(root: str | os.PathLike[str]) -> list[RawPartition]:
    """The ``date=YYYY-MM-DD`` folders (or ListenBrainz dumps) under ``root``, in date order; anything else
    visible is an error."""
    root = Path(root)
    if any(_dump(c) for c in root.iterdir()):
        parts_, left_out = dump_partitions(root)
        if left_out:
            log.info("ListenBrainz dumps in %s held by another dump of the same day, not read: %s", root, left_out)
        return parts_
    parts, stray = [], []
    for c in sorted(root.iterdir()):
        if not _visible(c):
            continue
        m = _PART.match(c.name)
        if not (m and c.is_dir()):
            stray.append(c.name)
            continue
        try:
            day = dt.datetime.strptime(m.group(1), "%Y-%m-%d").date()
        except ValueError:
            raise ValueError(f"{c}: partition folder names must be date=YYYY-MM-DD (a valid date); rename it") from None
        if c.name != f"date={day.isoformat()}":
            raise ValueError(f"{c}: partition folder names must be date=YYYY-MM-DD; rename it to date={day.isoformat()}")
        parts.append(RawPartition(day, c))
    if stray:
        raise ValueError(f"{root} mixes date= partitions with other entries {stray}; a partitioned input holds only "
                         "date=YYYY-MM-DD folders (move the rest away, or prefix it with '_' to be ignored)")
    return parts


def default_curated_dir(input_root: str | os.PathLike[str], home: Path | None = None) -> Path:
    """``<PIPELINE_HOME>/curated/<input folder name>``."""
    return (home or pipeline_home()) / "curated" / run_key(Path(input_root).resolve().name)


# ---------------------------------------------------------------- raw fingerprints

def _raw_files(part: Path, known: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every file Spark would read under ``part`` (hidden ``.``/``_`` names skipped), with its SHA-256.

    A file whose size and mtime match ``known`` keeps the known hash (not re-read).
    """
    out = []
    base, files = (part.parent, [part]) if part.is_file() else (part, sorted(part.rglob("*")))  # a dump archive is one file
    for f in files:
        rel = f.relative_to(base)
        if not f.is_file() or any(not _visible(Path(x)) for x in rel.parts):
            continue
        st = f.stat()
        prev = (known or {}).get(str(rel))
        same = prev is not None and prev["size"] == st.st_size and prev["mtime_ns"] == st.st_mtime_ns
        out.append({"path": str(rel), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "sha256": prev["sha256"] if same else sha256_file(f)})
    return out


def _fingerprint(files: list[dict[str, Any]]) -> str:
    return fingerprint((f["path"], f["size"], f["sha256"]) for f in files)


# ---------------------------------------------------------------- the curated table

def committed(curated: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``{"date=D": record}`` for every committed partition of the curated table."""
    root = Path(curated) / "listens"
    if not root.is_dir():
        return {}
    out = {}
    for c in sorted(root.iterdir()):
        if c.is_dir() and _PART.match(c.name):
            rec = c / RECORD
            if not rec.exists():
                raise RuntimeError(f"{c} has no {RECORD}: it was not written by the pipeline; delete it and run again")
            out[c.name] = json.loads(rec.read_text())
    return out


def _check_dataset(curated: Path, input_root: Path, fmt: str) -> None:
    f = curated / "dataset.json"
    if not f.exists():
        return
    d = json.loads(f.read_text())
    if d["input_root"] != str(input_root) or d["input_format"] != fmt:
        raise ValueError(
            f"the curated table {curated} was built from {d['input_root']} ({d['input_format']}), not {input_root} "
            f"({fmt}); point input_path back at it, or give this input its own folder name (the table is named "
            "after it) or delete the curated table to rebuild it")


def check_unchanged(parts: list[RawPartition], records: Mapping[str, Mapping[str, Any]], curated: Path) -> None:
    """Stop when a committed partition's raw files differ from the ones it was ingested from."""
    raw = {p.name: p for p in parts}
    for name, rec in records.items():
        if name not in raw:
            log.warning("raw partition %s is gone from the input; its curated listens stay", name)
            continue
        known = {f["path"]: f for f in rec["raw_files"]}
        now = {f["path"]: f for f in _raw_files(raw[name].path, known)}
        added = sorted(set(now) - set(known))
        removed = sorted(set(known) - set(now))
        modified = sorted(k for k in set(now) & set(known)
                          if (now[k]["size"], now[k]["sha256"]) != (known[k]["size"], known[k]["sha256"]))
        if added or removed or modified:
            what = "; ".join(f"{label}: {', '.join(v[:5])}{' ...' if len(v) > 5 else ''}"
                             for label, v in (("added", added), ("removed", removed), ("modified", modified)) if v)
            raise PartitionChanged(
                f"raw partition {raw[name].path} changed after it was ingested at {rec.get('ingested_at')} ({what}). "
                f"Its curated listens came from the old files. To re-ingest it, delete {curated / 'listens' / name} "
                f"(and {curated / 'meta' / name}) and run again: it is then pending, and listens already in other "
                "partitions count as duplicates. Otherwise restore the original files.")


def pending(parts: list[RawPartition], records: Mapping[str, Any], up_to: dt.date) -> list[RawPartition]:
    return [p for p in parts if p.date <= up_to and p.name not in records]


# ---------------------------------------------------------------- the two stages, per partition

def validate_pending(cfg: IngestConfig, curated: Path, work: Path, *, up_to: dt.date,
                     spark: "SparkSession") -> dict[str, Any]:
    """Validate every pending partition (date <= ``up_to``) into ``work/date=D/``, in date order.

    Fails on a changed raw partition, on a partition that breaks the suite, and when no
    partition at or before ``up_to`` exists at all. Commits nothing.
    """
    from pipeline import ingest, loaders

    root, curated, work = Path(cfg.input_path).resolve(), Path(curated), Path(work)
    parts = raw_partitions(root)
    if parts and cfg.input_format == "auto":  # one format for the whole table: the first partition's
        fmt, why = loaders.resolve_format("auto", parts[0].path, columns=cfg.columns)
        log.info("input_format auto: %s (%s)", fmt, why)
        cfg = replace(cfg, input_format=fmt)
    _check_dataset(curated, root, cfg.input_format)
    records = committed(curated)
    check_unchanged(parts, records, curated)
    todo = pending(parts, records, up_to)
    if not todo and not any(dt.date.fromisoformat(n[5:]) <= up_to for n in records):
        first = parts[0].name if parts else "none"
        raise FileNotFoundError(f"{root} holds no partition at or before {up_to} (earliest: {first}); "
                                "run for a later date or land that night's date= folder first")
    log.info("date-partitioned input %s: %d partitions, %d ingested, pending up to %s: %s", root, len(parts),
             len(records), up_to, [p.name for p in todo] or "none")
    validated, raw_files = {}, {}
    for p in todo:
        raw_files[p.name] = _raw_files(p.path)  # before reading: a file rewritten meanwhile shows up next run
        s = ingest.validate_stage(replace(cfg, input_path=str(p.path)), work / p.name, spark=spark, as_of=day_end(p.date))
        if not s["has_timestamps"]:
            raise ValueError(f"{p.path}: format {cfg.input_format!r} has no timestamps; nightly increments need "
                             "timestamped listens (a listen is identified by user, track and time)")
        validated[p.name] = s
    return {
        "increments": True, "input_root": str(root), "curated": str(curated), "work": str(work),
        "format": cfg.input_format, "up_to": up_to.isoformat(), "pending": [p.name for p in todo],
        "validated": validated, "raw_files": raw_files, "raw_paths": {p.name: str(p.path) for p in todo},
        "has_timestamps": True,
        "rows_in": sum(s["rows_in"] for s in validated.values()),
        "quarantined": sum(s["quarantined"] for s in validated.values()),
    }


def _commit_one(spark: "SparkSession", curated: Path, stage: Path, name: str, v: Mapping[str, Any],
                raw_path: Path, raw_files: list[dict[str, Any]], *, idmap_root: Path, ingested_by: str) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from pipeline import ingest

    staged_dir = IngestLayout(stage)
    d = ingest.dedup_stage(staged_dir.validated, stage, idmap_root=idmap_root, has_timestamps=True, spark=spark)
    staged = spark.read.parquet(str(staged_dir.listens))
    fresh = staged
    history_root = curated / "listens"
    if committed(curated):
        lo, hi = staged.agg(F.min("timestamp"), F.max("timestamp")).first()
        if lo is not None:
            key = ["user_idx", "track_idx", "timestamp"]
            history = (spark.read.parquet(str(history_root)).select(*key)
                       .where((F.col("timestamp") >= F.lit(lo)) & (F.col("timestamp") <= F.lit(hi))))
            fresh = staged.join(history, key, "left_anti")
    record = {
        "partition": name, "date": name[5:], "source": str(raw_path), "format": v["format"], "as_of": v["as_of"],
        "rows_in": v["rows_in"], "quarantined": v["quarantined"], "quarantined_by_reason": v["quarantined_by_reason"],
        "duplicates_within_partition": d["duplicates"],
        "raw_fingerprint": _fingerprint(raw_files), "raw_files": raw_files,
        **{k: d[k] for k in ("idmap_version", "n_users_mapped", "n_tracks_mapped", "users_added", "tracks_added",
                             "tracks_merged_by_name", "rows_by_mbid", "rows_by_name", "rows_by_source_id")},
        "ingested_by": ingested_by,
    }
    # reports and quarantine first (re-written if the commit below never happens) ...
    with atomic_dir(curated / "meta" / name) as tmp:
        tmp.mkdir(parents=True)
        for name_ in _KEPT:
            src, dst = getattr(staged_dir, name_), getattr(IngestLayout(tmp), name_)
            if src.is_dir():
                shutil.copytree(src, dst)
            elif src.exists():
                shutil.copy2(src, dst)
    # ... then the one rename that makes the partition count as ingested
    with atomic_dir(history_root / name) as tmp:
        fresh.coalesce(1).sortWithinPartitions("user_idx", "timestamp", "track_idx").write.parquet(str(tmp))
        rows_out = spark.read.parquet(str(tmp)).count()
        record.update(rows_out=rows_out, duplicates_of_history=d["rows_out"] - rows_out,
                      duplicates=d["duplicates"] + d["rows_out"] - rows_out,
                      ingested_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        ingest._check_reconciles(f"ingest of {name}", record["rows_in"], rows_out, record["duplicates"],
                                 record["quarantined"])
        (tmp / RECORD).write_text(json.dumps(record, indent=1))
    log.info("ingested %s: %d rows in, %d kept, %d duplicates (%d of earlier partitions), %d quarantined; ID map %s",
             name, record["rows_in"], rows_out, record["duplicates"], record["duplicates_of_history"],
             record["quarantined"], record["idmap_version"])
    return record


def commit_pending(validated: Mapping[str, Any], *, idmap_root: Path, spark: "SparkSession",
                   ingested_by: str = "cli") -> dict[str, Any]:
    """Dedup, map and commit each validated partition in date order; skip those already committed.

    Returns :func:`run_summary` for the run's date with the partitions this call ingested.
    """
    curated, work = Path(validated["curated"]), Path(validated["work"])
    root = Path(validated["input_root"])
    done, skipped = [], []
    with file_lock(curated / ".lock"):
        if not (curated / "dataset.json").exists():
            atomic_write_text(curated / "dataset.json", json.dumps(
                {"input_root": str(root), "input_format": validated["format"]}, indent=1))
        _check_dataset(curated, root, validated["format"])
        for name in validated["pending"]:
            if name in committed(curated):
                log.info("%s is already ingested (a retry or another run committed it): skipped", name)
                skipped.append(name)
                continue
            done.append(_commit_one(spark, curated, work / name, name, validated["validated"][name],
                                    Path(validated.get("raw_paths", {}).get(name, root / name)),
                                    validated["raw_files"][name], idmap_root=Path(idmap_root), ingested_by=ingested_by))
            shutil.rmtree(work / name, ignore_errors=True)
    return run_summary(curated, dt.date.fromisoformat(validated["up_to"]), ingested=done, skipped=skipped,
                       input_root=root)


def ingest_pending(cfg: IngestConfig, curated: Path, work: Path, *, up_to: dt.date, idmap_root: Path,
                   spark: "SparkSession", ingested_by: str = "cli") -> dict[str, Any]:
    """Both steps (what the CLI runs; the DAG runs them as its validate and dedup tasks)."""
    v = validate_pending(cfg, curated, work, up_to=up_to, spark=spark)
    return commit_pending(v, idmap_root=idmap_root, spark=spark, ingested_by=ingested_by)


def run_summary(curated: Path, up_to: dt.date, *, ingested: list[dict[str, Any]] = (), skipped: list[str] = (),
                input_root: Path | None = None) -> dict[str, Any]:
    """A run's view of the curated table: the partitions up to ``up_to`` and what this run added.

    ``rows_in``/``rows_out``/``duplicates``/``quarantined`` count the partitions ingested now;
    ``history_rows`` is every curated listen the run trains from. The ID map version is the
    newest one those partitions used.
    """
    records = {n: r for n, r in committed(curated).items() if dt.date.fromisoformat(r["date"]) <= up_to}
    if not records:
        raise FileNotFoundError(f"the curated table {curated} has no partition at or before {up_to}")
    newest = max(records.values(), key=lambda r: r["idmap_version"])
    by_reason: dict[str, int] = {}
    for r in ingested:
        for k, n in r["quarantined_by_reason"].items():
            by_reason[k] = by_reason.get(k, 0) + n
    total = lambda key: sum(r[key] for r in ingested)  # noqa: E731
    return {
        "increments": True, "curated": str(curated), "input_root": str(input_root) if input_root else None,
        "up_to": up_to.isoformat(), "partitions": sorted(records), "ingested": [r["partition"] for r in ingested],
        "skipped": list(skipped), "format": newest["format"], "source": str(input_root or curated),
        "has_timestamps": True,
        "rows_in": total("rows_in"), "rows_out": total("rows_out"), "duplicates": total("duplicates"),
        "duplicates_of_history": total("duplicates_of_history"), "quarantined": total("quarantined"),
        "quarantined_by_reason": by_reason, "tracks_merged_by_name": total("tracks_merged_by_name"),
        "users_added": total("users_added"), "tracks_added": total("tracks_added"),
        "history_rows": sum(r["rows_out"] for r in records.values()),
        "idmap_version": newest["idmap_version"], "n_users_mapped": newest["n_users_mapped"],
        "n_tracks_mapped": newest["n_tracks_mapped"],
    }


def training_listens(spark: "SparkSession", curated: Path, partitions: list[str], *, up_to: dt.date,
                     window_days: int | None = None) -> "DataFrame":
    """The curated listens of ``partitions``; with ``window_days`` only timestamps in the last that
    many days ending with ``up_to`` (at or after ``day_end(up_to) - window_days``)."""
    from pyspark.sql import functions as F

    root = Path(curated) / "listens"
    df = (spark.read.option("basePath", str(root)).parquet(*[str(root / p) for p in partitions])
          .select("user_idx", "track_idx", "timestamp", "play_count", "source_row"))
    if window_days:
        start = day_end(up_to) - dt.timedelta(days=int(window_days))
        df = df.where(F.col("timestamp") >= F.lit(start.strftime("%Y-%m-%d %H:%M:%S")).cast("timestamp"))  # session tz: UTC
    return df


def window_start(up_to: dt.date, window_days: int | None) -> str | None:
    return (day_end(up_to) - dt.timedelta(days=int(window_days))).isoformat() if window_days else None


def write_tracks(spark: "SparkSession", curated: Path, partitions: list[str], out: Path) -> None:
    """Display names of every track in ``partitions`` (track_idx, track_key, artist_name, track_name)."""
    from pyspark.sql import functions as F

    meta = Path(curated) / "meta"
    paths = [str(meta / p / "tracks") for p in partitions if (meta / p / "tracks").exists()]
    names = (spark.read.parquet(*paths).groupBy("track_idx")
             .agg(F.min("track_key").alias("track_key"), F.min("artist_name").alias("artist_name"),
                  F.min("track_name").alias("track_name")))
    with atomic_dir(out) as tmp:
        names.write.parquet(str(tmp))


# ---------------------------------------------------------------- splitting an existing log by day

def partition_log(spark: "SparkSession", fmt: str, src: Path, out: Path, *, until: dt.date | None = None,
                  tracks: str | None = None) -> dict[str, Any]:
    """Write ``src`` (a ListenBrainz-layout log) as ``out/date=YYYY-MM-DD/`` folders by listen day (UTC).

    Each day lands in one atomic rename, as a landing process should. Days whose folder exists
    are left alone (never rewritten, so nothing ingested changes); days after ``until`` are not
    written. Rows without a parseable timestamp go to ``out/_unpartitioned/`` and are counted.
    """
    from pyspark.sql import functions as F

    from pipeline import loaders

    if fmt != "listenbrainz":
        raise ValueError(f"pipeline partition reads the listenbrainz layout only, not {fmt!r}; "
                         "other formats can be partitioned with any tool that writes one input per date= folder")
    src, out = Path(src), Path(out)
    inter = src / "interactions" if (src / "interactions").exists() else src / "interactions.parquet"
    tracks_path = Path(tracks) if tracks else src / "tracks.parquet"
    listens = loaders.read_parquet(spark, loaders.require(inter, "interactions/"), ("user_id", "recording_msid", "timestamp"))
    meta = loaders.read_parquet(spark, loaders.require(tracks_path, "tracks.parquet"), ("recording_msid",))
    ts = F.col("timestamp")
    if dict(listens.dtypes)["timestamp"] not in ("timestamp", "timestamp_ntz"):
        ts = loaders.parse_timestamp(F.col("timestamp"))
    listens = listens.withColumn("date", F.to_date(ts))
    out.mkdir(parents=True, exist_ok=True)
    existing = {p.name for p in out.iterdir() if _PART.match(p.name)}
    staging = out / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        listens.repartition("date").write.partitionBy("date").parquet(str(staging / "interactions"))
        day_tracks = listens.select("date", "recording_msid").distinct().join(meta, "recording_msid")
        day_tracks.repartition("date").write.partitionBy("date").parquet(str(staging / "tracks"))
        written, kept, later = [], [], []
        for d in sorted((staging / "interactions").iterdir()):
            if not d.name.startswith("date="):
                continue
            if d.name == "date=__HIVE_DEFAULT_PARTITION__":
                with atomic_dir(out / "_unpartitioned") as tmp:
                    os.replace(d, tmp)
                continue
            day = dt.date.fromisoformat(d.name[5:])
            if until and day > until:
                later.append(d.name)
            elif d.name in existing:
                kept.append(d.name)
            else:
                with atomic_dir(out / d.name) as tmp:
                    tmp.mkdir()
                    os.replace(d, tmp / "interactions")
                    os.replace(staging / "tracks" / d.name, tmp / "tracks.parquet")
                written.append(d.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    unpart = out / "_unpartitioned"
    n_bad = spark.read.parquet(str(unpart)).count() if unpart.exists() else 0
    return {"out": str(out), "written": written, "already_there": kept, "after_until": len(later),
            "unpartitioned_rows": n_bad}
