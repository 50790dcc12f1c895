"""Generated file sets in the published layouts of the field's public listening logs (no data copied).

Each maker writes a release's folder as it extracts (the real file and folder names, the real header or
none, metadata files beside the data, the full documented date range, Unicode, empty MBIDs, huge play
counts) and the archive it is downloaded as, built from that folder. It returns a :class:`Made`.
"""

from __future__ import annotations

import bz2
import datetime as dt
import io
import json
import random
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.timezone.utc
NAMES = ["坂本龍一", "Sigur Rós", "Björk", "Мумий Тролль", "The Beatles", "Mötley Crüe", "!!!", "AC/DC"]
TRACKS = ["Hoppípolla", "Merry Christmas Mr. Lawrence", "Jóga", "Владивосток 2000", "Let It Be", "Kickstart, My Heart",
          'Me and Giuliani Down by the "School Yard"', "Back in Black"]


@dataclass(frozen=True)
class Made:
    folder: Path  # the release as extracted (what input_path points at)
    archive: Path  # the release as downloaded
    users: int
    records: int  # listens (or user-item rows) in the release: the expected rows_in
    skips: int = 0  # events that are no listen by the format's definition (Yambda)


def instants(first: dt.datetime, last: dt.datetime, n: int, rng: random.Random) -> list[int]:
    lo, hi = int(first.timestamp()), int(last.timestamp())
    return [lo, hi] + [rng.randint(lo, hi) for _ in range(n - 2)]


def _tar(folder: Path, archive: Path, mode: str = "w") -> Path:
    """``archive`` holding ``folder`` as its top folder (zstd when the name ends in .tar.zst)."""
    if archive.name.endswith(".tar.zst"):
        import zstandard

        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as t:
            t.add(folder, arcname=folder.name)
        archive.write_bytes(zstandard.ZstdCompressor(level=3).compress(raw.getvalue()))
    else:
        mode = {".tar.xz": "w:xz", ".tar.gz": "w:gz", ".tar.bz2": "w:bz2"}.get("".join(archive.suffixes[-2:]), mode)
        with tarfile.open(archive, mode) as t:
            t.add(folder, arcname=folder.name)
    return archive


def _zip(folder: Path, archive: Path, top: bool = True) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, (Path(folder.name) if top else Path()) / f.relative_to(folder))
    return archive


def _dump_metadata(d: Path, end: dt.datetime, incremental: bool, start: dt.datetime | None = None) -> None:
    (d / "COPYING").write_text("The listens are licensed under CC0 1.0.\n")
    (d / "SCHEMA_SEQUENCE").write_text("1")
    if incremental:
        (d / "START_TIMESTAMP").write_text((start or end).isoformat(" "))
        (d / "END_TIMESTAMP").write_text(end.isoformat(" "))
    else:
        (d / "TIMESTAMP").write_text(end.isoformat(" "))


def listen_line(i: int, ts: int, rng: random.Random, *, old_key: bool = False) -> str:
    """One listen as ``Listen.to_json`` writes it (listenbrainz-server, listenbrainz/listen.py)."""
    msid = f"4269ddbc-9241-46da-935d-{i % 23:012d}"
    info: dict = {"recording_msid": msid, "submission_client": "ListenBrainz Importer", "duration_ms": 245000}
    if i % 3 == 0:
        info["recording_mbid"] = f"00000000-0000-4000-8000-{i % 19:012d}"
        info["artist_mbids"] = ["a1b2c3d4-0000-4000-8000-000000000001"]
    elif i % 7 == 0:
        info["recording_mbid"] = ""  # empty: clients send it so
    meta = {"artist_name": NAMES[i % len(NAMES)], "track_name": TRACKS[i % len(TRACKS)],
            "release_name": None if i % 5 == 0 else "Takk...", "additional_info": info}
    if i % 11 == 0:
        meta["mbid_mapping"] = {"recording_mbid": f"00000000-0000-4000-8000-{i % 19:012d}", "artists": []}
    d = {"user_id": 1 + i % 6, "user_name": f"{NAMES[i % 4]}_{i % 6}", ("listened_at" if old_key else "timestamp"): ts,
         "track_metadata": meta, "recording_msid": msid}
    return json.dumps(d, ensure_ascii=False)


def _write_listens(d: Path, lines: list[tuple[int, str]]) -> None:
    by_month: dict[tuple[int, int], list[str]] = {}
    for ts, line in sorted(lines):
        t = dt.datetime.fromtimestamp(ts, UTC)
        by_month.setdefault((t.year, t.month), []).append(line)
    for (year, month), rows in by_month.items():
        f = d / "listens" / str(year) / f"{month}.listens"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("".join(r + "\n" for r in rows))


