"""Ingest: load → validate (quarantine) → canonical tracks → drop duplicates → ID map.

Two stages, each runnable alone (the DAG runs them as two tasks):

* :func:`validate_stage` writes ``validated/`` (good rows), ``quarantine/`` (bad rows with a
  ``reason``), ``validation.json`` and Data Docs, and fails the run when the batch breaks the
  Great Expectations suite.
* :func:`dedup_stage` resolves each listen's canonical track (docs/contracts.md "Canonical track"),
  drops exact duplicates, extends the ID map and writes ``listens/`` with
  ``(user_idx, track_idx, timestamp, play_count, source_row)``.

Counts reconcile at every stage: ``rows_in = rows_out + duplicates + quarantined``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import idmap, validate
from pipeline.config import IngestConfig
from pipeline.paths import IngestLayout, atomic_dir, atomic_write_text
from pipeline.spark import jobs, move_partition

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["normalize_name", "track_key", "validate_stage", "dedup_stage", "ingest"]

log = logging.getLogger(__name__)

_VERDICT = "verdict"  # validate's staging partition column: "validated" or "quarantine"


def normalize_name(text: str | None) -> str | None:
    """Unicode NFKC, casefold, trim, inner whitespace collapsed; None/blank → None."""
    if text is None:
        return None
    out = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return out or None


def track_key(mbid: str | None, artist: str | None, track: str | None, source_id: str | None) -> str | None:
    """The canonical track key of one listen (the pure-Python twin of :func:`_with_track_key`)."""
    if mbid and mbid.strip():
        return "mbid:" + mbid.strip().lower()
    a, t = normalize_name(artist), normalize_name(track)
    if a and t:
        return f"name:{a}\x1f{t}"
    if source_id and source_id.strip():
        return "src:" + source_id.strip()
    return None


def _normalized_names(spark: "SparkSession", df: "DataFrame") -> "DataFrame":
    """(artist_name, track_name, artist_norm, track_norm) for the distinct name pairs only."""
    import pandas as pd
    from pyspark.sql import functions as F

    def _norm(s):
        return s.map(normalize_name, na_action="ignore")

    _norm.__annotations__ = {"s": pd.Series, "return": pd.Series}  # real types: this module defers annotations
    norm = F.pandas_udf(_norm, "string")

    pairs = df.where(F.col("track_mbid").isNull()).select("artist_name", "track_name").distinct()
    return pairs.select(
        "artist_name", "track_name",
        norm("artist_name").alias("artist_norm"), norm("track_name").alias("track_norm"),
    )


def _with_track_key(spark: "SparkSession", df: "DataFrame") -> "DataFrame":
    from pyspark.sql import functions as F

    df = df.withColumn("track_mbid", F.when(F.trim("track_mbid") != "", F.lower(F.trim("track_mbid"))))
    names = _normalized_names(spark, df)
    # only the rows without an MBID need their names: the rest skip the join's shuffle and sort
    by_name = df.where(F.col("track_mbid").isNull()).join(names, ["artist_name", "track_name"], "left")
    none = F.lit(None).cast("string")
    by_mbid = df.where(F.col("track_mbid").isNotNull()).withColumn("artist_norm", none).withColumn("track_norm", none)
    joined = by_name.unionByName(by_mbid)
    key: Column = (
        F.when(F.col("track_mbid").isNotNull(), F.concat(F.lit("mbid:"), F.col("track_mbid")))
        .when(F.col("artist_norm").isNotNull() & F.col("track_norm").isNotNull(),
              F.concat(F.lit("name:"), F.col("artist_norm"), F.lit("\x1f"), F.col("track_norm")))
        .otherwise(F.concat(F.lit("src:"), F.trim(F.col("source_track_id"))))
    )
    return joined.withColumn("track_key", key).drop("artist_norm", "track_norm")


def validate_stage(
    cfg: IngestConfig, out_dir: Path, *, spark: "SparkSession", as_of: dt.datetime | None = None
) -> dict[str, Any]:
    """Load and validate; write validated rows, quarantine and the validation report."""
    from pyspark.sql import functions as F

    from pipeline import loaders

    as_of = as_of or dt.datetime.now(dt.timezone.utc)
    out = IngestLayout(Path(out_dir))
    fmt, recognised = loaders.resolve_format(cfg.input_format, cfg.input_path, columns=cfg.columns)
    if fmt != cfg.input_format:
        log.info("input_format auto: %s", recognised)
        cfg = replace(cfg, input_format=fmt)
    lim = validate.limits(cfg, as_of)
    # One pass over the source: every row is checked and written once, into a folder per verdict (a write
    # partitioned by it), which then become validated/ and quarantine/. The suite and the counts read back
    # only the columns they need; nothing wide is cached.
    checked = out.root / "checked"
    what = f"validate: load the {cfg.input_format} batch, check and write each row"
    scratch = out.root / "staging"  # what an archive's members are staged as; gone once the rows are written
    shutil.rmtree(scratch, ignore_errors=True)
    with atomic_dir(checked) as tmp, jobs(spark, what):
        loaded = loaders.load(spark, cfg.input_format, cfg.input_path, tracks=cfg.tracks_path,
                              aliases=cfg.aliases_path, columns=cfg.columns, scratch=scratch)
        raw = validate.with_rating_confidence(loaded.df, cfg.rating_mapping)
        tagged = validate.tag(raw, loaded.has_timestamps, lim)
        staged = tagged.select("*", F.when(F.col("rule").isNull(), "validated").otherwise("quarantine").alias(_VERDICT))
        staged.write.partitionBy(_VERDICT).parquet(str(tmp))
    shutil.rmtree(scratch, ignore_errors=True)
    release = {**loaded.stats, "recognised": recognised}
    rows = spark.read.schema(staged.schema).parquet(str(checked))  # the schema given: an empty batch has no files
    with jobs(spark, "validate: the Great Expectations suite"):
        report = validate.run_expectations(
            rows, has_timestamps=loaded.has_timestamps, lim=lim, max_quarantine_share=cfg.max_quarantine_share,
            docs_dir=out.data_docs,
        )
    with jobs(spark, "validate: count the rows, by verdict and reason"):
        counts = rows.groupBy(_VERDICT, "reason").count().collect()
    for name, final in (("validated", out.validated), ("quarantine", out.quarantine)):
        with atomic_dir(final) as tmp:
            move_partition(spark, checked, _VERDICT, name, tmp, rows.drop(_VERDICT).schema)
    shutil.rmtree(checked, ignore_errors=True)
    rows_in = sum(r["count"] for r in counts)
    by_reason = {r["reason"]: r["count"] for r in sorted(counts, key=lambda r: r["reason"] or "")
                 if r[_VERDICT] != "validated"}
    with jobs(spark, "validate: count what was written"):  # the moves lost nothing
        rows_out, quarantined = (spark.read.parquet(str(p)).count() for p in (out.validated, out.quarantine))
    users = {"users_lost": 0, "users_lost_sample": [], "rules": {}}
    if quarantined:
        with jobs(spark, "validate: users the quarantine loses, by rule"):
            users = validate.quarantine_rules(spark, out.quarantine, out.validated)
    summary = {
        "source": loaded.source, "format": loaded.fmt, "has_timestamps": loaded.has_timestamps,
        "rows_in": rows_in, "rows_out": rows_out, "quarantined": quarantined,
        "quarantined_share": quarantined / rows_in if rows_in else 0.0,
        "quarantined_by_reason": by_reason, "as_of": as_of.isoformat(),
        "limits": {"min_timestamp": lim.min_timestamp and lim.min_timestamp.isoformat(),
                   "max_timestamp": lim.max_timestamp.isoformat(), "min_play_count": lim.min_play_count,
                   "max_play_count": lim.max_play_count, "rating_mapping": cfg.rating_mapping,
                   "rating_threshold": lim.rating_threshold},
        "max_quarantine_share": cfg.max_quarantine_share, "quarantine_path": str(out.quarantine),
        **users,
        "release": release.get("release", Path(loaded.source).name), "loader_stats": release,
        "expectations_failed": report["failed"], "success": report["success"],
    }
    _check_reconciles("validate", rows_in, rows_out, 0, quarantined)
    atomic_write_text(out.validation_report, json.dumps(report["result"], indent=1))
    atomic_write_text(out.validate_summary, json.dumps(summary, indent=1))
    if not report["success"]:
        raise validate.ValidationFailed(loaded.source, report["failed"], summary)
    log.info("validated %s (%s, %s): %d rows in, %d kept, %d quarantined", loaded.source, loaded.fmt, recognised,
             rows_in, rows_out, quarantined)
    return summary


def dedup_stage(
    validated_dir: Path, out_dir: Path, *, idmap_root: Path, has_timestamps: bool, spark: "SparkSession"
) -> dict[str, Any]:
    """Canonical tracks, exact-duplicate removal, ID map; writes ``listens/`` and ``summary.json``.

    With timestamps, a duplicate is a second row with the same (user, track, timestamp); the
    first by source row is kept. Without timestamps (aggregated play tables), rows for the
    same (user, track) after alias/name resolution are merged and their play counts summed.
    """
    from pyspark.sql import functions as F

    out = IngestLayout(Path(out_dir))
    rows = spark.read.parquet(str(validated_dir))
    with jobs(spark, "dedup: count the validated rows"):
        rows_in = rows.count()
    # the cache holds what the jobs below read, no more: the MBID is inside the key, and a source id only
    # where names made the key (the keying counts compare the two)
    named = F.col("track_key").startswith("name:")
    keyed = _with_track_key(spark, rows).select(
        F.trim("user_id").alias("user_id"), "track_key", "timestamp", "play_count", "source_row",
        "artist_name", "track_name", F.when(named, F.col("source_track_id")).alias("name_source"),
    ).cache()
    with jobs(spark, "dedup: canonical track keys"):
        keyed.count()
    # one row per track with its display name (the first artist and title by value): the ID map takes its
    # keys from here, already distinct, and the names file is this joined with the map, one pass over keyed
    per_track = keyed.groupBy("track_key").agg(
        F.min("artist_name").alias("artist_name"), F.min("track_name").alias("track_name")).cache()
    # Ids first, then duplicates. The map is a bijection, so (user_idx, track_idx, timestamp) groups the rows
    # exactly as (user_id, track_key, timestamp) would, and the one shuffle that places the listens by user
    # also groups them: its hash partitioning by user_idx satisfies the aggregate's clustering, and it moves
    # five numbers per row instead of two strings. With timestamps, the listens are sorted as they are
    # written, so the aggregate runs over that sort (spark.sql.execution.replaceHashWithSortAgg) and the
    # rows leave it in order: one sort and no hash table.
    with jobs(spark, "dedup: extend the ID map"):
        ids, added = idmap.update(
            spark, idmap_root,
            users=keyed.select(F.col("user_id").alias("key")),
            tracks=per_track.select(F.col("track_key").alias("key")),
        )
    users = spark.read.parquet(str(ids.path("users"))).withColumnRenamed("key", "user_id").withColumnRenamed("id", "user_idx")
    tracks = spark.read.parquet(str(ids.path("tracks"))).withColumnRenamed("key", "track_key").withColumnRenamed("id", "track_idx")
    # left joins: a key missing from the map would leave a null id, which the check below finds
    numbered = (
        keyed.join(F.broadcast(users) if ids.n_users < 5_000_000 else users, "user_id", "left")
        .join(F.broadcast(tracks) if ids.n_tracks < 2_000_000 else tracks, "track_key", "left")
        .select("user_idx", "track_idx", "timestamp", "play_count", "source_row")
        .repartition(8, "user_idx")
    )
    order = ("user_idx", "timestamp", "track_idx")  # the listens files' order
    if has_timestamps:
        # the first row by source_row of each (user, track, timestamp); source_row is unique, so min_by
        # has no ties to break
        listens = numbered.sortWithinPartitions(*order).groupBy(*order).agg(
            F.min("source_row").alias("source_row"),
            F.min_by("play_count", "source_row").alias("play_count"),
        )
    else:
        listens = numbered.groupBy("user_idx", "track_idx").agg(
            F.min("source_row").alias("source_row"),
            F.sum("play_count").alias("play_count"),
            F.first("timestamp").alias("timestamp"),
        )
    listens = listens.select("user_idx", "track_idx", "timestamp", F.col("play_count").cast("int"), "source_row")
    with atomic_dir(out.listens) as tmp:
        with jobs(spark, "dedup: drop exact duplicates, write the listens with their ids"):
            # a no-op after the sort aggregate; it keeps the order when the aggregate is a hash one
            listens.sortWithinPartitions(*order).write.parquet(str(tmp))
        with jobs(spark, "dedup: count the listens written"):
            written = spark.read.parquet(str(tmp))
            rows_out, unmapped = written.agg(
                F.count(F.lit(1)), F.count(F.when(F.col("user_idx").isNull() | F.col("track_idx").isNull(), 1))
            ).first()
        if unmapped:
            raise RuntimeError(f"dedup found {unmapped} listens whose user or track is missing from the ID map "
                               f"{ids.root / ids.version}")
    # a display name per track, for humans reading recommendations
    names = per_track.join(tracks, "track_key").select("track_idx", "track_key", "artist_name", "track_name")
    with atomic_dir(out.tracks) as tmp, jobs(spark, "dedup: write a display name per track"):
        names.write.parquet(str(tmp))
    with jobs(spark, "dedup: how tracks were keyed"):
        stats = keyed.agg(
            F.countDistinct("name_source").alias("name_sources"),
            F.sum(F.col("track_key").startswith("mbid:").cast("long")).alias("rows_by_mbid"),
            F.sum(named.cast("long")).alias("rows_by_name"),
            F.sum(F.col("track_key").startswith("src:").cast("long")).alias("rows_by_source_id"),
        ).first().asDict()
        stats["name_keys"] = per_track.where(named).count()
    summary = {
        "rows_in": rows_in, "rows_out": rows_out, "duplicates": rows_in - rows_out, "quarantined": 0,
        "has_timestamps": has_timestamps,
        "tracks_merged_by_name": max(0, (stats["name_sources"] or 0) - (stats["name_keys"] or 0)),
        "rows_by_mbid": stats["rows_by_mbid"] or 0, "rows_by_name": stats["rows_by_name"] or 0,
        "rows_by_source_id": stats["rows_by_source_id"] or 0,
        "idmap_version": ids.version, "n_users_mapped": ids.n_users, "n_tracks_mapped": ids.n_tracks, **added,
    }
    keyed.unpersist()
    per_track.unpersist()
    _check_reconciles("dedup", rows_in, rows_out, summary["duplicates"], 0)
    atomic_write_text(out.dedup_summary, json.dumps(summary, indent=1))
    return summary


def ingest(cfg: IngestConfig, out_dir: Path, *, idmap_root: Path, spark: "SparkSession",
           as_of: dt.datetime | None = None) -> dict[str, Any]:
    """Both stages; writes ``summary.json`` with rows_in, rows_out, duplicates, quarantined, by reason."""
    out_dir = Path(out_dir)
    v = validate_stage(cfg, out_dir, spark=spark, as_of=as_of)
    d = dedup_stage(IngestLayout(out_dir).validated, out_dir, idmap_root=idmap_root,
                    has_timestamps=v["has_timestamps"], spark=spark)
    return write_summary(out_dir, v, d)


def write_summary(out_dir: Path, v: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
    """The ingest summary over both stages; checks that the counts reconcile end to end."""
    summary = {
        **{k: d[k] for k in d if k not in {"rows_in", "rows_out", "quarantined"}},
        "source": v["source"], "format": v["format"], "release": v.get("release"), "has_timestamps": v["has_timestamps"],
        "rows_in": v["rows_in"], "rows_out": d["rows_out"], "duplicates": d["duplicates"],
        "quarantined": v["quarantined"], "quarantined_by_reason": v["quarantined_by_reason"],
        "loader_stats": v.get("loader_stats", {}),
    }
    _check_reconciles("ingest", summary["rows_in"], summary["rows_out"], summary["duplicates"], summary["quarantined"])
    atomic_write_text(IngestLayout(Path(out_dir)).summary, json.dumps(summary, indent=1))
    return summary


def _check_reconciles(stage: str, rows_in: int, rows_out: int, duplicates: int, quarantined: int) -> None:
    if rows_in != rows_out + duplicates + quarantined:
        raise RuntimeError(
            f"{stage}: counts do not reconcile: rows_in {rows_in} != rows_out {rows_out} + "
            f"duplicates {duplicates} + quarantined {quarantined}"
        )
