"""The corpus test: for every format, a small file shaped like each public release ingests on default
settings with nothing quarantined and every user kept; the field's published logs (tests/releases.py)
do so from the folder they extract to and, through ``auto``, from the archive they are downloaded as.

Each file is generated here (no dataset is copied into the repository): the release's real layout
and header, ratings or listens at the first and last instant of its documented date range, and odd
but valid values (half stars, huge play counts, Unicode names, titles with commas and quotes,
missing MusicBrainz ids, CRLF line ends, Latin-1 title files).
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import releases
from pipeline import ingest, loaders
from pipeline.config import IngestConfig

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc
TITLES = ["Toy Story (1995)", "American President, The (1995)", '"Great Performances" Cats (1998)',
          "Misérables, Les (1995)", "Léon: The Professional (a.k.a. The Professional) (Léon) (1994)",
          "City of Lost Children, The (Cité des enfants perdus, La) (1995)", "Ôkami kodomo no Ame to Yuki (2012)",
          "Crouching Tiger, Hidden Dragon (Wo hu cang long) (2000)"]
NAMES = ["坂本龍一", "Sigur Rós", "Björk", "Мумий Тролль", "The Beatles", "Mötley Crüe", "!!!", "AC/DC"]


def instants(first: dt.datetime, last: dt.datetime, n: int, rng: random.Random) -> list[int]:
    """n epoch seconds from first to last, both ends included."""
    lo, hi = int(first.timestamp()), int(last.timestamp())
    return [lo, hi] + [rng.randint(lo, hi) for _ in range(n - 2)]


def movielens(root: Path, release: str, first: dt.datetime, last: dt.datetime, *, layout: str, half_stars: bool,
              movie_ids: tuple[int, int]) -> tuple[Path, int]:
    """A MovieLens release: ratings in its layout, titles beside them; returns (folder, users)."""
    rng = random.Random(release)
    d = root / release
    d.mkdir()
    stars = [x / 2 for x in range(1, 11)] if half_stars else [1, 2, 3, 4, 5]
    movies = sorted({movie_ids[0], movie_ids[1], *(rng.randint(*movie_ids) for _ in range(20))})
    rows = []
    for i, ts in enumerate(instants(first, last, 60, rng)):
        rating = stars[i % len(stars)]
        rows.append((1 + i % 7, movies[i % len(movies)], f"{rating:.1f}" if half_stars else str(rating), ts))
    titles = {m: TITLES[j % len(TITLES)] for j, m in enumerate(movies)}
    if layout == "u.data":  # ML-100K: tab, no header, integer ratings; u.item: '|' and Latin-1
        (d / "u.data").write_text("".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in rows))
        (d / "u.item").write_bytes("".join(f"{m}|{t}|01-Jan-1995||http://us.imdb.com/M/title-exact?x|0|1|0\n"
                                           for m, t in titles.items()).encode("latin-1"))
    elif layout == "ratings.dat":  # ML-1M / ML-10M: '::'; ML-1M's movies.dat is Latin-1
        (d / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows))
        (d / "movies.dat").write_bytes("".join(f"{m}::{t}::Comedy|Drama\n" for m, t in titles.items())
                                       .encode("latin-1"))
    else:  # ML-20M and later, ml-latest(-small): CSV with a header, RFC 4180 quoting, UTF-8
        (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n"
                                       + "".join(f"{u},{m},{r},{t}\n" for u, m, r, t in rows))

        def quoted(t: str) -> str:
            return '"' + t.replace('"', '""') + '"' if ("," in t or '"' in t) else t

        (d / "movies.csv").write_text("movieId,title,genres\n"
                                      + "".join(f"{m},{quoted(t)},Adventure|Children\n" for m, t in titles.items()))
    return d, len({u for u, *_ in rows})


def lastfm1k(root: Path) -> tuple[Path, int]:
    """Last.fm 1K: userid, ISO time, artist mbid, artist, track mbid, track; ~28% without a track mbid."""
    rng = random.Random(1)
    lines = []
    for i, ts in enumerate(instants(dt.datetime(2002, 10, 1, tzinfo=UTC), dt.datetime(2009, 5, 4, 23, 8, 57, tzinfo=UTC),
                                    80, rng)):
        when = dt.datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        artist = NAMES[i % len(NAMES)]
        mbid = "" if i % 4 == 0 else f"00000000-0000-4000-8000-{i:012d}"
        lines.append(f"user_{1 + i % 5:06d}\t{when}\t{'' if i % 9 == 0 else 'a1b2c3d4-0000-4000-8000-000000000001'}"
                     f"\t{artist}\t{mbid}\tComposition 0919 (Live_2009_4_15) #{i % 13}\n")
    f = root / "userid-timestamp-artid-artname-traid-traname.tsv"
    f.write_text("".join(lines))
    return f, 5


def listenbrainz(root: Path) -> tuple[Path, int]:
    """ListenBrainz: interactions/ (user_id, recording_msid, timestamp) + tracks.parquet; from LISTEN_MINIMUM_TS."""
    rng = random.Random(2)
    d = root / "listenbrainz"
    (d / "interactions").mkdir(parents=True)
    now = dt.datetime.now(UTC) - dt.timedelta(hours=1)
    ts = instants(dt.datetime(2002, 10, 1, tzinfo=UTC), now, 80, rng)
    users = [f"{NAMES[i % 4]}_{i % 6}" for i in range(len(ts))]
    msids = [f"msid-{i % 17}" for i in range(len(ts))]
    pq.write_table(pa.table({"user_id": users, "recording_msid": msids,
                             "timestamp": pa.array([t * 1_000_000 for t in ts], pa.timestamp("us", tz="UTC"))}),
                   d / "interactions" / "part-0.parquet")
    pq.write_table(pa.table({"recording_msid": [f"msid-{i}" for i in range(17)],
                             "artist_name": [NAMES[i % len(NAMES)] for i in range(17)],
                             "track_name": [f"Hoppípolla {i}" for i in range(17)],
                             "recording_mbid": [None if i % 3 == 0 else f"mbid-{i}" for i in range(17)]}),
                   d / "tracks.parquet")
    return d, len(set(users))


def hetrec(root: Path) -> tuple[Path, int]:
    """HetRec Last.fm 2k: user_artists.dat (tab, header, CRLF; weights 1 to 352,698) and artists.dat."""
    d = root / "hetrec"
    d.mkdir()
    weights = [1, 352_698, 13_883, 2, 7]
    rows = [f"{2 + u}\t{51 + a * 37}\t{weights[(u + a) % len(weights)]}" for u in range(6) for a in range(5)]
    (d / "user_artists.dat").write_bytes(("userID\tartistID\tweight\r\n" + "\r\n".join(rows) + "\r\n").encode())
    (d / "artists.dat").write_text("id\tname\turl\tpictureURL\n" + "".join(
        f"{51 + a * 37}\t{NAMES[a]}\thttp://www.last.fm/music/x\thttp://userserve-ak.last.fm/serve/252/1.jpg\n"
        for a in range(5)))
    return d, 6


def audioscrobbler(root: Path) -> tuple[Path, int]:
    """Audioscrobbler 2005: space-separated plays (1 to 439,771), an alias table, names (some ids without one)."""
    d = root / "audioscrobbler"
    d.mkdir()
    plays = [1, 439_771, 2, 55, 1]
    rows = [f"{1_000_002 + u * 1_000} {1_000_010 + a} {plays[(u + a) % len(plays)]}" for u in range(5) for a in range(6)]
    rows.append("1000002 10794401 3")  # a bad id that the alias table maps onto 1000010
    (d / "user_artist_data.txt").write_text("\n".join(rows) + "\n")
    (d / "artist_alias.txt").write_text("10794401\t1000010\n6803336\t1000010\n")
    (d / "artist_data.txt").write_text("".join(f"{1_000_010 + a}\t{NAMES[a]}\n" for a in range(4)))  # 2 nameless
    return d, 5


def generic(root: Path) -> tuple[Path, int]:
    f = root / "listens.csv"
    rng = random.Random(3)
    ts = instants(dt.datetime(2000, 1, 1, tzinfo=UTC), dt.datetime.now(UTC) - dt.timedelta(hours=1), 40, rng)
    f.write_text("user,artist,title,ts,n\n" + "".join(
        f"u{i % 4},{NAMES[i % len(NAMES)]},Song {i % 9},{dt.datetime.fromtimestamp(t, UTC).isoformat()},{1 + i % 3}\n"
        for i, t in enumerate(ts)))
    return f, 4


def _ml(release, first, last, layout, half_stars, ids):
    return lambda root: movielens(root, release, dt.datetime(*first, tzinfo=UTC), dt.datetime(*last, tzinfo=UTC),
                                  layout=layout, half_stars=half_stars, movie_ids=ids)


# (format, release, generator, extra config): date ranges as documented for each public release
RELEASES = [
    ("movielens", "ml-100k", _ml("ml-100k", (1997, 9, 19), (1998, 4, 22, 23, 59), "u.data", False, (1, 1682)), {}),
    ("movielens", "ml-1m", _ml("ml-1m", (2000, 4, 25), (2003, 2, 28, 17, 49), "ratings.dat", False, (1, 3952)), {}),
    ("movielens", "ml-10m", _ml("ml-10m", (1995, 1, 9, 11, 46, 44), (2009, 1, 5, 5, 2, 16), "ratings.dat", True,
                                (1, 65133)), {}),
    ("movielens", "ml-20m", _ml("ml-20m", (1995, 1, 9, 11, 46, 49), (2015, 3, 31, 6, 40, 2), "ratings.csv", True,
                                (1, 131262)), {}),
    ("movielens", "ml-25m", _ml("ml-25m", (1995, 1, 9, 11, 46, 49), (2019, 11, 21, 9, 15, 3), "ratings.csv", True,
                                (1, 209171)), {}),
    ("movielens", "ml-32m", _ml("ml-32m", (1995, 1, 9, 11, 46, 44), (2023, 10, 13, 2, 29, 7), "ratings.csv", True,
                                (1, 292757)), {}),
    ("movielens", "ml-latest-small", _ml("ml-latest-small", (1996, 3, 29, 18, 36, 55), (2018, 9, 24, 14, 27, 30),
                                         "ratings.csv", True, (1, 193609)), {}),
    ("lastfm1k", "lastfm-dataset-1K", lastfm1k, {}),
    ("listenbrainz", "listenbrainz dumps", listenbrainz, {}),
    ("hetrec", "hetrec2011-lastfm-2k", hetrec, {}),
    ("audioscrobbler", "audioscrobbler 2005", audioscrobbler, {}),
    ("generic", "generic csv", generic, {"columns": {"user_id": "user", "artist_name": "artist", "track_name": "title",
                                                    "timestamp": "ts", "play_count": "n"}}),
]


@pytest.mark.parametrize("fmt,release,make,extra", RELEASES, ids=[r[1] for r in RELEASES])
def test_each_public_release_ingests_on_defaults(spark, tmp_path, fmt, release, make, extra):
    path, n_users = make(tmp_path)
    cfg = IngestConfig(input_path=str(path), input_format=fmt, **extra)
    s = ingest.ingest(cfg, tmp_path / "out", idmap_root=tmp_path / "idmap", spark=spark)
    assert s["quarantined"] == 0, s["quarantined_by_reason"]
    assert s["rows_in"] == s["rows_out"] + s["duplicates"] > 0
    assert s["n_users_mapped"] == n_users  # every user kept
    tracks = pq.read_table(tmp_path / "out" / "tracks").to_pandas()
    if fmt in ("movielens", "hetrec", "lastfm1k", "listenbrainz", "generic"):  # every name the release ships is read
        assert tracks["artist_name" if fmt == "hetrec" else "track_name"].notna().all(), tracks.head()
    if fmt == "movielens":
        assert set(tracks["track_name"]) <= set(TITLES) and '"Great Performances" Cats (1998)' in set(tracks["track_name"])
        assert tracks["track_key"].str.startswith("src:").all()  # a movie stays its movieId, titles only label it


PUBLISHED = ["listenbrainz_dump", "listenbrainz_spark", "lastfm1k", "lastfm360k", "msd_taste", "lfm1b", "lfm2b", "yambda"]


@pytest.mark.parametrize("fmt", PUBLISHED)
def test_each_published_log_ingests_on_defaults_from_its_folder_and_through_auto_from_its_archive(spark, tmp_path, fmt):
    made = getattr(releases, fmt)(tmp_path)
    assert loaders.detect(made.folder).format == fmt and loaders.detect(made.archive).format == fmt
    listens = []
    for source, cfg_fmt in ((made.folder, fmt), (made.archive, "auto")):
        out = tmp_path / f"out-{cfg_fmt}"
        s = ingest.ingest(IngestConfig(input_path=str(source), input_format=cfg_fmt), out,
                          idmap_root=tmp_path / f"idmap-{cfg_fmt}", spark=spark)
        assert s["format"] == fmt and s["rows_in"] == made.records  # every record of the release, counted in
        assert s["rows_in"] == s["rows_out"] + s["duplicates"] + s["quarantined"]
        # nothing quarantined but what the format defines as no listen (a Yambda skip), kept out by design
        assert s["quarantined"] == made.skips, s["quarantined_by_reason"]
        assert set(s["quarantined_by_reason"]) <= {"skip: played_ratio_pct below 50 (not a listen)"}
        assert s["n_users_mapped"] == made.users
        assert not (out / "staging").exists()  # what the archive staged is gone
        tracks = pq.read_table(out / "tracks").to_pandas()
        # every release but Yambda ships names (the taste profile's in unique_tracks.txt, a download of its own)
        if fmt != "yambda" and not (fmt == "msd_taste" and source == made.archive):
            assert tracks["artist_name"].notna().all(), tracks.head()
        listens.append(pq.read_table(out / "listens").to_pandas().sort_values("source_row").reset_index(drop=True))
    if fmt == "msd_taste":  # the folder's song names key its tracks by name; the bare zip has only song ids
        listens = [df.drop(columns="track_idx") for df in listens]
    pd.testing.assert_frame_equal(listens[0], listens[1])  # the archive gives the very rows the folder gives


def test_a_listenbrainz_dump_names_its_release_and_reads_both_time_keys(spark, tmp_path):
    made = releases.listenbrainz_dump(tmp_path, dump_id=2203, incremental=True, suffix=".tar.xz")
    s = ingest.validate_stage(IngestConfig(input_path=str(made.archive)), tmp_path / "out", spark=spark)
    assert s["format"] == "listenbrainz_dump" and s["release"] == made.folder.name
    stats = s["loader_stats"]
    assert stats["dump_id"] == 2203 and stats["dump_type"] == "incremental" and stats["dump_date"] == "2025-06-01T00:00:03Z"
    assert stats["end_timestamp"] == "2025-06-01 00:00:03+00:00" and "ListenBrainz listens dump" in stats["recognised"]
    rows = pq.read_table(tmp_path / "out" / "validated").to_pandas()
    assert rows["timestamp"].notna().all() and len(rows) == made.records  # 'timestamp' and the older 'listened_at'



def test_a_text_release_compressed_as_one_file_is_read_where_it_lies(spark, tmp_path):
    import gzip

    import zstandard

    made = releases.lastfm360k(tmp_path)
    plays = made.folder / "usersha1-artmbid-artname-plays.tsv"
    packed = {".gz": gzip.compress(plays.read_bytes()), ".zst": zstandard.ZstdCompressor().compress(plays.read_bytes())}
    listens = []
    for suffix, data in packed.items():
        (tmp_path / suffix).mkdir()
        f = tmp_path / suffix / f"{plays.name}{suffix}"
        f.write_bytes(data)
        s = ingest.ingest(IngestConfig(input_path=str(f)), tmp_path / f"out{suffix}", idmap_root=tmp_path / f"idmap{suffix}",
                          spark=spark)
        assert s["format"] == "lastfm360k" and s["rows_in"] == made.records and s["quarantined"] == 0
        listens.append(pq.read_table(tmp_path / f"out{suffix}" / "listens").to_pandas().sort_values("source_row")
                       .reset_index(drop=True))
    pd.testing.assert_frame_equal(listens[0], listens[1])


def test_a_truncated_dump_fails_in_one_line_naming_the_file(spark, tmp_path):
    made = releases.listenbrainz_dump(tmp_path, n=400)
    cut = tmp_path / "cut" / made.archive.name
    cut.parent.mkdir()
    cut.write_bytes(made.archive.read_bytes()[: made.archive.stat().st_size // 2])
    with pytest.raises(ValueError) as e:
        ingest.validate_stage(IngestConfig(input_path=str(cut)), tmp_path / "out", spark=spark)
    assert str(e.value).startswith(f"{cut} could not be decompressed") and "download it again" in str(e.value)
    assert "\n" not in str(e.value)
