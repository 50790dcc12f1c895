"""What every loader shares: the raw-listens schema, row numbers, delimited text, parse errors.

Everything here builds Spark columns lazily; nothing reads a whole file on the driver.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.loaders.release import plain_name

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from pipeline.loaders.release import Release

COLUMNS = ("source_row", "user_id", "track_mbid", "artist_name", "track_name", "source_track_id",
           "timestamp", "play_count", "rating", "parse_error", "not_a_listen")


@dataclass(frozen=True)
class Loaded:
    """One format's rows in the raw-listens schema, with what the loader recognised of the release."""

    df: "DataFrame"
    has_timestamps: bool
    fmt: str
    source: str
    stats: dict[str, Any] = field(default_factory=dict)


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected {what}")
    return path


POSITION = ("_file", "_block", "_mid")


def positioned(df: "DataFrame") -> "DataFrame":
    """``df`` straight from a file read, with where each row sits: file, split start, scan order.

    Must be applied to the read itself: the hidden ``_metadata`` column is gone after a select.
    """
    from pyspark.sql import functions as F

    return df.select("*", F.col("_metadata.file_path").alias("_file"), F.col("_metadata.file_block_start").alias("_block"),
                     F.monotonically_increasing_id().alias("_mid"))


def numbered(df: "DataFrame") -> "DataFrame":
    """A dense 0-based ``source_row``: files in path order, then row order in each file.

    ``df`` comes from :func:`positioned`. A file split is read whole by one task in file order,
    so a row's place in its split is its scan id minus the split's first scan id; one small
    aggregation (a row per split) gives each split's offset. All of it runs in the JVM, and the
    numbers do not depend on how Spark packs splits into partitions.
    """
    from pyspark.sql import functions as F

    spark = df.sparkSession
    splits = (df.groupBy("_file", "_block").agg(F.count(F.lit(1)).alias("n"), F.min("_mid").alias("first"))
              .orderBy("_file", "_block").collect())
    offsets, total = [], 0
    for s in splits:
        offsets.append((s["_file"], s["_block"], total - s["first"]))
        total += s["n"]
    shift = spark.createDataFrame(offsets, "_file string, _block long, _shift long")
    return (df.join(F.broadcast(shift), ["_file", "_block"])
            .withColumn("source_row", F.col("_mid") + F.col("_shift"))
            .drop(*POSITION, "_shift"))


def finish(df: "DataFrame", *, timestamp: "Column | None", play_count: "Column | None", errors: list["Column"],
           rating: "Column | None" = None, skip: "Column | None" = None) -> "DataFrame":
    """``df`` in the raw-listens schema: ``errors`` coalesce into ``parse_error`` (the first that holds);
    ``skip`` says why a well-formed event is no listen by the format's definition (``not_a_listen``)."""
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
        (rating if rating is not None else F.lit(None)).cast("double").alias("rating"),
        parse_error.alias("parse_error"),
        (skip if skip is not None else F.lit(None)).cast("string").alias("not_a_listen"),
    )


def parse_timestamp(c: "Column") -> "Column":
    """ISO-8601 strings or epoch seconds → timestamp (null when neither parses)."""
    from pyspark.sql import functions as F

    s = F.trim(c.cast("string"))
    epoch = F.when(s.rlike(r"^\d{9,11}(\.\d+)?$"), F.timestamp_seconds(s.cast("double").cast("long")))
    return F.coalesce(epoch, F.try_to_timestamp(s))


def read_parquet(spark: "SparkSession", path: "Path | list[Path]", needed: tuple[str, ...]) -> "DataFrame":
    """Parquet at ``path`` (a file, a folder, or a list of files), refusing what Spark cannot read with the fix."""
    paths = [str(p) for p in path] if isinstance(path, list) else [str(path)]
    path = paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"
    try:
        df = spark.read.parquet(*paths)
        df.schema  # noqa: B018 - forces the footer read
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        if "TIMESTAMP(NANOS" in str(exc):
            raise ValueError(f"{path} stores timestamps in nanoseconds, which Spark cannot read; re-export it with "
                             "microseconds (pandas: df.to_parquet(..., coerce_timestamps='us'); pyarrow: "
                             "pq.write_table(..., coerce_timestamps='us'))") from exc
        raise ValueError(f"{path} is not a readable Parquet file or folder ({type(exc).__name__}); "
                         "it may be truncated: re-export it") from exc
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; found {df.columns}")
    return df


FFFD = "\ufffd"


def read_text(spark: "SparkSession", path: "Path | list[Path]", *, sep: str, names: list[str], header: bool = False,
              what: str) -> "DataFrame":
    """Delimited text files (plain, .gz or .bz2) as string columns ``names``; refuses empty files and wrong
    separators. With several files, rows are numbered in path order."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField(n, StringType()) for n in names])
    reader = spark.read.option("sep", sep).option("header", header).option("quote", "\u0000") \
        .option("mode", "PERMISSIVE").option("encoding", "UTF-8")
    if header and sep == "::":
        raise ValueError("'::' files have no header")
    paths = [str(p) for p in path] if isinstance(path, list) else [str(path)]
    path = paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"
    df = positioned(reader.schema(schema).csv(paths))
    df = df.select(*[F.trim(F.col(n)).alias(n) if n != names[0] else F.col(n) for n in names], *POSITION)
    head = df.limit(200).collect()
    if not head:
        raise ValueError(f"{path} has no rows: an empty file cannot be ingested ({what})")
    if len(names) > 1 and all(all(r[n] is None for n in names[1:]) for r in head):
        raise ValueError(f"{path}: no {sep!r} separator found in the first rows; expected {what}. "
                         "Check the file's separator (or read it with the 'generic' format and sep=...)")
    return df


def encoding_errors(columns: list[str]) -> list["Column"]:
    """Rows whose text held bytes that are not UTF-8 (Spark replaced them with U+FFFD)."""
    from pyspark.sql import functions as F

    return [F.when(F.instr(F.col(c), FFFD) > 0, F.lit(f"{c}: bytes that are not UTF-8 (re-encode the file as UTF-8)"))
            for c in columns]


def count_column(raw: "Column", name: str) -> tuple["Column", "Column"]:
    """(play count as long, parse error) from a text column."""
    from pyspark.sql import functions as F

    value = F.trim(raw).try_cast("long")
    error = F.when(raw.isNotNull() & value.isNull(),
                   F.concat(F.lit(f"{name}: not an integer '"), raw, F.lit("'")))
    return value, error


def timestamp_column(raw: "Column", name: str) -> tuple["Column", "Column"]:
    from pyspark.sql import functions as F

    value = parse_timestamp(raw)
    error = F.when(raw.isNotNull() & value.isNull(), F.concat(F.lit(f"{name}: unparseable '"), raw.cast("string"), F.lit("'")))
    return value, error


def one_file(rel: "Release", pattern: str, what: str) -> Path:
    """The first file of ``rel`` named ``pattern`` (the file itself when ``rel`` is one plain file)."""
    found = rel.find(pattern)
    if not found:
        raise FileNotFoundError(f"{rel.path} holds no {pattern}; expected {what}")
    return found[0]


def maybe_file(rel: "Release", pattern: str) -> Path | None:
    """The first file of ``rel`` named ``pattern`` beside the data (never the data file itself), or None."""
    if rel.path.is_file() and not rel.is_archive:  # its siblings, not the whole folder tree
        return next((f for f in sorted(rel.path.parent.iterdir()) if f != rel.path and f.is_file()
                     and fnmatch.fnmatchcase(plain_name(f.name), pattern)), None)
    return next(iter(rel.find(pattern)), None)
