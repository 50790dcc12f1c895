"""``input_format: auto``: which format a path holds, from its layout (file names), else its first line.

The names are the ones each release is published with (:mod:`pipeline.loaders`' format table). An
archive is not unpacked to decide: its name tells (the ListenBrainz dumps), or its members are listed
up to the first that does (a tar is read only that far).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.loaders.listenbrainz import DUMP_NAME
from pipeline.loaders.release import Release, archive_suffix, plain_name

__all__ = ["Detected", "UnknownLayout", "detect"]

# (format, a file name as published), in the order they are tried: the first name found decides
NAMED = (
    ("listenbrainz_dump", "*.listens"),
    ("lastfm1k", "userid-timestamp-artid-artname-traid-traname*.tsv"),
    ("lastfm360k", "usersha1-artmbid-artname-plays.tsv"),
    ("msd_taste", "train_triplets.txt"),
    ("lfm1b", "LFM-1b_LEs.txt"),
    ("lfm2b", "listening-events.tsv"),
    ("hetrec", "user_artists.dat"),
    ("audioscrobbler", "user_artist_data*.txt"),
    ("movielens", "ratings.csv"), ("movielens", "ratings.dat"), ("movielens", "u.data"),
    ("yambda", "listens.parquet"),
)
_TABLES = (".csv", ".tsv", ".tab", ".txt", ".parquet")


class UnknownLayout(ValueError):
    """No format's files are at the path."""


@dataclass(frozen=True)
class Detected:
    format: str
    why: str  # one line: what was recognised


def _by_name(rel: PurePosixPath) -> str | None:
    name = plain_name(rel.name)
    return next((fmt for fmt, pattern in NAMED if fnmatch.fnmatchcase(name, pattern)), None)


_LINE_RULES = (  # (format, a test on the first line's fields), for one file whose name says nothing
    ("listenbrainz_dump", lambda line, f: line.startswith("{") and '"track_metadata"' in line),
    ("lfm2b", lambda line, f: f == ["user_id", "track_id", "album_id", "timestamp"]),
    ("hetrec", lambda line, f: f == ["userID", "artistID", "weight"]),
    ("movielens", lambda line, f: line.startswith("userId,movieId,rating,timestamp") or bool(re.match(r"\d+::\d+::", line))),
    ("lastfm1k", lambda line, f: len(f) == 6 and bool(re.match(r"\d{4}-\d\d-\d\dT", f[1]))),
    ("lastfm360k", lambda line, f: len(f) == 4 and bool(re.fullmatch(r"[0-9a-f]{40}", f[0])) and f[3].strip().isdigit()),
    ("msd_taste", lambda line, f: len(f) == 3 and f[1].startswith("SO") and len(f[1]) == 18 and f[2].strip().isdigit()),
    ("lfm1b", lambda line, f: len(f) == 5 and all(x.strip().isdigit() for x in f)),
    ("audioscrobbler", lambda line, f: len(line.split(" ")) == 3 and all(x.isdigit() for x in line.split(" "))),
)


def _dump(name: str, m: "re.Match[str]") -> Detected:
    """A ListenBrainz dump, recognised by its published name (in ``name``)."""
    fmt = "listenbrainz_dump" if m["kind"] == "listens" else "listenbrainz_spark"
    return Detected(fmt, f"{name}: a ListenBrainz {m['kind']} dump (id {m['id']}, {m['type']})")


def _first_line(path: Path) -> str:
    from pipeline.loaders.release import _decompressed

    with _decompressed(path) as stream:
        return stream.readline(1 << 16).decode("utf-8", "replace").rstrip("\r\n")


def detect(path: str | Path) -> Detected:
    """The format of the release at ``path``; :class:`UnknownLayout` names what was found and the formats."""
    from pipeline.loaders import FORMATS

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist; give the file, folder or archive that holds the listens")
    if m := DUMP_NAME.search(p.name):
        return _dump(p.name, m)
    if p.is_dir() and ((p / "interactions").is_dir() or (p / "interactions.parquet").exists()):
        return Detected("listenbrainz", f"{p.name}: interactions/ + tracks.parquet (the seed's ListenBrainz layout)")
    release = Release(p)
    seen: list[str] = []
    metadata = False
    for name in release.names():
        rel = PurePosixPath(name)
        if len(seen) < 8:
            seen.append(name)
        fmt = _by_name(rel)
        if fmt:
            return Detected(fmt, f"{name}: {fmt}'s file")
        metadata = metadata or rel.name in ("SCHEMA_SEQUENCE", "TIMESTAMP", "START_TIMESTAMP")
        if metadata and rel.suffix == ".parquet":
            return Detected("listenbrainz_spark", f"{name} beside a dump's SCHEMA_SEQUENCE/TIMESTAMP: a ListenBrainz Spark dump")
        if m := DUMP_NAME.search(name):
            return _dump(name, m)
    if p.is_file() and not archive_suffix(p.name):
        line = _first_line(p)
        fields = line.split("\t")
        for fmt, test in _LINE_RULES:
            if test(line, fields):
                return Detected(fmt, f"{p.name}: its first line reads as {fmt} ({line[:60]!r})")
    tables = [n for n in seen if Path(plain_name(n)).suffix in _TABLES]
    if tables and len(tables) == len(seen):
        return Detected("generic", f"{p.name}: a table ({tables[0]}) no named format matches; read as generic "
                                   "(a header row; map its columns with columns=...)")
    raise UnknownLayout(
        f"{p}: no known layout (found {', '.join(seen) or 'no files'}{' ...' if len(seen) == 8 else ''}); "
        f"set input_format to one of {', '.join(f for f in FORMATS if f != 'auto')}")