def listenbrainz_dump(root: Path, *, dump_id: int = 1234, when: dt.datetime | None = None, n: int = 90,
                      first: dt.datetime | None = None, incremental: bool = False, seed: int = 5,
                      suffix: str = ".tar.zst") -> Made:
    """A listens dump: listens/<year>/<month>.listens from LISTEN_MINIMUM_TS to the dump's end."""
    rng = random.Random(seed)
    when = when or dt.datetime(2025, 6, 1, 0, 0, 3, tzinfo=UTC)
    first = first or dt.datetime(2002, 10, 1, tzinfo=UTC)
    kind = "incremental" if incremental else "full"
    d = root / f"listenbrainz-listens-dump-{dump_id}-{when:%Y%m%d-%H%M%S}-{kind}"
    d.mkdir(parents=True)
    _dump_metadata(d, when, incremental, first)
    ts = instants(first, when - dt.timedelta(seconds=1), n, rng)
    _write_listens(d, [(t, listen_line(i + seed * 1000, t, rng, old_key=i % 4 == 0)) for i, t in enumerate(ts)])
    return Made(d, _tar(d, root / f"{d.name}{suffix}"), len({1 + (i + seed * 1000) % 6 for i in range(n)}), n)


def listenbrainz_spark(root: Path) -> Made:
    """A Spark dump: <n>.parquet (SPARK_LISTENS_SCHEMA, timestamp[ms]) and the dump's metadata files."""
    rng = random.Random(6)
    when = dt.datetime(2025, 6, 1, 0, 0, 3, tzinfo=UTC)
    d = root / f"listenbrainz-spark-dump-1235-{when:%Y%m%d-%H%M%S}-full"
    d.mkdir(parents=True)
    _dump_metadata(d, when, False)
    ts = sorted(instants(dt.datetime(2002, 10, 1, tzinfo=UTC), when - dt.timedelta(seconds=1), 80, rng))
    ms = pa.timestamp("ms")
    for part in range(2):
        rows = range(part * 40, part * 40 + 40)
        mapped = [i % 3 != 0 for i in rows]
        pq.write_table(pa.table({
            "listened_at": pa.array([ts[i] * 1000 for i in rows], ms),
            "created": pa.array([ts[i] * 1000 + 5000 for i in rows], ms),
            "user_id": pa.array([1 + i % 7 for i in rows], pa.int64()),
            "recording_msid": [f"4269ddbc-9241-46da-935d-{i % 23:012d}" for i in rows],
            "artist_name": [NAMES[i % len(NAMES)] for i in rows],
            "artist_credit_id": pa.array([i if m else None for i, m in zip(rows, mapped)], pa.int64()),
            "release_name": [None if i % 5 == 0 else "Takk..." for i in rows],
            "release_mbid": [None] * 40,
            "recording_name": [TRACKS[i % len(TRACKS)] for i in rows],
            "recording_mbid": [f"00000000-0000-4000-8000-{i % 19:012d}" if m else None for i, m in zip(rows, mapped)],
            "artist_credit_mbids": pa.array([["a1b2c3d4-0000-4000-8000-000000000001"] if m else None for m in mapped],
                                            pa.list_(pa.string())),
        }), d / f"{part}.parquet", flavor="spark", compression="zstd")
    return Made(d, _tar(d, root / f"{d.name}.tar"), 7, 80)


def lastfm1k(root: Path) -> Made:
    """lastfm-dataset-1K/: the TSV (no header, newest first), userid-profile.tsv (header) and README.txt."""
    rng = random.Random(1)
    d = root / "lastfm-dataset-1K"
    d.mkdir()
    lines = []
    ts = instants(dt.datetime(2002, 10, 1, tzinfo=UTC), dt.datetime(2009, 5, 4, 23, 8, 57, tzinfo=UTC), 80, rng)
    for i, t in enumerate(sorted(ts, reverse=True)):
        when = dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        mbid = "" if i % 4 == 0 else f"00000000-0000-4000-8000-{i:012d}"
        lines.append(f"user_{1 + i % 5:06d}\t{when}\t{'' if i % 9 == 0 else 'a1b2c3d4-0000-4000-8000-000000000001'}"
                     f"\t{NAMES[i % len(NAMES)]}\t{mbid}\t{TRACKS[i % len(TRACKS)]}\n")
    (d / "userid-timestamp-artid-artname-traid-traname.tsv").write_text("".join(lines))
    (d / "userid-profile.tsv").write_text("#id\tgender\tage\tcountry\tregistered\n" + "".join(
        f"user_{u:06d}\t{'mf'[u % 2] if u % 3 else ''}\t{20 + u if u % 2 else ''}\tJapan\tAug 13, 2006\n" for u in range(1, 9)))
    (d / "README.txt").write_text("Last.fm Dataset - 1K users\nVersion 1.0, May 2010\n\nuserid \\t timestamp \\t ...\n")
    return Made(d, _tar(d, root / "lastfm-dataset-1K.tar.gz", "w:gz"), 5, 80)


