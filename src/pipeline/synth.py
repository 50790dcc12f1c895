"""A deterministic synthetic listening log shaped like the seed's ListenBrainz data.

Users and tracks belong to taste clusters; a user's listens come mostly from their cluster
(by the tracks' popularity inside it) and the rest from global popularity, so a
personalized model has structure to find (docs/contracts.md "Synthetic data"). History lengths are
heavy-tailed (lognormal), track popularity is a power law, about two years of timestamps,
a share of tracks without a MusicBrainz id (some of them spelled two ways), and a small
share of exact duplicate listens.

Written in the ListenBrainz layout the ``listenbrainz`` loader reads::

    <out>/interactions/part-00000.parquet ...   user_id, recording_msid, timestamp (UTC)
    <out>/tracks.parquet                        recording_msid, artist_name, track_name, recording_mbid
    <out>/summary.json

Generation streams in chunks of users, so memory stays bounded at any size; the same
arguments give byte-identical files.

Two shapes. ``demo`` (the default, what ``make demo`` and the tests use): users =
listens / 70 (50 to 8,000), tracks = listens / 8, Zipf exponent 1 over every track, 0.5%
duplicates. ``seed`` reproduces the seed's ListenBrainz data (179M listens, ~8k users,
~23M tracks, over 45% of tracks heard once, ~15k duplicate listens) at any size:

* users = listens / 500, between 50 and 8,000 (8,000 from 4M listens on), so a median
  history stays in the hundreds of listens at small sizes instead of thinning to a few;
* a catalogue of 0.22 x listens candidate tracks with Zipf popularity (exponent 0.97),
  inside the same planted taste clusters; the tracks actually heard make ``tracks.parquet``:
  about 0.13 x listens, of which the share heard once grows slowly with size (measured:
  43% at 1M listens, 47% at 20M; the seed: "over 45%");
* duplicates at the seed's rate (15k / 179M), 30% of tracks without an MBID.

The seed shape streams the track table too: names are a hash of the track id (no
per-track strings kept), so memory is a few O(catalogue) arrays of numbers plus one chunk.

``calibrated`` is the seed shape with listeners who repeat themselves as real ones do (issue #20;
``benchmarks/shape_stats.py`` measures both against the real logs in ``../shared/data``): each
user has a rotation of max(5, round(10 L ** 0.3)) tracks for a history of L listens (48 at 190
listens, 85 at 1,250), drawn as any listen is; 75% of their listens replay it, its j-th track
with weight (j + 1) ** -0.5, and the rest are drawn as in ``seed``. The candidate catalogue is
0.6 x listens, so that fewer fresh draws still reach about 0.1 tracks per listen.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.paths import atomic_dir

__all__ = ["generate", "main"]

IN_CLUSTER = 0.8
_SYLLABLES = np.array(["ka", "lo", "mé", "ri", "sø", "tan", "vel", "zu", "ar", "bö", "cy", "dra", "el", "fin", "gu", "hé"])


def _ids(prefix: str, idx: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pa.array(idx, pa.int64()).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, s, "")


def _spell(syllables: np.ndarray) -> np.ndarray:
    """Names from rows of syllable numbers: ``[[0, 1]]`` -> ``["Ka Lo"]``."""
    parts = _SYLLABLES[syllables]
    return np.array([" ".join(p).title() for p in parts], dtype=object)


def _variant(name: str, how: int) -> str:
    """The same name spelled differently: decomposed accents, case, extra spaces."""
    if how == 0:
        return unicodedata.normalize("NFD", name) + " "
    if how == 1:
        return "  " + name.upper()
    return "   ".join(name.split()) + "\t"


def _users(rng: np.random.Generator, *, n_users: int, n_clusters: int, n_listens: int, duplicate_share: float,
           days: int, start: str) -> tuple[np.ndarray, np.ndarray, int, int, np.ndarray, np.ndarray]:
    """Users: a taste cluster each, heavy-tailed history lengths, an active window inside the period.

    Returns (cluster, history length, period in µs, start in µs since the epoch, window span, window begin).
    """
    user_cluster = rng.integers(0, n_clusters, size=n_users)
    n_base = int(round(n_listens / (1 + duplicate_share)))
    weights = rng.lognormal(0.0, 1.4, size=n_users)
    lengths = 1 + rng.multinomial(max(0, n_base - n_users), weights / weights.sum())
    period_us = days * 86_400 * 1_000_000
    t0 = int(dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
    span = rng.uniform(0.05, 1.0, size=n_users) * period_us
    begin = rng.uniform(0, 1, size=n_users) * (period_us - span)
    return user_cluster, lengths, period_us, t0, span, begin


def _write_interactions(folder: Path, rng: np.random.Generator, *, lengths: np.ndarray, t0: int, begin: np.ndarray,
                        span: np.ndarray, duplicate_share: float, chunk_rows: int,
                        draw: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[int, int]:
    """Write ``interactions/part-*.parquet`` a chunk of whole users at a time; (rows written, planted duplicates).

    ``draw(users, own)`` picks each listen's track (``own``: from the user's cluster, else from
    all tracks). Timestamps fall in each user's active window; a share of rows is repeated
    exactly (duplicates for the dedup stage to find).
    """
    folder.mkdir(parents=True)
    n_users = len(lengths)
    cum = np.concatenate([[0], np.cumsum(lengths)])
    written = dups = lo = part = 0
    while lo < n_users:
        hi = int(min(n_users, max(lo + 1, np.searchsorted(cum, cum[lo] + chunk_rows, side="left"))))
        users = np.repeat(np.arange(lo, hi), lengths[lo:hi])
        n = users.size
        own = rng.random(n) < IN_CLUSTER
        tracks = draw(users, own)
        ts = t0 + (begin[users] + rng.random(n) * span[users]).astype(np.int64)
        n_dup = int(rng.binomial(n, duplicate_share)) if duplicate_share else 0
        if n_dup:
            pick = rng.choice(n, size=n_dup, replace=False)
            users, tracks, ts = (np.concatenate([x, x[pick]]) for x in (users, tracks, ts))
        order = np.lexsort((tracks, ts, users))
        table = pa.table({
            "user_id": _ids("u", users[order], 6),
            "recording_msid": _ids("msid-", tracks[order], 9),
            "timestamp": pa.array(ts[order], pa.timestamp("us", tz="UTC")),
        })
        pq.write_table(table, folder / f"part-{part:05d}.parquet", compression="snappy")
        written += table.num_rows
        dups += n_dup
        lo, part = hi, part + 1
    return written, dups


def generate(
    out_dir: str | Path, *, shape: str = "demo", n_listens: int = 200_000, n_users: int | None = None, n_tracks: int | None = None,
    n_clusters: int = 40, seed: int = 0, duplicate_share: float = 0.005, mbid_share: float = 0.7,
    name_dup_share: float = 0.02, start: str = "2023-01-01", days: int = 730, chunk_rows: int = 1_000_000,
    zipf_a: float = 1.0, track_chunk: int = 1 << 20,
) -> dict[str, Any]:
    """Write the log into ``out_dir`` (replaced atomically) and return its summary."""
    if shape in ("seed", "calibrated"):
        rotations = {"rotation_share": CALIBRATED_ROTATION_SHARE,
                     "catalogue_per_listen": CALIBRATED_CATALOGUE_PER_LISTEN} if shape == "calibrated" else {}
        return generate_seed(out_dir, n_listens=n_listens, n_users=n_users, n_tracks=n_tracks,
                             n_clusters=n_clusters, seed=seed, mbid_share=mbid_share,
                             name_dup_share=name_dup_share, start=start, days=days, chunk_rows=chunk_rows,
                             track_chunk=track_chunk, **rotations)
    if shape != "demo":
        raise ValueError(f"shape={shape!r}: expected 'demo', 'seed' or 'calibrated'")
    if n_listens < 1:
        raise ValueError(f"n_listens={n_listens!r} must be >= 1")
    if not 0 <= duplicate_share < 1 or not 0 <= mbid_share <= 1:
        raise ValueError("duplicate_share must lie in [0, 1) and mbid_share in [0, 1]")
    n_users = n_users or int(np.clip(n_listens // 70, 50, 8000))
    n_tracks = n_tracks or max(100, n_listens // 8)
    rng = np.random.default_rng(seed)

    # tracks: a taste cluster each, power-law popularity (a random permutation of ranks)
    track_cluster = rng.integers(0, n_clusters, size=n_tracks)
    popularity = 1.0 / np.power(rng.permutation(n_tracks) + 1.0, zipf_a)
    global_cdf = np.cumsum(popularity) / popularity.sum()
    by_cluster = [np.flatnonzero(track_cluster == c) for c in range(n_clusters)]
    cluster_cdf = [np.cumsum(popularity[t]) / popularity[t].sum() if t.size else None for t in by_cluster]

    # users: a cluster each, heavy-tailed history lengths, an active window inside the period
    user_cluster, lengths, period_us, t0, span, begin = _users(rng, n_users=n_users, n_clusters=n_clusters,
                                                               n_listens=n_listens, duplicate_share=duplicate_share,
                                                               days=days, start=start)

    def draw(users: np.ndarray, own: np.ndarray) -> np.ndarray:
        tracks = np.empty(users.size, dtype=np.int64)
        tracks[~own] = np.searchsorted(global_cdf, rng.random((~own).sum()), side="right")
        clusters = user_cluster[users]
        for c in np.unique(clusters[own]):
            sel = own & (clusters == c)
            pool, cdf = by_cluster[c], cluster_cdf[c]
            if pool.size == 0:
                tracks[sel] = np.searchsorted(global_cdf, rng.random(sel.sum()), side="right")
            else:
                tracks[sel] = pool[np.searchsorted(cdf, rng.random(sel.sum()), side="right")]
        return np.minimum(tracks, n_tracks - 1)

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        written, dups = _write_interactions(tmp / "interactions", rng, lengths=lengths, t0=t0, begin=begin, span=span,
                                            duplicate_share=duplicate_share, chunk_rows=chunk_rows, draw=draw)

        # the track table: names, and a MusicBrainz id for a share of tracks. Names are kept as
        # syllable numbers and spelled a chunk at a time (no per-track strings in one piece)
        n_artists = max(10, n_tracks // 10)
        artist_syl = rng.integers(0, len(_SYLLABLES), size=(n_artists, 2)).astype(np.uint8)
        artist_of = rng.integers(0, n_artists, size=n_tracks).astype(np.int32)
        has_mbid = rng.random(n_tracks) < mbid_share
        title_syl = rng.integers(0, len(_SYLLABLES), size=(n_tracks, 3)).astype(np.uint8)
        no_mbid = np.flatnonzero(~has_mbid)
        n_variants = int(round(name_dup_share * no_mbid.size)) // 2
        pairs = rng.choice(no_mbid, size=(n_variants, 2), replace=False) if n_variants else np.empty((0, 2), int)
        by_b = pairs[np.argsort(pairs[:, 1])] if len(pairs) else pairs
        how_b = np.argsort(pairs[:, 1]) if len(pairs) else np.empty(0, int)  # j of each pair, in b order
        schema = pa.schema([("recording_msid", pa.string()), ("artist_name", pa.string()),
                            ("track_name", pa.string()), ("recording_mbid", pa.string())])
        with pq.ParquetWriter(tmp / "tracks.parquet", schema, compression="snappy") as writer:
            for c0 in range(0, n_tracks, track_chunk):
                ids = np.arange(c0, min(n_tracks, c0 + track_chunk))
                artist = _spell(artist_syl[artist_of[ids]])
                title = _spell(title_syl[ids])
                lo_b, hi_b = np.searchsorted(by_b[:, 1], [ids[0], ids[-1] + 1])
                for (a, b), j in zip(by_b[lo_b:hi_b], how_b[lo_b:hi_b]):
                    artist[b - c0] = _variant(_spell(artist_syl[artist_of[a : a + 1]])[0], j % 3)
                    title[b - c0] = _variant(_spell(title_syl[a : a + 1])[0], (j + 1) % 3)
                mbid = pc.binary_join_element_wise("00000000-0000-4000-8000-", pc.utf8_lpad(
                    pa.array(ids, pa.int64()).cast(pa.string()), width=12, padding="0"), "")
                mbid = pc.if_else(pa.array(has_mbid[ids]), mbid, pa.nulls(ids.size, pa.string()))
                writer.write_table(pa.table([_ids("msid-", ids, 9), pa.array(artist.tolist(), pa.string()),
                                             pa.array(title.tolist(), pa.string()), mbid], schema=schema))
        summary = {
            "listens": written, "duplicates_planted": dups, "users": n_users, "tracks": n_tracks,
            "tracks_with_mbid": int(has_mbid.sum()), "name_variant_pairs": int(len(pairs)),
            "clusters": n_clusters, "seed": seed, "start": start, "days": days,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


SEED_USERS_PER_LISTEN = 1 / 500
SEED_CATALOGUE_PER_LISTEN = 0.22
SEED_ZIPF = 0.97
SEED_DUPLICATE_SHARE = 15_000 / 179_000_000
# the ``calibrated`` shape (issue #20, benchmarks/shape_stats.py): the seed shape with per-user rotations
CALIBRATED_ROTATION_SHARE = 0.75
CALIBRATED_CATALOGUE_PER_LISTEN = 0.6
ROTATION_SCALE, ROTATION_POWER, ROTATION_MIN, ROTATION_EXPONENT = 10.0, 0.3, 5, 0.5
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``x`` (uint64) under ``salt``: a fixed pseudo-random function of a track id."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) * np.uint64(8) + np.uint64(salt & 0xFFFFFFFF) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash_names(ids: np.ndarray, words: int, salt: int) -> pa.Array:
    syl = pa.array(_SYLLABLES.tolist(), pa.string())
    parts = [syl.take(pa.array((_mix(ids, salt + w) % np.uint64(len(_SYLLABLES))).astype(np.int64)))
             for w in range(words)]
    return pc.utf8_title(pc.binary_join_element_wise(*parts, " "))


def _seed_track_names(ids: np.ndarray, n_artists: int, seed: int) -> tuple[pa.Array, pa.Array]:
    """(artist, title) of catalogue tracks: 3-syllable artists (4,096 names) and 5-syllable titles
    (16**5 = 1M), a space of 4.3e9 pairs, so distinct tracks almost never share a name: at the seed's
    ~7M tracks without an MBID, ~6k by the birthday bound. (2 and 3 syllables spelled only 1M pairs,
    and the canonical-key step merged most of the seed's tracks without an MBID into one another.)"""
    artist = _hash_names(_mix(ids, seed * 16 + 1) % np.uint64(n_artists), 3, seed * 16 + 2)
    return artist, _hash_names(ids, 5, seed * 16 + 10)  # salts 10..14: none shared with the MBID draw (9)


def _sample(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1)


def generate_seed(
    out_dir: str | Path, *, n_listens: int, n_users: int | None = None, n_tracks: int | None = None,
    n_clusters: int = 40, seed: int = 0, mbid_share: float = 0.7, name_dup_share: float = 0.02,
    duplicate_share: float = SEED_DUPLICATE_SHARE, start: str = "2023-01-01", days: int = 730,
    chunk_rows: int = 1_000_000, track_chunk: int = 1_000_000, rotation_share: float = 0.0,
    catalogue_per_listen: float = SEED_CATALOGUE_PER_LISTEN,
) -> dict[str, Any]:
    """The ``seed`` shape, or with ``rotation_share`` the ``calibrated`` one (module docstring); ``n_tracks``
    sets the candidate catalogue."""
    if n_listens < 1:
        raise ValueError(f"n_listens={n_listens!r} must be >= 1")
    n_users = n_users or int(np.clip(round(n_listens * SEED_USERS_PER_LISTEN), 50, 8000))
    n_cat = n_tracks or max(1000, int(round(n_listens * catalogue_per_listen)))
    rng = np.random.default_rng([seed, 1])

    # catalogue: a cluster each, Zipf popularity by a random rank; sampled through CDFs (float64)
    cluster = rng.integers(0, n_clusters, size=n_cat).astype(np.int16)
    weight = np.power(rng.permutation(n_cat).astype(np.float64) + 1.0, -SEED_ZIPF)
    global_cdf = np.cumsum(weight)
    global_cdf /= global_cdf[-1]
    by_cluster = np.argsort(cluster, kind="stable").astype(np.int32)  # track ids grouped by cluster
    bounds = np.searchsorted(cluster[by_cluster], np.arange(n_clusters + 1))
    cluster_cdf = weight[by_cluster]
    del weight, cluster
    for c in range(n_clusters):
        seg = cluster_cdf[bounds[c] : bounds[c + 1]]
        np.cumsum(seg, out=seg)
        if seg.size:
            seg /= seg[-1]
    counts = np.zeros(n_cat, dtype=np.int32)

    user_cluster, lengths, period_us, t0, span, begin = _users(rng, n_users=n_users, n_clusters=n_clusters,
                                                               n_listens=n_listens, duplicate_share=duplicate_share,
                                                               days=days, start=start)

    def fresh(users: np.ndarray, own: np.ndarray) -> np.ndarray:
        tracks = np.empty(users.size, dtype=np.int64)
        tracks[~own] = _sample(global_cdf, rng.random(int((~own).sum())))
        clusters = user_cluster[users]
        for c in np.unique(clusters[own]):
            sel = own & (clusters == c)
            a, b = bounds[c], bounds[c + 1]
            if a == b:
                tracks[sel] = _sample(global_cdf, rng.random(int(sel.sum())))
            else:
                tracks[sel] = by_cluster[a + _sample(cluster_cdf[a:b], rng.random(int(sel.sum())))]
        return tracks

    def draw(users: np.ndarray, own: np.ndarray) -> np.ndarray:
        if not rotation_share:
            tracks = fresh(users, own)
        else:
            # a share of each user's listens replay their rotation: R = max(5, round(10 L ** 0.3)) tracks
            # for a history of L listens, drawn as any listen is; its j-th track has weight (j + 1) ** -0.5
            replay = rng.random(users.size) < rotation_share
            tracks = np.empty(users.size, dtype=np.int64)
            tracks[~replay] = fresh(users[~replay], own[~replay])
            first, size = np.unique(users, return_counts=True)
            rot = np.maximum(ROTATION_MIN, np.round(ROTATION_SCALE * np.power(lengths[first], ROTATION_POWER)))
            rot = rot.astype(np.int64)
            rot_users = np.repeat(first, rot)
            rotation = fresh(rot_users, rng.random(rot_users.size) < IN_CLUSTER)
            who = np.repeat(np.arange(first.size), size)[replay]
            # slot by the inverse CDF of the weights (continuous approximation)
            top = np.power(rot[who] + 1.0, 1.0 - ROTATION_EXPONENT) - 1.0
            slot = np.floor(np.power(1.0 + rng.random(who.size) * top, 1.0 / (1.0 - ROTATION_EXPONENT))) - 1.0
            offset = np.concatenate([[0], np.cumsum(rot)[:-1]])
            tracks[replay] = rotation[offset[who] + np.clip(slot, 0, rot[who] - 1).astype(np.int64)]
        ids, cnt = np.unique(tracks, return_counts=True)
        counts[ids] += cnt.astype(np.int32)
        return tracks

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        written, dups = _write_interactions(tmp / "interactions", rng, lengths=lengths, t0=t0, begin=begin, span=span,
                                            duplicate_share=duplicate_share, chunk_rows=chunk_rows, draw=draw)
        del global_cdf, cluster_cdf, by_cluster

        # the heard tracks, a chunk of catalogue ids at a time; names and MBIDs are hashes of the id
        n_artists = max(10, n_cat // 10)
        schema = pa.schema([("recording_msid", pa.string()), ("artist_name", pa.string()),
                            ("track_name", pa.string()), ("recording_mbid", pa.string())])
        n_heard = n_single = n_mbid = n_pairs = 0
        with pq.ParquetWriter(tmp / "tracks.parquet", schema, compression="snappy") as writer:
            for c0 in range(0, n_cat, track_chunk):
                heard = c0 + np.flatnonzero(counts[c0 : c0 + track_chunk])
                if heard.size == 0:
                    continue
                artist, title = _seed_track_names(heard, n_artists, seed)
                has_mbid = (_mix(heard, seed * 16 + 9) >> np.uint64(11)).astype(np.float64) * 2.0**-53 < mbid_share
                no_mbid = np.flatnonzero(~has_mbid)
                n_var = int(round(name_dup_share * no_mbid.size)) // 2
                if n_var:
                    pairs = rng.choice(no_mbid, size=(n_var, 2), replace=False)
                    pairs = pairs[np.argsort(pairs[:, 1])]
                    mask = np.zeros(heard.size, dtype=bool)
                    mask[pairs[:, 1]] = True
                    src_a = artist.take(pa.array(pairs[:, 0])).to_pylist()
                    src_t = title.take(pa.array(pairs[:, 0])).to_pylist()
                    how = n_pairs + np.arange(n_var)
                    artist = pc.replace_with_mask(artist, pa.array(mask), pa.array(
                        [_variant(x, int(h) % 3) for x, h in zip(src_a, how)], pa.string()))
                    title = pc.replace_with_mask(title, pa.array(mask), pa.array(
                        [_variant(x, int(h + 1) % 3) for x, h in zip(src_t, how)], pa.string()))
                mbid = pc.binary_join_element_wise("00000000-0000-4000-8000-", pc.utf8_lpad(
                    pa.array(heard, pa.int64()).cast(pa.string()), width=12, padding="0"), "")
                mbid = pc.if_else(pa.array(has_mbid), mbid, pa.nulls(heard.size, pa.string()))
                writer.write_table(pa.table([_ids("msid-", heard, 9), artist, title, mbid], schema=schema))
                n_heard += heard.size
                n_single += int((counts[heard] == 1).sum())
                n_mbid += int(has_mbid.sum())
                n_pairs += n_var
        summary = {
            "shape": "calibrated" if rotation_share else "seed", "listens": written, "duplicates_planted": dups,
            "users": n_users,
            "tracks": n_heard, "catalogue": n_cat, "single_listen_tracks": n_single,
            "single_listen_share": round(n_single / max(1, n_heard), 4),
            "tracks_with_mbid": n_mbid, "name_variant_pairs": n_pairs,
            "clusters": n_clusters, "seed": seed, "start": start, "days": days,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="pipeline synth", description="Write a synthetic listening log.")
    p.add_argument("--out", required=True)
    p.add_argument("--listens", type=int, default=200_000)
    p.add_argument("--users", type=int)
    p.add_argument("--tracks", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", choices=["demo", "seed", "calibrated"], default="demo",
                   help="demo: the demo's proportions; seed: the seed's ListenBrainz shape scaled to --listens; "
                        "calibrated: the seed shape with listeners' repeat structure matched to real logs")
    a = p.parse_args(argv)
    summary = generate(a.out, shape=a.shape, n_listens=a.listens, n_users=a.users, n_tracks=a.tracks, seed=a.seed)
    print(json.dumps(summary, indent=1))
    return summary
