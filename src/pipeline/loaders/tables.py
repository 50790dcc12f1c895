"""Tables of events: MovieLens ratings, the Million Song taste profile, Yambda, and a generic table.

* ``msd_taste``: ``train_triplets.txt`` (tab, no header: user, song id, play count; no times), from the
  file, its folder or ``train_triplets.txt.zip``; ``unique_tracks.txt`` beside it
  (``track<SEP>song<SEP>artist<SEP>title``) names the songs.
* ``yambda``: ``flat/<50m|500m|5b>/listens.parquet`` (``uid``, ``item_id``, ``timestamp``, ``is_organic``,
  ``played_ratio_pct``, ``track_length_seconds``). Its ``timestamp`` counts seconds from the data set's
  undisclosed start (in 5-second steps over about 300 days): it becomes the instant that many seconds
  after 1970-01-01 UTC, so order and gaps are real and calendar dates are not. A listen is an event with
  ``played_ratio_pct`` >= 50 (Yambda's own "listen+" threshold); a shorter play is a skip, kept out by
  design (quarantined with that reason, not counted against ``max_quarantine_share``). Organic and
  recommended listens both count (``is_organic`` is no filter).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.loaders._spark import (
    FFFD, POSITION, Loaded, count_column, encoding_errors, finish, maybe_file, numbered, one_file, positioned,
    read_parquet, read_text, require, timestamp_column,
)
from pipeline.loaders.release import plain_name

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from pipeline.loaders.release import Release

YAMBDA_LISTEN_PCT = 50  # played_ratio_pct at or above it is a listen (Yambda's benchmark: TRACK_LISTEN_THRESHOLD)
YAMBDA_COLUMNS = ("uid", "item_id", "timestamp", "played_ratio_pct")
FILES = {
    "movielens": ("ratings.csv", "ratings.dat", "u.data", "movies.csv", "movies.dat", "u.item"),
    "msd_taste": ("train_triplets.txt", "unique_tracks.txt"),
    "yambda": ("listens.parquet",),
    "generic": ("*",),
}


def msd_taste(spark: "SparkSession", rel: "Release") -> Loaded:
    """The Echo Nest taste profile: a user's total plays per song; a song is its MSD song id."""
    from pyspark.sql import functions as F

    f = one_file(rel, "train_triplets.txt", "the taste profile's train_triplets.txt (user, song id, play count)")
    df = numbered(read_text(spark, f, sep="\t", names=["user_id", "source_track_id", "plays"],
                            what="taste profile triplets: user<TAB>song id<TAB>play count"))
    names = maybe_file(rel, "unique_tracks.txt")
    if names is not None:
        songs = read_text(spark, names, sep="<SEP>", names=["track", "source_track_id", "artist_name", "track_name"],
                          what="unique_tracks.txt: track id<SEP>song id<SEP>artist<SEP>title")
        df = df.join(F.broadcast(songs.select("source_track_id", "artist_name", "track_name")
                                 .dropDuplicates(["source_track_id"])), "source_track_id", "left")
    count, err = count_column(df["plays"], "play_count")
    stats = {"files": [f.name] + ([names.name] if names is not None else [])}
    return Loaded(finish(df, timestamp=None, play_count=count, errors=[err, *encoding_errors(["user_id"])]), False,
                  "msd_taste", str(rel.path), stats)


def yambda(spark: "SparkSession", rel: "Release") -> Loaded:
    """Yambda's flat listens: relative seconds become instants after 1970-01-01 UTC; a skip is marked as one."""
    from pyspark.sql import functions as F

    found = rel.find("listens.parquet")
    if not found:
        raise FileNotFoundError(f"{rel.path} holds no listens.parquet; expected Yambda's flat/<50m|500m|5b>/listens.parquet")
    if any("sequential" in f.parts for f in found):
        raise ValueError(f"{found[0]} is in Yambda's sequential layout (a row per user); point input_path at the flat "
                         "layout instead (flat/<size>/listens.parquet)")
    sizes = sorted({f.parent.name for f in found})
    if len(found) > 1:
        raise ValueError(f"{rel.path} holds Yambda's listens of several sizes {sizes}; point input_path at one, "
                         f"e.g. {found[0].parent}")
    df = read_parquet(spark, found[0], YAMBDA_COLUMNS)
    df = numbered(positioned(df).select(*YAMBDA_COLUMNS, *POSITION))
    df = df.select("source_row", F.col("uid").cast("string").alias("user_id"),
                   F.col("item_id").cast("string").alias("source_track_id"), "timestamp", "played_ratio_pct")
    skip = F.when(F.col("played_ratio_pct") < YAMBDA_LISTEN_PCT,
                  F.lit(f"skip: played_ratio_pct below {YAMBDA_LISTEN_PCT} (not a listen)"))
    out = finish(df, timestamp=F.timestamp_seconds(F.col("timestamp").cast("long")), play_count=None, errors=[], skip=skip)
    return Loaded(out, True, "yambda", str(rel.path), {"files": [found[0].name], "size": sizes[0]})


