"""Loaders: every input format becomes one DataFrame of raw listens with a fixed schema.

Columns, in order: ``source_row`` (0-based row in the source, stable), ``user_id``,
``track_mbid``, ``artist_name``, ``track_name``, ``source_track_id``, ``timestamp`` (UTC),
``play_count`` (1 where the format has none), ``rating`` (explicit ratings, MovieLens; null
elsewhere), ``parse_error`` (null, or why the row did not parse: the column and the raw value).
Where a dataset ships names (MovieLens ``movies.csv``/``movies.dat``/``u.item``, HetRec's
``artists.dat``, Audioscrobbler's ``artist_data``), they fill ``track_name``/``artist_name``. Nothing is dropped here: bad rows carry a
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
           "timestamp", "play_count", "rating", "parse_error")


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


_POSITION = ("_file", "_block", "_mid")


def _positioned(df: "DataFrame") -> "DataFrame":
    """``df`` straight from a file read, with where each row sits: file, split start, scan order.

    Must be applied to the read itself: the hidden ``_metadata`` column is gone after a select.
    """
    from pyspark.sql import functions as F

    return df.select("*", F.col("_metadata.file_path").alias("_file"), F.col("_metadata.file_block_start").alias("_block"),
                     F.monotonically_increasing_id().alias("_mid"))


def _with_row_numbers(df: "DataFrame") -> "DataFrame":
    """A dense 0-based ``source_row``: files in path order, then row order in each file.

    ``df`` comes from :func:`_positioned`. A file split is read whole by one task in file order,
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
            .drop(*_POSITION, "_shift"))


def _finish(df: "DataFrame", *, timestamp: "Column | None", play_count: "Column | None", errors: list["Column"],
            rating: "Column | None" = None) -> "DataFrame":
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
    listens = _with_row_numbers(_positioned(listens).select("user_id", "recording_msid", "timestamp", *_POSITION))
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


_FFFD = "\ufffd"