def lastfm360k(root: Path) -> Made:
    """lastfm-dataset-360K/: user sha1, artist mbid (often empty), artist name, plays (1 to 419,157)."""
    d = root / "lastfm-dataset-360K"
    d.mkdir()
    plays = [1, 419_157, 2_137, 3, 58]
    rows = []
    for u in range(6):
        sha = f"{u:08x}" + "c289a1829a808ac09c00daf10bc3c4e223b"[: 32]
        for a in range(5):
            mbid = "" if (u + a) % 3 == 0 else f"3bd73256-3905-4f3a-97e2-{a:012d}"
            rows.append(f"{sha}\t{mbid}\t{NAMES[a].lower()}\t{plays[(u + a) % len(plays)]}\n")
    (d / "usersha1-artmbid-artname-plays.tsv").write_text("".join(rows))
    (d / "usersha1-profile.tsv").write_text("".join(f"{u:08x}{'c289a1829a808ac09c00daf10bc3c4e223b'[:32]}\tf\t22\tSweden\t"
                                                    "Feb 1, 2007\n" for u in range(6)))
    (d / "README.txt").write_text("Last.fm Dataset - 360K users\n")
    return Made(d, _tar(d, root / "lastfm-dataset-360K.tar.gz", "w:gz"), 6, 30)


def msd_taste(root: Path) -> Made:
    """train_triplets.txt (user sha1, song id, count) and unique_tracks.txt (<SEP>), as train_triplets.txt.zip."""
    d = root / "taste-profile"
    d.mkdir()
    songs = [f"SO{chr(65 + s)}KIMP12A8C13{s:04d}" for s in range(7)]  # 18 characters, as in the MSD
    rows = [f"b80344d063b5ccb3212f76538f3d9e43d87dca9{u}\t{songs[(u * 3 + s) % 7]}\t{[1, 9667, 2, 5][(u + s) % 4]}\n"
            for u in range(5) for s in range(4)]
    (d / "train_triplets.txt").write_text("".join(rows))
    (d / "unique_tracks.txt").write_text("".join(f"TRMMMYQ128F932D90{s}<SEP>{songs[s]}<SEP>{NAMES[s]}<SEP>{TRACKS[s]}\n"
                                                 for s in range(7)))
    archive = root / "train_triplets.txt.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(d / "train_triplets.txt", "train_triplets.txt")
    return Made(d, archive, 5, 20)


def lfm1b(root: Path) -> Made:
    """LFM-1b/: LFM-1b_LEs.txt (no header, epoch seconds), names in _tracks/_artists, users with a header, as LFM-1b.zip."""
    rng = random.Random(7)
    d = root / "LFM-1b"
    d.mkdir()
    ts = instants(dt.datetime(2005, 2, 14, tzinfo=UTC), dt.datetime(2014, 8, 31, 23, 59, tzinfo=UTC), 60, rng)
    (d / "LFM-1b_LEs.txt").write_text("".join(f"{31435741 + i % 4}\t{2 + i % 5}\t{4 + i % 6}\t{4 + i % 9}\t{t}\n"
                                              for i, t in enumerate(ts)))
    (d / "LFM-1b_tracks.txt").write_text("".join(f"{4 + t}\t{TRACKS[t % len(TRACKS)]}\t{2 + t % 5}\n" for t in range(9)))
    (d / "LFM-1b_artists.txt").write_text("".join(f"{2 + a}\t{NAMES[a]}\n" for a in range(5)))
    (d / "LFM-1b_albums.txt").write_text("".join(f"{4 + a}\tTakk...\t{2 + a % 5}\n" for a in range(6)))
    (d / "LFM-1b_users.txt").write_text("user_id\tcountry\tage\tgender\tplaycount\tregistered_unixtime\n"
                                        + "".join(f"{31435741 + u}\tAT\t-1\tn\t1000\t1108296000\n" for u in range(4)))
    return Made(d, _zip(d, root / "LFM-1b.zip"), 4, 60)


def lfm2b(root: Path) -> Made:
    """LFM-2b: listening-events.tsv.bz2 (header, text times), tracks.tsv.bz2 and users.tsv.bz2; archived as a .tar."""
    rng = random.Random(8)
    d = root / "lfm-2b"
    d.mkdir()
    ts = instants(dt.datetime(2005, 2, 14, tzinfo=UTC), dt.datetime(2020, 3, 20, 23, 59, 59, tzinfo=UTC), 60, rng)
    events = "user_id\ttrack_id\talbum_id\ttimestamp\n" + "".join(
        f"{i % 5}\t{i % 8}\t{i % 3}\t{dt.datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M:%S}\n" for i, t in enumerate(ts))
    (d / "listening-events.tsv.bz2").write_bytes(bz2.compress(events.encode()))
    (d / "tracks.tsv.bz2").write_bytes(bz2.compress(("track_id\tartist_name\ttrack_name\n" + "".join(
        f"{t}\t{NAMES[t]}\t{TRACKS[t]}\n" for t in range(8))).encode()))
    (d / "users.tsv.bz2").write_bytes(bz2.compress(b"user_id\tcountry\tage\tgender\tcreation_time\n0\tAT\t30\tm\t2008-01-01\n"))
    return Made(d, _tar(d, root / "lfm-2b.tar"), 5, 60)


