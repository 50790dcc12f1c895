"""The single-machine engine: ``implicit``'s ALS with the same configuration surface as Spark.

Confidence is the same in both engines: ``c = 1 + alpha * f(plays)`` with ``f`` the identity
(``linear``) or ``log1p`` (``log``), preference 1 on every played track. ``implicit`` reads the
value of each stored entry as the whole confidence ``c`` (its solver adds ``(c - 1) y yᵀ`` to
``YᵀY`` and ``c y`` to the right-hand side), so :func:`confidence` hands it ``1 + alpha * f``
with the library's own ``alpha`` left at 1; Spark is handed ``f`` and applies ``1 + alpha * f``
itself (``pyspark.ml.recommendation.ALS``, implicit mode).

Regularisation is *not* the same number: Spark scales ``regParam`` by the count of ratings of
the user (item) being solved (ALS-WR: ``λ n_u``), ``implicit`` uses ``λ`` as given. Same
confidence, different λ: ``reg_param`` r on Spark equals ``implicit`` with ``r * n_u`` for
a user of ``n_u`` tracks, and ``implicit`` offers no per-row λ, so the engines are tuned on
their own ``reg_param`` grids (``tests/test_confidence_parity.py`` checks both statements).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.config import AlsConfig
from pipeline.models.base import FactorModel

__all__ = ["fit", "confidence"]


def confidence(train: sp.csr_matrix, cfg: AlsConfig) -> sp.csr_matrix:
    """The confidence matrix ``1 + alpha * f(plays)`` on the played entries (float32, CSR)."""
    c = sp.csr_matrix(train, dtype=np.float32, copy=True)
    c.eliminate_zeros()
    if cfg.confidence == "log":
        c.data = np.log1p(c.data)
    c.data = (1.0 + cfg.alpha * c.data).astype(np.float32)
    return c


def fit(train: sp.csr_matrix, cfg: AlsConfig, *, threads: int = 0) -> FactorModel:
    """Fit on a user x track matrix of summed play counts."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=cfg.rank, regularization=cfg.reg_param, alpha=1.0, iterations=cfg.max_iter,
        random_state=cfg.seed, num_threads=threads, calculate_training_loss=False,
    )
    model.fit(confidence(train, cfg), show_progress=False)
    mask = np.bincount(train.indices, minlength=train.shape[1]) > 0  # tracks with a train entry, without a CSC copy
    return FactorModel(np.asarray(model.user_factors), np.asarray(model.item_factors), mask, cfg.params())