def _text(spark: "SparkSession", path: Path, *, sep: str, names: list[str], header: bool = False,
          what: str) -> "DataFrame":
    """A delimited text file as string columns ``names``; refuses empty files and wrong separators."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField(n, StringType()) for n in names])
    reader = spark.read.option("sep", sep).option("header", header).option("quote", "\u0000") \
        .option("mode", "PERMISSIVE").option("encoding", "UTF-8")
    if header and sep == "::":
        raise ValueError("'::' files have no header")
    df = _positioned(reader.schema(schema).csv(str(path)))
    df = df.select(*[F.trim(F.col(n)).alias(n) if n != names[0] else F.col(n) for n in names], *_POSITION)
    head = df.limit(200).collect()
    if not head:
        raise ValueError(f"{path} has no rows: an empty file cannot be ingested ({what})")
    if len(names) > 1 and all(all(r[n] is None for n in names[1:]) for r in head):
        raise ValueError(f"{path}: no {sep!r} separator found in the first rows; expected {what}. "
                         "Check the file's separator (or read it with the 'generic' format and sep=...)")
    return df


def _encoding_error(columns: list[str]) -> list["Column"]:
    """Rows whose text held bytes that are not UTF-8 (Spark replaced them with U+FFFD)."""
    from pyspark.sql import functions as F

    return [F.when(F.instr(F.col(c), _FFFD) > 0, F.lit(f"{c}: bytes that are not UTF-8 (re-encode the file as UTF-8)"))
            for c in columns]


def _count(raw: "Column", name: str) -> tuple["Column", "Column"]:
    """(play count as long, parse error) from a text column."""
    from pyspark.sql import functions as F

    value = F.trim(raw).try_cast("long")
    error = F.when(raw.isNotNull() & value.isNull(),
                   F.concat(F.lit(f"{name}: not an integer '"), raw, F.lit("'")))
    return value, error


def _timestamp(raw: "Column", name: str) -> tuple["Column", "Column"]:
    from pyspark.sql import functions as F

    value = _parse_timestamp(raw)
    error = F.when(raw.isNotNull() & value.isNull(), F.concat(F.lit(f"{name}: unparseable '"), raw.cast("string"), F.lit("'")))
    return value, error


def _lastfm1k(spark: "SparkSession", path: Path) -> Loaded:
    names = ["user_id", "ts", "artist_mbid", "artist_name", "track_mbid", "track_name"]
    df = _with_row_numbers(_text(spark, path, sep="\t", names=names,
                                 what="Last.fm 1K TSV: userid, timestamp, artist mbid, artist name, track mbid, track name"))
    ts, ts_err = _timestamp(df["ts"], "timestamp")
    out = _finish(df, timestamp=ts, play_count=None,
                  errors=[ts_err, *_encoding_error(["user_id", "artist_name", "track_name"])])
    return Loaded(out, True, "lastfm1k", str(path))


def _find(path: Path, pattern: str, what: str) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob(pattern))
    if not found:
        raise FileNotFoundError(f"{path} holds no {pattern}; expected {what}")
    return found[0]


def _hetrec(spark: "SparkSession", path: Path) -> Loaded:
    from pyspark.sql import functions as F

    plays_file = _find(path, "user_artists.dat", "HetRec's user_artists.dat (userID, artistID, weight)")
    df = _with_row_numbers(_text(spark, plays_file, sep="\t", names=["user_id", "source_track_id", "weight"], header=True,
                                 what="tab-separated userID, artistID, weight"))
    artists_file = plays_file.parent / "artists.dat"
    if artists_file.exists():
        names = _text(spark, artists_file, sep="\t", names=["source_track_id", "artist_name", "url", "picture"],
                      header=True, what="artists.dat: id, name, url, pictureURL").select("source_track_id", "artist_name")
        df = df.join(F.broadcast(names.dropDuplicates(["source_track_id"])), "source_track_id", "left")
    count, err = _count(df["weight"], "weight")
    return Loaded(_finish(df, timestamp=None, play_count=count, errors=[err]), False, "hetrec", str(plays_file))


def _audioscrobbler(spark: "SparkSession", path: Path, aliases: str | None) -> Loaded:
    from pyspark.sql import functions as F

    plays_file = _find(path, "user_artist_data*.txt", "user_artist_data*.txt (userid artistid playcount)")
    df = _with_row_numbers(_text(spark, plays_file, sep=" ", names=["user_id", "artist_id", "plays"],
                                 what="space-separated userid, artistid, playcount"))
    alias_file = Path(aliases) if aliases else next(iter(sorted(plays_file.parent.glob("artist_alias*.txt"))), None)
    stats: dict[str, Any] = {"aliases_applied": 0}
    if alias_file is not None:
        alias = _text(spark, _require(alias_file, "the alias table (badid<TAB>goodid)"), sep="\t",
                      names=["artist_id", "good_id"], what="tab-separated badid, goodid")
        alias = alias.select("artist_id", "good_id").where(F.col("good_id").isNotNull()).dropDuplicates(["artist_id"])
        df = df.join(F.broadcast(alias), "artist_id", "left")
        stats["aliases_applied"] = df.where(F.col("good_id").isNotNull()).count()
        stats["alias_table"] = str(alias_file)
        df = df.withColumn("artist_id", F.coalesce("good_id", "artist_id")).drop("good_id")
    names_file = next(iter(sorted(plays_file.parent.glob("artist_data*.txt"))), None)
    if names_file is not None:
        names = _text(spark, names_file, sep="\t", names=["artist_id", "artist_name"], what="artistid<TAB>name")
        df = df.join(F.broadcast(names.select("artist_id", "artist_name").dropDuplicates(["artist_id"])), "artist_id", "left")
    df = df.withColumnRenamed("artist_id", "source_track_id")
    count, err = _count(df["plays"], "playcount")
    return Loaded(_finish(df, timestamp=None, play_count=count, errors=[err]), False, "audioscrobbler",
                  str(plays_file), stats)


_ML_TITLES = {"ratings.csv": "movies.csv", "ratings.dat": "movies.dat", "u.data": "u.item"}


def _movielens(spark: "SparkSession", path: Path, titles: str | None) -> Loaded:
    """MovieLens ratings: each rating is one row with its ``rating`` (``rating_mapping`` makes it confidence).

    Titles come from the movies file the release ships beside its ratings (``movies.csv``,
    ``movies.dat`` or ``u.item``; ``titles`` names another), as ``track_name``.
    """
    from pyspark.sql import functions as F

    names = ["user_id", "source_track_id", "rating", "ts"]
    f = path
    if path.is_dir():
        f = next((path / n for n in _ML_TITLES if (path / n).exists()), None)
        if f is None:
            raise FileNotFoundError(f"{path} holds no ratings.csv, ratings.dat or u.data")
    if f.suffix == ".csv":
        df = _text(spark, f, sep=",", names=names, header=True, what="ratings.csv: userId,movieId,rating,timestamp")
    elif f.suffix == ".dat":
        df = _text(spark, f, sep="::", names=names, what="ratings.dat: UserID::MovieID::Rating::Timestamp")
    else:
        df = _text(spark, f, sep="\t", names=names, what="u.data: user<TAB>item<TAB>rating<TAB>timestamp")
    df = _with_row_numbers(df)
    movies = Path(titles) if titles else f.parent / _ML_TITLES.get(f.name, "movies.csv")
    if titles or movies.exists():
        df = df.join(F.broadcast(_movie_titles(spark, _require(movies, "a MovieLens movies file"))),
                     "source_track_id", "left")
    ts, err = _timestamp(df["ts"], "timestamp")
    rating = F.trim(df["rating"]).try_cast("double")
    bad_rating = F.when(df["rating"].isNotNull() & rating.isNull(),
                        F.concat(F.lit("rating: not a number '"), df["rating"], F.lit("'")))
    return Loaded(_finish(df, timestamp=ts, play_count=None, rating=rating,
                          errors=[err, bad_rating, *_encoding_error(["user_id"])]), True, "movielens", str(f))


def _movie_titles(spark: "SparkSession", f: Path) -> "DataFrame":
    """(source_track_id, track_name) from movies.csv (RFC 4180 quotes, UTF-8), movies.dat (``::``) or
    u.item (``|``); the older releases are Latin-1, read as such when UTF-8 does not decode."""
    from pyspark.sql import functions as F

    def read(encoding: str) -> "DataFrame":
        r = spark.read.option("encoding", encoding)
        if f.suffix == ".csv":
            r = r.option("header", True).option("quote", '"').option("escape", '"')
        else:
            r = r.option("sep", "::" if f.suffix == ".dat" else "|").option("quote", "\u0000")
        df = r.csv(str(f))
        if len(df.columns) < 2:
            raise ValueError(f"{f}: one column only; expected movieId, title, ... separated by "
                             f"{',' if f.suffix == '.csv' else '::' if f.suffix == '.dat' else '|'}")
        return df.select(F.trim(df.columns[0]).alias("source_track_id"), F.trim(df.columns[1]).alias("track_name"))

    titles = read("UTF-8")
    if titles.where(F.instr("track_name", _FFFD) > 0).limit(1).count():
        titles = read("ISO-8859-1")
    return titles.dropDuplicates(["source_track_id"])


_GENERIC_FIELDS = ("user_id", "track_mbid", "artist_name", "track_name", "source_track_id", "timestamp", "play_count")


def _generic(spark: "SparkSession", path: Path, columns: Mapping[str, str] | None, sep: str | None) -> Loaded:
    from pyspark.sql import functions as F

    mapping = dict(columns or {})
    unknown = set(mapping) - set(_GENERIC_FIELDS)
    if unknown:
        raise ValueError(f"columns mapping has unknown key(s) {sorted(unknown)}; allowed: {_GENERIC_FIELDS}")
    mapping = {k: mapping.get(k, k) for k in _GENERIC_FIELDS}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    if not files:
        raise ValueError(f"{path} has no rows: the folder holds no data files")
    if all(f.suffix == ".parquet" for f in files):
        df = _read_parquet(spark, path, ())
    else:
        df = spark.read.option("header", True).option("sep", sep or ("\t" if files[0].suffix in (".tsv", ".tab") else ",")) \
            .option("encoding", "UTF-8").csv(str(path))
        if not df.limit(1).collect():
            raise ValueError(f"{path} has no rows: an empty file cannot be ingested")
        if len(df.columns) == 1 and len(_GENERIC_FIELDS) > 1:
            raise ValueError(f"{path}: one column '{df.columns[0]}' only; the separator {sep or ','!r} is probably wrong "
                             "(pass sep=, e.g. '\\t' or ';')")
    present = set(df.columns)
    if mapping["user_id"] not in present:
        raise ValueError(f"{path} lacks the user column {mapping['user_id']!r}; found {sorted(present)}. "
                         "Map it with columns={'user_id': '<your column>'}")
    has_track = mapping["track_mbid"] in present or mapping["source_track_id"] in present or \
        (mapping["artist_name"] in present and mapping["track_name"] in present)
    if not has_track:
        raise ValueError(f"{path} has no track column: need one of track_mbid, source_track_id or artist_name + "
                         f"track_name (found {sorted(present)}); map yours with columns={{...}}")
    df = _with_row_numbers(_positioned(df))
    renamed = df.select("source_row", *[F.col(f"`{src}`").alias(dst) for dst, src in mapping.items() if src in present])
    errors = []
    ts = None
    has_ts = "timestamp" in renamed.columns
    if has_ts:
        kind = dict(renamed.dtypes)["timestamp"]
        if kind.startswith("timestamp"):
            ts = F.col("timestamp")
        elif kind in ("int", "bigint", "double", "float"):
            ts = F.timestamp_seconds(F.col("timestamp").cast("long"))
        else:
            ts, ts_err = _timestamp(F.col("timestamp"), "timestamp")
            errors.append(ts_err)
    count = None
    if "play_count" in renamed.columns:
        if dict(renamed.dtypes)["play_count"] == "string":
            count, err = _count(F.col("play_count"), "play_count")
            errors.append(err)
        else:
            count = F.col("play_count")
            errors.append(F.when(F.col("play_count").isNotNull() & (F.col("play_count") != F.floor("play_count")),
                                 F.concat(F.lit("play_count: not an integer '"), F.col("play_count").cast("string"), F.lit("'"))))
    text_cols = [c for c in ("user_id", "artist_name", "track_name") if dict(renamed.dtypes).get(c) == "string"]
    errors += _encoding_error(text_cols)
    return Loaded(_finish(renamed, timestamp=ts, play_count=count, errors=errors), has_ts, "generic", str(path))


def load(spark: "SparkSession", fmt: str, path: str | Path, *, tracks: str | None = None,
         aliases: str | None = None, columns: Mapping[str, str] | None = None, sep: str | None = None) -> Loaded:
    """Read ``path`` in format ``fmt`` into the raw-listens schema (see the module docstring)."""
    p = _require(Path(path), f"input for format {fmt!r}")
    if fmt == "listenbrainz":
        return _listenbrainz(spark, p, tracks)
    if fmt == "lastfm1k":
        return _lastfm1k(spark, p)
    if fmt == "hetrec":
        return _hetrec(spark, p)
    if fmt == "audioscrobbler":
        return _audioscrobbler(spark, p, aliases)
    if fmt == "movielens":
        return _movielens(spark, p, tracks)
    if fmt == "generic":
        return _generic(spark, p, columns, sep)
    raise ValueError(f"input_format {fmt!r} is not supported; choose one of listenbrainz, generic, lastfm1k, "
                     "hetrec, audioscrobbler, movielens")
