"""Loaders: every input format becomes one DataFrame of raw listens with a fixed schema.

Columns, in order: ``source_row`` (0-based row in the source, stable), ``user_id``,
``track_mbid``, ``artist_name``, ``track_name``, ``source_track_id``, ``timestamp`` (UTC),
``play_count`` (1 where the format has none), ``rating`` (explicit ratings, MovieLens; null
elsewhere), ``parse_error`` (null, or why the row did not parse: the column and the raw value),
``not_a_listen`` (null, or why a well-formed event is no listen by its format's definition: a
Yambda skip). Where a release ships names, they fill ``track_name``/``artist_name``. Nothing is
dropped here: bad rows carry a ``parse_error`` and the validate stage quarantines them.

Each format reads its release as published: the file, the folder it extracts to, or the archive
itself (:mod:`pipeline.loaders.release`); ``auto`` recognises the format from the layout
(:mod:`pipeline.loaders.detect`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.loaders import lastfm, listenbrainz, tables
from pipeline.loaders._spark import COLUMNS, Loaded, parse_timestamp, read_parquet, require
from pipeline.loaders.detect import Detected, UnknownLayout, detect
from pipeline.loaders.release import Release, damaged

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["Loaded", "load", "COLUMNS", "FORMATS", "Format", "detect", "Detected", "UnknownLayout", "resolve_format",
           "parse_timestamp", "read_parquet", "require"]


@dataclass(frozen=True)
class Options:
    tracks: str | None = None
    aliases: str | None = None
    columns: Mapping[str, str] | None = None
    sep: str | None = None


@dataclass(frozen=True)
class Format:
    """One published format: how it is read, the files it reads, and what it is."""

    read: Callable[["SparkSession", Release, Options], Loaded]
    files: tuple[str, ...]
    what: str


FORMATS: dict[str, Format] = {
    "listenbrainz_dump": Format(lambda s, r, o: listenbrainz.json_dump(s, r), listenbrainz.FILES["listenbrainz_dump"],
                                "ListenBrainz listens dump (JSON lines; .tar.zst/.tar.xz or its folder)"),
    "listenbrainz_spark": Format(lambda s, r, o: listenbrainz.spark_dump(s, r), listenbrainz.FILES["listenbrainz_spark"],
                                 "ListenBrainz Spark dump (Parquet; .tar or its folder)"),
    "listenbrainz": Format(lambda s, r, o: listenbrainz.seed_layout(s, r, o.tracks), ("*",),
                           "the seed's interactions/ + tracks.parquet"),
    "lastfm1k": Format(lambda s, r, o: lastfm.lastfm1k(s, r), lastfm.FILES["lastfm1k"], "Last.fm 1K"),
    "lastfm360k": Format(lambda s, r, o: lastfm.lastfm360k(s, r), lastfm.FILES["lastfm360k"], "Last.fm 360K"),
    "msd_taste": Format(lambda s, r, o: tables.msd_taste(s, r), tables.FILES["msd_taste"],
                        "Million Song Dataset taste profile"),
    "lfm1b": Format(lambda s, r, o: lastfm.lfm1b(s, r), lastfm.FILES["lfm1b"], "LFM-1b"),
    "lfm2b": Format(lambda s, r, o: lastfm.lfm2b(s, r), lastfm.FILES["lfm2b"], "LFM-2b"),
    "yambda": Format(lambda s, r, o: tables.yambda(s, r), tables.FILES["yambda"], "Yambda (flat listens)"),
    "hetrec": Format(lambda s, r, o: lastfm.hetrec(s, r), lastfm.FILES["hetrec"], "HetRec 2011 Last.fm 2k"),
    "audioscrobbler": Format(lambda s, r, o: lastfm.audioscrobbler(s, r, o.aliases), lastfm.FILES["audioscrobbler"],
                             "Audioscrobbler 2005"),
    "movielens": Format(lambda s, r, o: tables.movielens(s, r, o.tracks), tables.FILES["movielens"], "MovieLens ratings"),
    "generic": Format(lambda s, r, o: tables.generic(s, r, o.columns, o.sep), tables.FILES["generic"],
                      "a table with a header and a column mapping"),
}


def resolve_format(fmt: str, path: str | Path, *, columns: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(format, why): ``fmt`` itself, or for ``auto`` what :func:`detect` recognises at ``path``."""
    if fmt != "auto":
        return fmt, f"input_format={fmt}"
    if columns:
        return "generic", "a column mapping was given: generic"
    d = detect(path)
    return d.format, d.why


def load(spark: "SparkSession", fmt: str, path: str | Path, *, tracks: str | None = None,
         aliases: str | None = None, columns: Mapping[str, str] | None = None, sep: str | None = None,
         scratch: Path | None = None) -> Loaded:
    """Read ``path`` in format ``fmt`` (or ``auto``) into the raw-listens schema (see the module docstring).

    ``scratch`` receives what an archive's members must be staged as (removed by the caller).
    """
    p = require(Path(path), f"input for format {fmt!r}")
    fmt, why = resolve_format(fmt, p, columns=columns)
    if fmt not in FORMATS:
        raise ValueError(f"input_format {fmt!r} is not supported; choose one of auto, {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    release = Release(p, scratch, spec.files)
    try:
        loaded = spec.read(spark, release, Options(tracks, aliases, columns, sep))
    except damaged() as exc:
        if not (release.is_archive or p.suffix.lower() in (".gz", ".bz2", ".zst", ".xz")) or \
                isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0]}" if str(exc) else type(exc).__name__
        raise ValueError(f"{p} could not be decompressed ({detail}); the download is truncated or damaged: download it "
                         "again (and check its .sha256)") from None
    stats: dict[str, Any] = {"recognised": why, "release": release.name, **loaded.stats}
    return replace(loaded, stats=stats)
