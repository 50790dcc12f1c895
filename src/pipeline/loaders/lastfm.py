"""The Last.fm family as published: Last.fm 1K and 360K, LFM-1b, LFM-2b, HetRec 2k, Audioscrobbler 2005.

Each takes the release's file, its folder, or its archive (see :mod:`pipeline.loaders.release`);
the listens file is found by its published name, and the other files of the release are read
for what they are (names, aliases, user profiles), never as listens.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.loaders._spark import (
    Loaded, count_column, encoding_errors, finish, maybe_file, numbered, one_file, read_text, require, timestamp_column,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from pipeline.loaders.release import Release

LASTFM1K = "userid-timestamp-artid-artname-traid-traname.tsv"
LASTFM360K = "usersha1-artmbid-artname-plays.tsv"
LFM1B = "LFM-1b_LEs.txt"
LFM2B = "listening-events.tsv"

# every file each format may read (one pass over an archive stages all of them)
FILES = {
    "lastfm1k": (LASTFM1K, "userid-timestamp-artid-artname-traid-traname*.tsv", "userid-profile.tsv"),
    "lastfm360k": (LASTFM360K, "usersha1-profile.tsv"),
    "lfm1b": (LFM1B, "LFM-1b_tracks.txt", "LFM-1b_artists.txt"),
    "lfm2b": (LFM2B, "tracks.tsv"),
    "hetrec": ("user_artists.dat", "artists.dat"),
    "audioscrobbler": ("user_artist_data*.txt", "artist_alias*.txt", "artist_data*.txt"),
}


def _profiles(spark: "SparkSession", rel: "Release", pattern: str, what: str) -> dict[str, Any]:
    """The user profile table, read as what it is: how many users it describes (never listens)."""
    f = maybe_file(rel, pattern)
    if f is None:
        return {}
    n = read_text(spark, f, sep="\t", names=["user"], header=True, what=what).count()
    return {"profile_file": f.name, "profiled_users": n}


def lastfm1k(spark: "SparkSession", rel: "Release") -> Loaded:
    """``userid-timestamp-artid-artname-traid-traname.tsv``: tab, no header, ISO-8601 UTC times."""
    f = one_file(rel, "userid-timestamp-artid-artname-traid-traname*.tsv",
                 f"Last.fm 1K's {LASTFM1K} (userid, timestamp, artist mbid, artist name, track mbid, track name)")
    names = ["user_id", "ts", "artist_mbid", "artist_name", "track_mbid", "track_name"]
    df = numbered(read_text(spark, f, sep="\t", names=names,
                            what="Last.fm 1K TSV: userid, timestamp, artist mbid, artist name, track mbid, track name"))
    ts, ts_err = timestamp_column(df["ts"], "timestamp")
    out = finish(df, timestamp=ts, play_count=None,
                 errors=[ts_err, *encoding_errors(["user_id", "artist_name", "track_name"])])
    stats = {"files": [f.name], **_profiles(spark, rel, "userid-profile.tsv", "userid-profile.tsv: #id, gender, age, ...")}
    return Loaded(out, True, "lastfm1k", str(rel.path), stats)


def lastfm360k(spark: "SparkSession", rel: "Release") -> Loaded:
    """``usersha1-artmbid-artname-plays.tsv``: tab, no header, a user's total plays per artist, no times.

    An item is an artist: its MusicBrainz id when the row has one, else its name (``src:``).
    """
    f = one_file(rel, LASTFM360K, f"Last.fm 360K's {LASTFM360K} (user sha1, artist mbid, artist name, plays)")
    df = numbered(read_text(spark, f, sep="\t", names=["user_id", "track_mbid", "artist_name", "plays"],
                            what="Last.fm 360K TSV: user sha1, artist mbid, artist name, plays"))
    df = df.withColumn("source_track_id", df["artist_name"])
    count, err = count_column(df["plays"], "plays")
    out = finish(df, timestamp=None, play_count=count, errors=[err, *encoding_errors(["user_id", "artist_name"])])
    stats = {"files": [f.name], **_profiles(spark, rel, "usersha1-profile.tsv", "usersha1-profile.tsv")}
    return Loaded(out, False, "lastfm360k", str(rel.path), stats)


def _named(spark: "SparkSession", df: "DataFrame", tracks: Path | None, artists: Path | None) -> "DataFrame":
    """LFM-1b's events with ``track_name`` from ``LFM-1b_tracks.txt`` and ``artist_name`` from ``LFM-1b_artists.txt``."""
    if tracks is not None:
        t = read_text(spark, tracks, sep="\t", names=["source_track_id", "track_name", "track_artist"],
                      what=f"{tracks.name}: track-id, track-name, artist-id")
        df = df.join(t.select("source_track_id", "track_name").dropDuplicates(["source_track_id"]), "source_track_id", "left")
    if artists is not None:
        a = read_text(spark, artists, sep="\t", names=["artist_id", "artist_name"],
                      what=f"{artists.name}: artist-id, artist-name")
        df = df.join(a.dropDuplicates(["artist_id"]), "artist_id", "left")
    return df


