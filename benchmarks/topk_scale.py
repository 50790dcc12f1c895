"""Exact top-100 at the seed's scale: 8,000 users x 23M tracks at rank 25 (1.84e11 scores).

    flock /tmp/bench.lock .venv/bin/python benchmarks/topk_scale.py [--items 23000000] [--users 8000]
        [--subset-users 256] [--full]

Factors are shaped like implicit-ALS factors on listening data, not noise: 40 taste clusters
with a unit centroid each; an item is its cluster's centroid plus Gaussian noise (sd 0.6 per
coordinate, relative to a unit centroid spread over 25 dimensions), scaled to a norm that grows
with its popularity (Zipf ranks, norm ~ 0.05 + popularity^0.35, normalised to at most 1, so the
long tail of single-listen tracks has small vectors as in a real fit). Popularity ranks are a
random permutation of item ids (the hard case for a running threshold: on ingested data the
id map gives early ids to early, mostly popular, tracks). Users: a cluster each, centroid
plus noise, lognormal norms. Everything float32, generated in chunks (the item matrix,
2.3 GB at 23M x 25, is the only large array).

Rows of the printed table, all measured in this run on the same factors:
  * the previous implementation (one matrix product of a user block with the whole catalogue,
    then ``rank_rows`` partition; at 23M items its block is one user) on ``--subset-users``
    users, and the new one on the same users. Both are exact over the float32 scores their
    BLAS calls return; BLAS rounds a float32 product differently at different block shapes
    (so did the previous code between catalogue sizes), which can swap items whose scores
    agree to float32 precision: the last column says "identical", or how many users differ
    and the largest float64 score gap between the lists position by position;
  * both again at the README's models-benchmark shape (8,000 users x 95,274 tracks);
  * with ``--full``, the new one on every user over every item (wall time and peak RSS).

"CPU s" is this process's CPU time; "G scores / 2 CPU s" is the rate two uncontended cores
would give, which reads through other jobs sharing the machine (wall-clock rates do not).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, table  # noqa: E402

from pipeline.topk import rank_rows, topk  # noqa: E402

RANK, CLUSTERS = 25, 40


def factors(n_items: int, n_users: int, seed: int = 0, chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((CLUSTERS, RANK)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    pop_rank = rng.permutation(n_items).astype(np.float32) + 1.0
    items = np.empty((n_items, RANK), dtype=np.float32)
    for lo in range(0, n_items, chunk):
        hi = min(n_items, lo + chunk)
        c = rng.integers(0, CLUSTERS, size=hi - lo)
        v = centroids[c] + rng.standard_normal((hi - lo, RANK), dtype=np.float32) * np.float32(0.6 / np.sqrt(RANK))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        norm = 0.05 + np.power(1.0 / pop_rank[lo:hi], 0.35)
        items[lo:hi] = v * (norm / 1.05)[:, None]
    del pop_rank
    c = rng.integers(0, CLUSTERS, size=n_users)
    users = centroids[c] + rng.standard_normal((n_users, RANK), dtype=np.float32) * np.float32(0.8 / np.sqrt(RANK))
    users *= rng.lognormal(0.0, 0.5, size=(n_users, 1)).astype(np.float32)
    return users.astype(np.float32), items


def previous_topk(users: np.ndarray, items: np.ndarray, k: int, threads: int = 2) -> np.ndarray:
    """The implementation this replaces (commit ee3947c), kept verbatim in behaviour:
    blocks of users sized to a 32 MB score matrix against a transposed copy of all items."""
    from threadpoolctl import threadpool_limits

    n, m = users.shape[0], items.shape[0]
    bs = max(1, (32 * 2**20) // max(1, 4 * m))
    out = np.empty((n, k), dtype=np.int32)
    items_t = items.T.copy()

    def run(start: int) -> None:
        out[start : start + bs] = rank_rows(users[start : start + bs] @ items_t, k)

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(0, n, bs)))
    return out


def agreement(old: np.ndarray, new: np.ndarray, users: np.ndarray, items: np.ndarray) -> str:
    """"identical", or how the lists differ: float32 products rounded differently by BLAS at other block
    shapes reorder near-ties; position by position the float64 scores of both lists must then agree."""
    bad = np.flatnonzero((old != new).any(axis=1))
    if bad.size == 0:
        return "identical"
    u = users[bad].astype(np.float64)
    s_old = np.einsum("ij,ikj->ik", u, items[old[bad]].astype(np.float64))
    s_new = np.einsum("ij,ikj->ik", u, items[new[bad]].astype(np.float64))
    gap = float(np.abs(s_old - s_new).max())
    return f"{bad.size} users differ at near-ties, max score gap {gap:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=23_000_000)
    ap.add_argument("--users", type=int, default=8000)
    ap.add_argument("--subset-users", type=int, default=64)
    ap.add_argument("--small-items", type=int, default=95_274)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--full", action="store_true", help="also every user over every item")
    a = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    with measure() as m_gen:
        users, items = factors(a.items, a.users)
    print(f"factors: {a.users:,} users, {a.items:,} items, rank {RANK}: {m_gen.seconds:.1f} s, "
          f"{items.nbytes / 2**30:.2f} GiB items")
    rows = []

    cpu = [time.process_time()]

    def row(what: str, n_users: int, n_items: int, m, same: str = "") -> None:
        scores = n_users * n_items
        used, cpu[0] = time.process_time() - cpu[0], time.process_time()
        rows.append({"what": what, "users": f"{n_users:,}", "items": f"{n_items:,}", "seconds": m.seconds,
                     "G scores/s": scores / m.seconds / 1e9, "CPU s": used,
                     "G scores / 2 CPU s": 2 * scores / used / 1e9, "peak MB": m.peak_mb, "same result": same})

    sub = users[: a.subset_users]
    cpu[0] = time.process_time()
    with measure() as m_old:
        old = previous_topk(sub, items, a.k)
    row("previous: matmul with all items + partition", len(sub), a.items, m_old)
    with measure() as m_new:
        new = topk(sub, items, a.k)
    row("new: item blocks + running threshold", len(sub), a.items, m_new, agreement(old, new, sub, items))
    old_sub = old
    del old, new

    small = items[: a.small_items]
    cpu[0] = time.process_time()
    with measure() as m_old:
        old = previous_topk(users, small, a.k)
    row("previous: matmul with all items + partition", len(users), a.small_items, m_old)
    with measure() as m_new:
        new = topk(users, small, a.k)
    row("new: item blocks + running threshold", len(users), a.small_items, m_new, agreement(old, new, users, small))
    del old, new

    if a.full:
        cpu[0] = time.process_time()
        with measure() as m_full:
            full = topk(users, items, a.k)
        t_check = time.process_time()
        same = "first users vs previous: " + agreement(old_sub, full[: a.subset_users], sub, items)
        cpu[0] += time.process_time() - t_check
        row("new, every user over every item", len(users), a.items, m_full, same)
    print(table(rows, ["what", "users", "items", "seconds", "G scores/s", "CPU s", "G scores / 2 CPU s",
                       "peak MB", "same result"]))
    total = a.users * a.items
    best = max(r["G scores/s"] for r in rows if r["what"].startswith("new") and r["items"] == f"{a.items:,}")
    print(f"\n{a.users:,} x {a.items:,} = {total:.3g} scores: {total / best / 1e9 / 60:.1f} min at the best "
          f"new rate measured over {a.items:,} items ({best:.2f} G scores/s)")


if __name__ == "__main__":
    main()
