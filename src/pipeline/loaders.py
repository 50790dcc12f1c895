"""Loaders: every input format becomes one DataFrame of raw listens with a fixed schema.

Columns, in order: ``source_row`` (0-based row in the source, stable), ``user_id``,
``track_mbid``, ``artist_name``, ``track_name``, ``source_track_id``, ``timestamp`` (UTC),
``play_count`` (1 where the format has none), ``parse_error`` (null, or why the row did not
parse: the column and the raw value). Nothing is dropped here: bad rows carry a
``parse_error`` and the validate stage quarantines them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["Loaded", "load", "COLUMNS"]

COLUMNS = ("source_row", "user_id", "track_mbid", "artist_name", "track_name", "source_track_id",
           "timestamp", "play_count", "parse_error")


@dataclass(frozen=True)
class Loaded:
    df: "DataFrame"
    has_timestamps: bool
    fmt: str
    source: str
    stats: dict[str, Any] = field(default_factory=dict)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected {what}")
    return path


def _with_row_numbers(df: "DataFrame") -> "DataFrame":
    """A dense, deterministic 0-based ``source_row`` (file order, then row order in the file)."""
    from pyspark.sql import functions as F

    indexed = df.rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1]))
    return indexed.toDF([*df.columns, "source_row"]).withColumn("source_row", F.col("source_row").cast("long"))


def _finish(df: "DataFrame", *, timestamp: "Column | None", play_count: "Column | None", errors: list["Column"]) -> "DataFrame":
    from pyspark.sql import functions as F

    def col_or_null(name: str) -> "Column":
        return F.col(name).cast("string") if name in df.columns else F.lit(None).cast("string")

    parse_error = F.coalesce(*errors, F.lit(None).cast("string")) if errors else F.lit(None).cast("string")
    return df.select(
        F.col("source_row").cast("long"),
        col_or_null("user_id").alias("user_id"),
        col_or_null("track_mbid").alias("track_mbid"),
        col_or_null("artist_name").alias("artist_name"),
        col_or_null("track_name").alias("track_name"),
        col_or_null("source_track_id").alias("source_track_id"),
        (timestamp if timestamp is not None else F.lit(None)).cast("timestamp").alias("timestamp"),
        (play_count if play_count is not None else F.lit(1)).cast("long").alias("play_count"),
        parse_error.alias("parse_error"),
    )


def _listenbrainz(spark: "SparkSession", path: Path, tracks: str | None) -> Loaded:
    from pyspark.sql import functions as F

    inter = path / "interactions" if (path / "interactions").exists() else path / "interactions.parquet"
    _require(inter, "a ListenBrainz folder with interactions/ (user_id, recording_msid, timestamp)")
    tracks_path = Path(tracks) if tracks else path / "tracks.parquet"
    _require(tracks_path, "tracks.parquet (recording_msid, artist_name, track_name, recording_mbid)")
    listens = _read_parquet(spark, inter, ("user_id", "recording_msid", "timestamp"))
    meta = _read_parquet(spark, tracks_path, ("recording_msid", "artist_name", "track_name", "recording_mbid"))
    meta = meta.dropDuplicates(["recording_msid"])
    listens = _with_row_numbers(listens.select("user_id", "recording_msid", "timestamp"))
    joined = listens.join(meta.select("recording_msid", "artist_name", "track_name", "recording_mbid"),
                          "recording_msid", "left")
    df = joined.withColumnRenamed("recording_mbid", "track_mbid").withColumn("source_track_id", F.col("recording_msid"))
    ts = F.col("timestamp")
    if dict(listens.dtypes)["timestamp"] not in ("timestamp", "timestamp_ntz"):
        ts = _parse_timestamp(F.col("timestamp"))
    errors = [F.when(F.col("timestamp").isNotNull() & ts.isNull(),
                     F.concat(F.lit("timestamp: unparseable '"), F.col("timestamp").cast("string"), F.lit("'")))]
    return Loaded(_finish(df, timestamp=ts, play_count=None, errors=errors), True, "listenbrainz", str(path))


def _parse_timestamp(c: "Column") -> "Column":
    """ISO-8601 strings or epoch seconds → timestamp (null when neither parses)."""
    from pyspark.sql import functions as F

    s = F.trim(c.cast("string"))
    epoch = F.when(s.rlike(r"^\d{9,11}(\.\d+)?$"), F.timestamp_seconds(s.cast("double").cast("long")))
    return F.coalesce(epoch, F.try_to_timestamp(s))


def _read_parquet(spark: "SparkSession", path: Path, needed: tuple[str, ...]) -> "DataFrame":
    try:
        df = spark.read.parquet(str(path))
        df.schema  # noqa: B018 - forces the footer read
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path} is not a readable Parquet file or folder ({type(exc).__name__}); "
                         "it may be truncated: re-export it") from exc
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; found {df.columns}")
    return df


def load(spark: "SparkSession", fmt: str, path: str | Path, *, tracks: str | None = None,
         aliases: str | None = None, columns: Mapping[str, str] | None = None, sep: str | None = None) -> Loaded:
    """Read ``path`` in format ``fmt`` into the raw-listens schema."""
    p = _require(Path(path), f"input for format {fmt!r}")
    if fmt == "listenbrainz":
        return _listenbrainz(spark, p, tracks)
    raise ValueError(f"format {fmt!r} has no loader yet")