def lfm1b(spark: "SparkSession", rel: "Release") -> Loaded:
    """``LFM-1b_LEs.txt``: tab, no header: user-id, artist-id, album-id, track-id, epoch seconds.

    A track is its LFM-1b track-id; ``LFM-1b_tracks.txt`` and ``LFM-1b_artists.txt`` (when present)
    give names (a name pair then keys it, as everywhere: docs "Canonical track").
    """
    from pyspark.sql import functions as F

    f = one_file(rel, LFM1B, f"LFM-1b's {LFM1B} (user-id, artist-id, album-id, track-id, timestamp)")
    df = numbered(read_text(spark, f, sep="\t", names=["user_id", "artist_id", "album_id", "source_track_id", "ts"],
                            what="LFM-1b listening events: user-id, artist-id, album-id, track-id, timestamp"))
    df = _named(spark, df, maybe_file(rel, "LFM-1b_tracks.txt"), maybe_file(rel, "LFM-1b_artists.txt"))
    seconds = F.trim(df["ts"]).try_cast("long")
    err = F.when(df["ts"].isNotNull() & seconds.isNull(), F.concat(F.lit("timestamp: not epoch seconds '"), df["ts"], F.lit("'")))
    out = finish(df, timestamp=F.timestamp_seconds(seconds), play_count=None, errors=[err])
    return Loaded(out, True, "lfm1b", str(rel.path), {"files": [f.name]})


def lfm2b(spark: "SparkSession", rel: "Release") -> Loaded:
    """``listening-events.tsv.bz2``: tab, header ``user_id track_id album_id timestamp``, times as text (UTC).

    Read compressed where it lies; ``tracks.tsv.bz2`` names the tracks, its columns found by its header
    (``track_id``, ``track_name``, ``artist_name``), whatever their order.
    """
    from pyspark.sql import functions as F

    f = one_file(rel, LFM2B, f"LFM-2b's {LFM2B}.bz2 (user_id, track_id, album_id, timestamp)")
    df = numbered(read_text(spark, f, sep="\t", names=["user_id", "source_track_id", "album_id", "ts"], header=True,
                            what="LFM-2b listening events: user_id, track_id, album_id, timestamp"))
    tracks = maybe_file(rel, "tracks.tsv")
    if tracks is not None:
        t = spark.read.option("sep", "\t").option("header", True).option("quote", "\u0000").csv(str(tracks))
        cols = {c.strip().lower(): c for c in t.columns}
        if "track_id" in cols and "track_name" in cols:
            artist = cols.get("artist_name") or cols.get("artist")
            t = t.select(F.trim(cols["track_id"]).alias("source_track_id"), F.trim(cols["track_name"]).alias("track_name"),
                         (F.trim(artist) if artist else F.lit(None).cast("string")).alias("artist_name"))
            df = df.join(t.dropDuplicates(["source_track_id"]), "source_track_id", "left")
    ts, err = timestamp_column(df["ts"], "timestamp")
    out = finish(df, timestamp=ts, play_count=None, errors=[err, *encoding_errors(["user_id"])])
    return Loaded(out, True, "lfm2b", str(rel.path), {"files": [f.name] + ([tracks.name] if tracks else [])})


def hetrec(spark: "SparkSession", rel: "Release") -> Loaded:
    from pyspark.sql import functions as F

    plays_file = one_file(rel, "user_artists.dat", "HetRec's user_artists.dat (userID, artistID, weight)")
    df = numbered(read_text(spark, plays_file, sep="\t", names=["user_id", "source_track_id", "weight"], header=True,
                            what="tab-separated userID, artistID, weight"))
    artists_file = maybe_file(rel, "artists.dat")
    if artists_file is not None:
        names = read_text(spark, artists_file, sep="\t", names=["source_track_id", "artist_name", "url", "picture"],
                          header=True, what="artists.dat: id, name, url, pictureURL").select("source_track_id", "artist_name")
        df = df.join(F.broadcast(names.dropDuplicates(["source_track_id"])), "source_track_id", "left")
    count, err = count_column(df["weight"], "weight")
    return Loaded(finish(df, timestamp=None, play_count=count, errors=[err]), False, "hetrec", str(plays_file))


def audioscrobbler(spark: "SparkSession", rel: "Release", aliases: str | None = None) -> Loaded:
    from pyspark.sql import functions as F

    plays_file = one_file(rel, "user_artist_data*.txt", "user_artist_data*.txt (userid artistid playcount)")
    df = numbered(read_text(spark, plays_file, sep=" ", names=["user_id", "artist_id", "plays"],
                            what="space-separated userid, artistid, playcount"))
    alias_file = Path(aliases) if aliases else maybe_file(rel, "artist_alias*.txt")
    stats: dict[str, Any] = {"aliases_applied": 0}
    if alias_file is not None:
        alias = read_text(spark, require(alias_file, "the alias table (badid<TAB>goodid)"), sep="\t",
                          names=["artist_id", "good_id"], what="tab-separated badid, goodid")
        alias = alias.select("artist_id", "good_id").where(F.col("good_id").isNotNull()).dropDuplicates(["artist_id"])
        df = df.join(F.broadcast(alias), "artist_id", "left")
        stats["aliases_applied"] = df.where(F.col("good_id").isNotNull()).count()
        stats["alias_table"] = str(alias_file)
        df = df.withColumn("artist_id", F.coalesce("good_id", "artist_id")).drop("good_id")
    names_file = maybe_file(rel, "artist_data*.txt")
    if names_file is not None:
        names = read_text(spark, names_file, sep="\t", names=["artist_id", "artist_name"], what="artistid<TAB>name")
        df = df.join(F.broadcast(names.select("artist_id", "artist_name").dropDuplicates(["artist_id"])), "artist_id", "left")
    df = df.withColumnRenamed("artist_id", "source_track_id")
    count, err = count_column(df["plays"], "playcount")
    return Loaded(finish(df, timestamp=None, play_count=count, errors=[err]), False, "audioscrobbler",
                  str(plays_file), stats)