_ML_TITLES = {"ratings.csv": "movies.csv", "ratings.dat": "movies.dat", "u.data": "u.item"}


def movielens(spark: "SparkSession", rel: "Release", titles: str | None = None) -> Loaded:
    """MovieLens ratings: each rating is one row with its ``rating`` (``rating_mapping`` makes it confidence).

    Titles come from the movies file the release ships beside its ratings (``movies.csv``,
    ``movies.dat`` or ``u.item``; ``titles`` names another), as ``track_name``.
    """
    from pyspark.sql import functions as F

    names = ["user_id", "source_track_id", "rating", "ts"]
    f = next((found[0] for n in _ML_TITLES if (found := rel.find(n))), None)
    if f is None:
        raise FileNotFoundError(f"{rel.path} holds no ratings.csv, ratings.dat or u.data")
    if f.suffix == ".csv":
        df = read_text(spark, f, sep=",", names=names, header=True, what="ratings.csv: userId,movieId,rating,timestamp")
    elif f.suffix == ".dat":
        df = read_text(spark, f, sep="::", names=names, what="ratings.dat: UserID::MovieID::Rating::Timestamp")
    else:
        df = read_text(spark, f, sep="\t", names=names, what="u.data: user<TAB>item<TAB>rating<TAB>timestamp")
    df = numbered(df)
    movies = Path(titles) if titles else maybe_file(rel, _ML_TITLES.get(f.name, "movies.csv"))
    if movies is not None:
        df = df.join(F.broadcast(_movie_titles(spark, require(movies, "a MovieLens movies file"))),
                     "source_track_id", "left")
    ts, err = timestamp_column(df["ts"], "timestamp")
    rating = F.trim(df["rating"]).try_cast("double")
    bad_rating = F.when(df["rating"].isNotNull() & rating.isNull(),
                        F.concat(F.lit("rating: not a number '"), df["rating"], F.lit("'")))
    return Loaded(finish(df, timestamp=ts, play_count=None, rating=rating,
                          errors=[err, bad_rating, *encoding_errors(["user_id"])]), True, "movielens", str(f),
                  {"files": [f.name]})


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
    if titles.where(F.instr("track_name", FFFD) > 0).limit(1).count():
        titles = read("ISO-8859-1")
    return titles.dropDuplicates(["source_track_id"])


_GENERIC_FIELDS = ("user_id", "track_mbid", "artist_name", "track_name", "source_track_id", "timestamp", "play_count")


def generic(spark: "SparkSession", rel: "Release", columns: Mapping[str, str] | None = None,
            sep: str | None = None) -> Loaded:
    """A table of listens with a header (CSV/TSV, plain or compressed, or Parquet) and a column mapping."""
    from pyspark.sql import functions as F

    path = rel.path
    mapping = dict(columns or {})
    unknown = set(mapping) - set(_GENERIC_FIELDS)
    if unknown:
        raise ValueError(f"columns mapping has unknown key(s) {sorted(unknown)}; allowed: {_GENERIC_FIELDS}")
    mapping = {k: mapping.get(k, k) for k in _GENERIC_FIELDS}
    files = rel.find("*")
    if not files:
        raise ValueError(f"{path} has no rows: the folder holds no data files")
    if all(f.suffix == ".parquet" for f in files):
        df = read_parquet(spark, files, ())
    else:
        ext = Path(plain_name(files[0].name)).suffix
        df = spark.read.option("header", True).option("sep", sep or ("\t" if ext in (".tsv", ".tab") else ",")) \
            .option("encoding", "UTF-8").csv([str(f) for f in files])
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
    df = numbered(positioned(df))
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
            ts, ts_err = timestamp_column(F.col("timestamp"), "timestamp")
            errors.append(ts_err)
    count = None
    if "play_count" in renamed.columns:
        if dict(renamed.dtypes)["play_count"] == "string":
            count, err = count_column(F.col("play_count"), "play_count")
            errors.append(err)
        else:
            count = F.col("play_count")
            errors.append(F.when(F.col("play_count").isNotNull() & (F.col("play_count") != F.floor("play_count")),
                                 F.concat(F.lit("play_count: not an integer '"), F.col("play_count").cast("string"), F.lit("'"))))
    text_cols = [c for c in ("user_id", "artist_name", "track_name") if dict(renamed.dtypes).get(c) == "string"]
    errors += encoding_errors(text_cols)
    return Loaded(finish(renamed, timestamp=ts, play_count=count, errors=errors), has_ts, "generic", str(path),
                  {"files": [f.name for f in files[:5]]})


