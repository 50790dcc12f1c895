"""LightFM with a ranking loss (WARP by default), user and item identities only, no side features.

``import lightfm`` comes from the ``rectools-lightfm`` distribution: the same package and API
as ``lightfm`` 1.17, whose own sdist no longer builds (its setup.py fails under current
setuptools; see benchmarks/results/engines.md). Every played track is a positive; the
transformed plays are the sample weights. The score is ``<u, i> + b_i + b_u``: item vectors
get the item bias as an extra column and user vectors a constant 1, so ``<user, item>`` ranks
as LightFM's ``predict`` does (``b_u`` shifts a user's whole row) and the result is a plain
:class:`FactorModel`. Hogwild SGD: ``threads=1`` (the default) is reproducible.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.models.base import FactorModel
from pipeline.models.configs import LightFmConfig
from pipeline.models.inputs import catalogue_mask, transform

__all__ = ["fit"]


def fit(train: sp.csr_matrix, cfg: LightFmConfig, *, threads: int = 1) -> FactorModel:
    """Fit on a user x track matrix of summed play counts."""
    from lightfm import LightFM

    weights = transform(train, cfg.transform).tocoo()
    positives = sp.coo_matrix((np.ones_like(weights.data), (weights.row, weights.col)), shape=weights.shape)
    model = LightFM(no_components=cfg.components, loss=cfg.loss, learning_rate=cfg.learning_rate,
                    item_alpha=cfg.alpha, user_alpha=cfg.alpha, max_sampled=cfg.max_sampled, random_state=cfg.seed)
    model.fit(positives, sample_weight=weights, epochs=cfg.epochs, num_threads=threads)
    item_bias, item_emb = model.get_item_representations()
    _, user_emb = model.get_user_representations()
    users = np.hstack([user_emb, np.ones((user_emb.shape[0], 1))]).astype(np.float32)
    items = np.hstack([item_emb, item_bias[:, None]]).astype(np.float32)
    return FactorModel(users, items, catalogue_mask(train), cfg.params())
