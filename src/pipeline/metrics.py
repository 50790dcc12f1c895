"""Ranking metrics exactly as docs/contracts.md "Evaluation" defines them.

For a ranked list p (top K) and a relevant set R (a user's distinct evaluation tracks):

- Precision@K = |p ∩ R| / K
- Recall@K    = |p ∩ R| / |R|
- MAP@K       = (1 / min(|R|, K)) · Σ_{j<K, p_j∈R} hits(≤j) / (j+1)
- NDCG@K      = Σ_{j<K} [p_j∈R] / log2(j+2)  ÷  Σ_{j<min(|R|,K)} 1 / log2(j+2)
- HitRate@K   = [|p ∩ R| > 0];   MRR@K = 1 / (rank of the first hit), 0 if none
- coverage@K  = distinct tracks recommended / catalogue size

Each is averaged over the evaluated users (those with |R| >= 1). These equal Spark's
``RankingMetrics`` (precisionAt, recallAt, meanAveragePrecisionAt, ndcgAt) on the same lists.
The single-list functions are the readable reference; :func:`ranking_metrics` is the
vectorized version the pipeline uses.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = [
    "precision_at_k", "recall_at_k", "average_precision_at_k", "ndcg_at_k", "hit_at_k",
    "reciprocal_rank_at_k", "ranking_metrics", "per_user_metrics", "PER_USER",
]

PER_USER = ("precision", "recall", "map", "ndcg", "hit_rate", "mrr")  # averaged over users (coverage is not)


def _hits(ranked: Sequence[int], relevant: Collection[int], k: int) -> list[bool]:
    rel = set(relevant)
    return [p in rel for p in list(ranked)[:k]]


def precision_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """|p ∩ R| / K (K, not len(p): a short list is penalised)."""
    return sum(_hits(ranked, relevant, k)) / k


def recall_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """|p ∩ R| / |R|."""
    return sum(_hits(ranked, relevant, k)) / len(set(relevant))


def average_precision_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """(1 / min(|R|, K)) · Σ_{j<K, p_j∈R} hits(≤j) / (j+1)."""
    total, hits = 0.0, 0
    for j, hit in enumerate(_hits(ranked, relevant, k)):
        if hit:
            hits += 1
            total += hits / (j + 1)
    return total / min(len(set(relevant)), k)


def ndcg_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Binary-gain DCG over the top K divided by the ideal DCG over min(|R|, K) places."""
    dcg = sum(1.0 / np.log2(j + 2) for j, hit in enumerate(_hits(ranked, relevant, k)) if hit)
    ideal = sum(1.0 / np.log2(j + 2) for j in range(min(len(set(relevant)), k)))
    return float(dcg / ideal)


def hit_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """1 if any of the top K is relevant, else 0."""
    return float(any(_hits(ranked, relevant, k)))


def reciprocal_rank_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """1 / (1-based rank of the first relevant item in the top K), 0 if none."""
    for j, hit in enumerate(_hits(ranked, relevant, k)):
        if hit:
            return 1.0 / (j + 1)
    return 0.0


def per_user_metrics(recs: np.ndarray, truth: sp.csr_matrix, k: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(evaluated rows, each metric of :data:`PER_USER` per evaluated row) — what :func:`ranking_metrics` averages.

    ``recs``: int array (n_users, >= k) of ranked item indices, -1 for padding (never a hit).
    ``truth``: CSR (n_users, n_items) whose stored entries mark relevant items (rows aligned with
    ``recs``). A row is evaluated when it has at least one relevant item.
    """
    recs = np.asarray(recs)
    if recs.ndim != 2 or recs.shape[0] != truth.shape[0]:
        raise ValueError(f"recs has shape {recs.shape}; expected ({truth.shape[0]}, >= {k})")
    if recs.shape[1] < k:
        recs = np.pad(recs, ((0, 0), (0, k - recs.shape[1])), constant_values=-1)
    recs = recs[:, :k].astype(np.int64)
    truth = sp.csr_matrix(truth, copy=True)
    truth.sum_duplicates()
    truth.eliminate_zeros()
    truth.sort_indices()
    n_rel = np.diff(truth.indptr)
    users = np.flatnonzero(n_rel > 0)
    if users.size == 0:
        return users, {name: np.zeros(0) for name in PER_USER}
    recs, n_rel = recs[users], n_rel[users]
    truth = truth[users]
    m = np.int64(truth.shape[1] + 1)
    rows = np.repeat(np.arange(users.size, dtype=np.int64), np.diff(truth.indptr))
    keys = rows * m + truth.indices.astype(np.int64)  # sorted: rows ascending, indices sorted per row
    want = np.arange(users.size, dtype=np.int64)[:, None] * m + np.where(recs >= 0, recs, m - 1)
    pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
    hits = (keys[pos] == want) & (recs >= 0)

    n_hits = hits.sum(axis=1)
    cum = np.cumsum(hits, axis=1)
    ranks = np.arange(1, k + 1)
    discounts = 1.0 / np.log2(ranks + 1)
    ideal = np.cumsum(discounts)[np.minimum(n_rel, k) - 1]
    first = np.where(n_hits > 0, hits.argmax(axis=1) + 1, 0)
    return users, {
        "precision": n_hits / k,
        "recall": n_hits / n_rel,
        "map": (hits * cum / ranks).sum(axis=1) / np.minimum(n_rel, k),
        "ndcg": (hits * discounts).sum(axis=1) / ideal,
        "hit_rate": (n_hits > 0).astype(np.float64),
        "mrr": np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0),
    }


def ranking_metrics(recs: np.ndarray, truth: sp.csr_matrix, k: int, *, n_items: int | None = None) -> dict[str, float]:
    """All metrics @k, averaged over the rows of ``truth`` with at least one relevant item.

    Arguments as :func:`per_user_metrics`; ``n_items`` is the catalogue size for coverage
    (default ``truth.shape[1]``).
    """
    users, per_user = per_user_metrics(recs, truth, k)
    if users.size == 0:
        return {**{f"{m}_at_{k}": 0.0 for m in (*PER_USER, "coverage")}, "n_users": 0}
    out = {f"{name}_at_{k}": float(v.mean()) for name, v in per_user.items()}
    top = np.asarray(recs)[users, :k]
    catalogue = n_items if n_items is not None else truth.shape[1]
    recommended = np.unique(top[top >= 0]).size
    out[f"coverage_at_{k}"] = recommended / catalogue if catalogue else 0.0
    out["n_users"] = int(users.size)
    return out