def yambda(root: Path) -> Made:
    """yambda/flat/50m/: listens.parquet (relative 5-second times, plays past 100%, skips) and likes.parquet."""
    rng = random.Random(9)
    d = root / "yambda"
    flat = d / "flat" / "50m"
    flat.mkdir(parents=True)
    n = 60
    ratio = [100, 3, 250, 50, 49, 87]
    pct = [ratio[i % len(ratio)] for i in range(n)]
    pq.write_table(pa.table({
        "uid": pa.array([100 + i % 5 for i in range(n)], pa.uint32()),
        "timestamp": pa.array(sorted([0, 25_920_000] + [5 * rng.randint(0, 5_184_000) for _ in range(n - 2)]), pa.uint32()),
        "item_id": pa.array([7 + i % 11 for i in range(n)], pa.uint32()),
        "is_organic": pa.array([i % 2 for i in range(n)], pa.uint8()),
        "played_ratio_pct": pa.array(pct, pa.uint16()),
        "track_length_seconds": pa.array([200 + i for i in range(n)], pa.uint32()),
    }), flat / "listens.parquet")
    pq.write_table(pa.table({"uid": pa.array([100], pa.uint32()), "timestamp": pa.array([5], pa.uint32()),
                             "item_id": pa.array([7], pa.uint32()), "is_organic": pa.array([1], pa.uint8())}),
                   flat / "likes.parquet")
    return Made(flat, _tar(d, root / "yambda.tar"), 5, n, sum(p < 50 for p in pct))


def dumps_from_log(log: Path, out: Path, days: list[dt.date], *, first_id: int = 2001) -> list[Path]:
    """A synthetic log (``pipeline synth``'s layout) as ListenBrainz publishes it, night by night: a full dump
    on ``days[0]`` with that day's incremental beside it (the same listens, as on the 1st and 15th), then one
    incremental per later day holding the listens of that day. Returns the archives, oldest first."""
    import pandas as pd

    inter = pd.read_parquet(log / "interactions")
    tracks = pd.read_parquet(log / "tracks.parquet").drop_duplicates("recording_msid").set_index("recording_msid")
    inter = inter.join(tracks, on="recording_msid")
    seconds = (pd.to_datetime(inter["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    users = {u: i + 1 for i, u in enumerate(sorted(inter["user_id"].unique()))}

    def line(r, ts: int) -> str:
        info = {"recording_msid": r.recording_msid, **({"recording_mbid": r.recording_mbid} if r.recording_mbid else {})}
        return json.dumps({"user_id": users[r.user_id], "user_name": r.user_id, "timestamp": ts, "recording_msid":
                           r.recording_msid, "track_metadata": {"artist_name": r.artist_name, "track_name": r.track_name,
                                                                "additional_info": info}}, ensure_ascii=False)

    def dump(kind: str, day: dt.date, dump_id: int, keep) -> Path:
        end = dt.datetime.combine(day, dt.time(), tzinfo=UTC) + dt.timedelta(days=1, seconds=2)
        d = out / f"listenbrainz-listens-dump-{dump_id}-{end:%Y%m%d-%H%M%S}-{kind}"
        d.mkdir(parents=True)
        _dump_metadata(d, end, kind == "incremental", end - dt.timedelta(days=1))
        rows = inter[keep]
        _write_listens(d, [(int(t), line(r, int(t))) for r, t in zip(rows.itertuples(), seconds[keep])])
        archive = _tar(d, out / f"{d.name}.tar.zst")
        import shutil

        shutil.rmtree(d)
        return archive

    def day_of(day: dt.date):
        lo = int(dt.datetime.combine(day, dt.time(), tzinfo=UTC).timestamp())
        return (seconds >= lo) & (seconds < lo + 86_400)

    # a dump is named by its end, just after midnight: the night of `day` is published on day + 1
    made = [dump("full", days[0], first_id, seconds < int(dt.datetime.combine(days[0] + dt.timedelta(days=1), dt.time(),
                                                                               tzinfo=UTC).timestamp())),
            dump("incremental", days[0], first_id + 1, day_of(days[0]))]
    for i, day in enumerate(days[1:]):
        made.append(dump("incremental", day, first_id + 2 + i, day_of(day)))
    return made
