"""Exact top-K over users, distributed by Spark: for evaluation when the sweep runs on a cluster.

The item factors (the train catalogue only) are broadcast once; users are cut into blocks,
each executor ranks its blocks with the same blocked matrix product + partition as
:func:`pipeline.topk.topk`, and only the (users x K) rankings come back to the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pipeline.models import FactorModel

__all__ = ["is_cluster", "recommend_distributed"]


def is_cluster(spark: "SparkSession | None") -> bool:
    """True when the session's master is not ``local``: a standalone, YARN or Kubernetes cluster."""
    return spark is not None and not spark.sparkContext.master.startswith("local")


def _rank_block(block: tuple[np.ndarray, np.ndarray, Any], items: np.ndarray, catalogue: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.topk import topk

    rows, factors, exclude = block
    ranked = topk(factors, items, k, exclude=exclude, threads=1)
    return rows, np.where(ranked >= 0, catalogue[np.maximum(ranked, 0)], -1).astype(np.int32)


def recommend_distributed(spark: "SparkSession", model: "FactorModel", users: np.ndarray, k: int, *,
                          exclude: sp.csr_matrix | None = None, block_users: int = 512) -> np.ndarray:
    """Same answer as ``model.recommend(users, k, exclude=...)``, computed on the executors."""
    users = np.asarray(users)
    catalogue = np.flatnonzero(model.item_mask)
    sc = spark.sparkContext
    items = sc.broadcast(np.ascontiguousarray(model.item_factors[catalogue], dtype=np.float32))
    cat = sc.broadcast(catalogue)
    blocks = []
    for start in range(0, len(users), block_users):
        rows = np.arange(start, min(start + block_users, len(users)))
        ex = None if exclude is None else exclude[users[rows]][:, catalogue]
        blocks.append((rows, np.asarray(model.user_factors[users[rows]], dtype=np.float32), ex))
    out = np.full((len(users), k), -1, dtype=np.int32)
    n_slices = max(1, min(len(blocks), sc.defaultParallelism * 2))
    for rows, ranked in sc.parallelize(blocks, n_slices).map(lambda b: _rank_block(b, items.value, cat.value, k)).collect():
        out[rows] = ranked
    items.destroy()
    cat.destroy()
    return out
