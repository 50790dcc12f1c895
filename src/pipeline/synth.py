"""A deterministic synthetic listening log shaped like the seed's ListenBrainz data.

Users and tracks belong to taste clusters; a user's listens come mostly from their cluster
(by the tracks' popularity inside it) and the rest from global popularity, so a
personalized model has structure to find (DESIGN.md "Synthetic data"). History lengths are
heavy-tailed (lognormal), track popularity is a power law, about two years of timestamps,
a share of tracks without a MusicBrainz id (some of them spelled two ways), and a small
share of exact duplicate listens.

Written in the ListenBrainz layout the ``listenbrainz`` loader reads::

    <out>/interactions/part-00000.parquet ...   user_id, recording_msid, timestamp (UTC)
    <out>/tracks.parquet                        recording_msid, artist_name, track_name, recording_mbid
    <out>/summary.json

Generation streams in chunks of users, so memory stays bounded at any size; the same
arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import unicodedata
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


def _names(rng: np.random.Generator, n: int, words: int) -> np.ndarray:
    parts = _SYLLABLES[rng.integers(0, len(_SYLLABLES), size=(n, words))]
    return np.array([" ".join(p).title() for p in parts.reshape(n, -1)], dtype=object)


def _variant(name: str, how: int) -> str:
    """The same name spelled differently: decomposed accents, case, extra spaces."""
    if how == 0:
        return unicodedata.normalize("NFD", name) + " "
    if how == 1:
        return "  " + name.upper()
    return "   ".join(name.split()) + "\t"


def generate(
    out_dir: str | Path, *, n_listens: int = 200_000, n_users: int | None = None, n_tracks: int | None = None,
    n_clusters: int = 40, seed: int = 0, duplicate_share: float = 0.005, mbid_share: float = 0.7,
    name_dup_share: float = 0.02, start: str = "2023-01-01", days: int = 730, chunk_rows: int = 1_000_000,
    zipf_a: float = 1.0,
) -> dict[str, Any]:
    """Write the log into ``out_dir`` (replaced atomically) and return its summary."""
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
    user_cluster = rng.integers(0, n_clusters, size=n_users)
    n_base = int(round(n_listens / (1 + duplicate_share)))
    weights = rng.lognormal(0.0, 1.4, size=n_users)
    lengths = 1 + rng.multinomial(max(0, n_base - n_users), weights / weights.sum())
    period_us = days * 86_400 * 1_000_000
    t0 = int(dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
    span = rng.uniform(0.05, 1.0, size=n_users) * period_us
    begin = rng.uniform(0, 1, size=n_users) * (period_us - span)

    out_dir = Path(out_dir)
    written = dups = 0
    with atomic_dir(out_dir) as tmp:
        (tmp / "interactions").mkdir(parents=True)
        cum = np.concatenate([[0], np.cumsum(lengths)])
        lo = part = 0
        while lo < n_users:
            hi = int(min(n_users, max(lo + 1, np.searchsorted(cum, cum[lo] + chunk_rows, side="left"))))
            users = np.repeat(np.arange(lo, hi), lengths[lo:hi])
            n = users.size
            tracks = np.empty(n, dtype=np.int64)
            own = rng.random(n) < IN_CLUSTER
            tracks[~own] = np.searchsorted(global_cdf, rng.random((~own).sum()), side="right")
            clusters = user_cluster[users]
            for c in np.unique(clusters[own]):
                sel = own & (clusters == c)
                pool, cdf = by_cluster[c], cluster_cdf[c]
                if pool.size == 0:
                    tracks[sel] = np.searchsorted(global_cdf, rng.random(sel.sum()), side="right")
                else:
                    tracks[sel] = pool[np.searchsorted(cdf, rng.random(sel.sum()), side="right")]
            tracks = np.minimum(tracks, n_tracks - 1)
            ts = t0 + (begin[users] + rng.random(n) * span[users]).astype(np.int64)
            n_dup = int(rng.binomial(n, duplicate_share)) if duplicate_share else 0
            if n_dup:
                pick = rng.choice(n, size=n_dup, replace=False)
                users, tracks, ts = (np.concatenate([a, a[pick]]) for a in (users, tracks, ts))
            order = np.lexsort((tracks, ts, users))
            table = pa.table({
                "user_id": _ids("u", users[order], 6),
                "recording_msid": _ids("msid-", tracks[order], 9),
                "timestamp": pa.array(ts[order], pa.timestamp("us", tz="UTC")),
            })
            pq.write_table(table, tmp / "interactions" / f"part-{part:05d}.parquet", compression="snappy")
            written += table.num_rows
            dups += n_dup
            lo, part = hi, part + 1

        # the track table: names, and a MusicBrainz id for a share of tracks
        n_artists = max(10, n_tracks // 10)
        artist_names = _names(rng, n_artists, 2)
        artist_of = rng.integers(0, n_artists, size=n_tracks)
        has_mbid = rng.random(n_tracks) < mbid_share
        artist = artist_names[artist_of]
        title = _names(rng, n_tracks, 3)
        no_mbid = np.flatnonzero(~has_mbid)
        n_variants = int(round(name_dup_share * no_mbid.size)) // 2
        pairs = rng.choice(no_mbid, size=(n_variants, 2), replace=False) if n_variants else np.empty((0, 2), int)
        for j, (a, b) in enumerate(pairs):
            artist[b], title[b] = _variant(artist[a], j % 3), _variant(title[a], (j + 1) % 3)
        mbid = pc.binary_join_element_wise("00000000-0000-4000-8000-", pc.utf8_lpad(
            pa.array(np.arange(n_tracks), pa.int64()).cast(pa.string()), width=12, padding="0"), "")
        mbid = pc.if_else(pa.array(has_mbid), mbid, pa.nulls(n_tracks, pa.string()))
        pq.write_table(pa.table({
            "recording_msid": _ids("msid-", np.arange(n_tracks), 9),
            "artist_name": pa.array(artist.tolist(), pa.string()),
            "track_name": pa.array(title.tolist(), pa.string()),
            "recording_mbid": mbid,
        }), tmp / "tracks.parquet", compression="snappy")
        summary = {
            "listens": written, "duplicates_planted": dups, "users": n_users, "tracks": n_tracks,
            "tracks_with_mbid": int(has_mbid.sum()), "name_variant_pairs": int(len(pairs)),
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
    a = p.parse_args(argv)
    summary = generate(a.out, n_listens=a.listens, n_users=a.users, n_tracks=a.tracks, seed=a.seed)
    print(json.dumps(summary, indent=1))
    return summary
