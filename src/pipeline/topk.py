"""Exact top-K by blocked matrix products and partial selection.

Scores for a block of users are one ``float32`` matrix product; ``np.argpartition`` keeps
the K best per row, and only those K are sorted. Rankings are deterministic: descending
score, ties broken by item index ascending (also at the K-th place). Excluded items score
``-inf`` and never appear; a row with fewer than K eligible items is padded with -1.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

__all__ = ["topk", "topk_for_scores", "rank_rows"]

BLOCK_BYTES = 128 * 2**20


def rank_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` column indices of each row of ``scores`` (modified in place is fine), -1 padded."""
    n, m = scores.shape
    kk = min(k, m)
    out = np.full((n, k), -1, dtype=np.int32)
    if kk == 0 or n == 0:
        return out
    if kk < m:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    # sort the K candidates by (-score, index)
    order = np.lexsort((part, -vals), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    if kk < m:
        # ties at the K-th place: argpartition may have kept a higher index than a tied one it left out
        kth = vals[:, -1:]
        tied_rows = np.flatnonzero(((scores >= kth).sum(axis=1) > kk) & np.isfinite(kth[:, 0]))
        for r in tied_rows:
            row = scores[r]
            idx = np.lexsort((np.arange(m), -row))[:kk]
            part[r], vals[r] = idx, row[idx]
    part = np.where(np.isneginf(vals), -1, part)
    out[:, :kk] = part
    return out


def _exclude(block: np.ndarray, exclude: sp.csr_matrix | None, start: int) -> None:
    if exclude is None:
        return
    rows = exclude[start : start + block.shape[0]]
    r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    block[r, rows.indices] = -np.inf


def topk(
    user_factors: np.ndarray, item_factors: np.ndarray, k: int, *,
    exclude: sp.csr_matrix | None = None, block_size: int | None = None, threads: int | None = None,
) -> np.ndarray:
    """Top-``k`` items by inner product for every row of ``user_factors`` (int32, -1 padded).

    ``exclude`` (users x items, aligned with ``user_factors``) marks items to leave out
    (``exclude_seen``). Blocks of ``block_size`` users keep the score matrix near 128 MB.
    """
    if k < 1:
        raise ValueError(f"k={k!r}: top-K needs k >= 1")
    users = np.ascontiguousarray(user_factors, dtype=np.float32)
    items = np.ascontiguousarray(item_factors, dtype=np.float32)
    n, m = users.shape[0], items.shape[0]
    if exclude is not None and exclude.shape != (n, m):
        raise ValueError(f"exclude has shape {exclude.shape}, expected (users, items) = {(n, m)}")
    bs = block_size or max(1, BLOCK_BYTES // max(1, 4 * m))
    out = np.empty((n, k), dtype=np.int32)
    items_t = items.T.copy()

    def run(start: int) -> None:
        block = users[start : start + bs] @ items_t
        _exclude(block, exclude, start)
        out[start : start + bs] = rank_rows(block, k)

    starts = range(0, n, bs)
    workers = threads or min(len(starts), os.cpu_count() or 1, 4)
    if workers <= 1:
        for s in starts:
            run(s)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    return out


def topk_for_scores(
    scores: np.ndarray, k: int, *, n_users: int, exclude: sp.csr_matrix | None = None
) -> np.ndarray:
    """One shared score vector (a popularity model): the same ranked list for each of ``n_users``.

    With ``exclude`` each user's own excluded items are skipped (the next ones move up).
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(scores.size), -scores))
    if exclude is None:
        head = np.full(k, -1, dtype=np.int32)
        head[: min(k, order.size)] = order[:k]
        return np.broadcast_to(head, (n_users, k)).copy()
    out = np.full((n_users, k), -1, dtype=np.int32)
    depth = min(order.size, k + int(np.diff(exclude.indptr).max(initial=0)))
    head = order[:depth]
    for u in range(n_users):
        seen = exclude.indices[exclude.indptr[u] : exclude.indptr[u + 1]]
        keep = head[~np.isin(head, seen)][:k] if seen.size else head[:k]
        out[u, : keep.size] = keep
    return out
