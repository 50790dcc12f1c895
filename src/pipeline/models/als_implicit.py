"""The single-machine engine: ``implicit``'s ALS with the same configuration surface.

Confidence follows the same definition as Spark: ``1 + alpha * rating`` (``implicit``
takes the confidence-minus-one matrix, so we pass ``alpha * rating``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.config import AlsConfig
from pipeline.models.base import FactorModel

__all__ = ["fit"]


def fit(train: sp.csr_matrix, cfg: AlsConfig, *, threads: int = 0) -> FactorModel:
    """Fit on a user x track matrix of summed play counts."""
    from implicit.cpu.als import AlternatingLeastSquares

    ratings = train.astype(np.float32).copy()
    if cfg.confidence == "log":
        ratings.data = np.log1p(ratings.data)
    ratings.data *= cfg.alpha
    model = AlternatingLeastSquares(
        factors=cfg.rank, regularization=cfg.reg_param, alpha=1.0, iterations=cfg.max_iter,
        random_state=cfg.seed, num_threads=threads, calculate_training_loss=False,
    )
    model.fit(ratings, show_progress=False)
    mask = np.diff(train.tocsc().indptr) > 0
    return FactorModel(np.asarray(model.user_factors), np.asarray(model.item_factors), mask, cfg.params())
