"""Logistic matrix factorisation (``implicit.cpu.lmf``, Johnson 2014): P(play) = σ(<x_u, y_i> + b_u + b_i).

The transformed play counts weigh the positives; ``neg_prop`` unplayed tracks per played one
are sampled as negatives. The library's factors end in a bias column and a constant 1 column
(in opposite orders for users and items), so ``<user, item>`` is the full logit and the
result is a plain :class:`FactorModel`. Hogwild SGD: ``threads=1`` (the default) is reproducible.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.models.base import FactorModel
from pipeline.models.configs import LmfConfig
from pipeline.models.inputs import catalogue_mask, transform

__all__ = ["fit"]


def fit(train: sp.csr_matrix, cfg: LmfConfig, *, threads: int = 1) -> FactorModel:
    """Fit on a user x track matrix of summed play counts."""
    from implicit.cpu.lmf import LogisticMatrixFactorization

    model = LogisticMatrixFactorization(
        factors=cfg.factors, learning_rate=cfg.learning_rate, regularization=cfg.regularization,
        iterations=cfg.iterations, neg_prop=cfg.neg_prop, num_threads=threads, random_state=cfg.seed,
    )
    model.fit(transform(train, cfg.transform), show_progress=False)
    return FactorModel(np.asarray(model.user_factors), np.asarray(model.item_factors), catalogue_mask(train),
                       cfg.params())
