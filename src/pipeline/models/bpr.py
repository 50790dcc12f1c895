"""Bayesian personalised ranking (``implicit.cpu.bpr``): pairwise SGD on played vs unplayed tracks.

BPR reads which tracks a user played, not how often, so it has no input transform. The
library's factors carry an item bias in their last column (users hold a constant 1 there), so
``<user, item>`` is the full score and the result is a plain :class:`FactorModel`.

SGD over several threads is Hogwild (unsynchronised updates): only ``threads=1`` gives the
same factors for the same seed, and that is the default.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.models.base import FactorModel
from pipeline.models.configs import BprConfig
from pipeline.models.inputs import catalogue_mask, transform

__all__ = ["fit"]


def fit(train: sp.csr_matrix, cfg: BprConfig, *, threads: int = 1) -> FactorModel:
    """Fit on a user x track matrix of summed play counts."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    model = BayesianPersonalizedRanking(
        factors=cfg.factors, learning_rate=cfg.learning_rate, regularization=cfg.regularization,
        iterations=cfg.iterations, num_threads=threads, random_state=cfg.seed, verify_negative_samples=True,
    )
    model.fit(transform(train, "binary"), show_progress=False)
    return FactorModel(np.asarray(model.user_factors), np.asarray(model.item_factors), catalogue_mask(train),
                       cfg.params())
