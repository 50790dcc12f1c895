"""One factory for the engine families beyond popularity and implicit-feedback ALS.

``fit(train, cfg)`` picks the family from the config's class, so a sweep task needs only the
config: ``engines.fit(data.train, ItemKnnConfig(similarity="bm25"))``. Spark families need
``spark=``; the others run on the driver with ``threads`` threads (1 keeps SGD reproducible).
"""

from __future__ import annotations

import importlib
from typing import Any

import scipy.sparse as sp

from pipeline.models.base import Recommender

__all__ = ["FAMILIES", "SPARK_FAMILIES", "fit"]

FAMILIES = {  # family -> module with fit(train, cfg, ...)
    "item_knn": "pipeline.models.item_knn",
    "bpr": "pipeline.models.bpr",
    "lmf": "pipeline.models.lmf",
    "lightfm": "pipeline.models.lightfm_rank",
    "als_explicit": "pipeline.models.als_explicit",
    "neural_mf": "pipeline.models.neural_mf",  # needs torch (optional)
}
SPARK_FAMILIES = frozenset({"als_explicit"})


def fit(train: sp.csr_matrix, cfg: Any, *, spark: Any = None, threads: int = 1) -> Recommender:
    """Fit ``cfg``'s family on a user x track matrix of summed play counts."""
    family = getattr(cfg, "family", None)
    if family not in FAMILIES:
        raise ValueError(f"{type(cfg).__name__} is not an engine config; expected one of the configs in "
                         f"pipeline.models.configs ({', '.join(FAMILIES)})")
    module = importlib.import_module(FAMILIES[family])
    if family in SPARK_FAMILIES:
        if spark is None:
            raise ValueError(f"family {family!r} runs on Spark; pass spark=")
        return module.fit(train, cfg, spark=spark)
    return module.fit(train, cfg, threads=threads)
