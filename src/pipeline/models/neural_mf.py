"""Neural MF: the generalised-MF branch of neural collaborative filtering (He et al. 2017), in torch.

score(u, i) = σ(hᵀ (p_u ⊙ q_i) + b_i), trained with binary cross-entropy on every played track
(label 1) and ``negatives`` uniformly sampled unplayed catalogue tracks per played one (label
0; a sample that hits a played track is dropped), shuffled into mini-batches, Adam. The sigmoid
is monotone, so ranking by it equals ranking by ``<[p_u, 1], [h ⊙ q_i, b_i]>``: the result is
a plain :class:`FactorModel`, served like ALS. NCF's MLP branch is left out for that reason.

torch is an optional extra (not in requirements.txt): ``pip install torch==2.13.0`` (CPU
wheel, 192 MB, ~755 MB installed; see benchmarks/results/engines.md). Without it this engine
raises an ImportError that says so, and its tests skip.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.models.base import FactorModel
from pipeline.models.configs import NeuralMfConfig
from pipeline.models.inputs import catalogue_mask

__all__ = ["fit"]


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("the neural_mf engine needs torch, an optional extra: pip install torch==2.13.0") from exc
    return torch


def _epoch_pairs(train: sp.csr_matrix, catalogue: np.ndarray, negatives: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, labels) of one epoch, shuffled: every positive and its sampled negatives."""
    pos = train.tocoo()
    neg_users = np.repeat(pos.row, negatives)
    neg_items = catalogue[rng.integers(0, catalogue.size, size=neg_users.size)]
    played = set((pos.row.astype(np.int64) * train.shape[1] + pos.col).tolist())
    keep = np.fromiter((k not in played for k in (neg_users.astype(np.int64) * train.shape[1] + neg_items).tolist()),
                       dtype=bool, count=neg_users.size)
    users = np.concatenate([pos.row, neg_users[keep]])
    items = np.concatenate([pos.col, neg_items[keep]])
    labels = np.concatenate([np.ones(pos.nnz, np.float32), np.zeros(int(keep.sum()), np.float32)])
    order = rng.permutation(users.size)
    return users[order], items[order], labels[order]


def fit(train: sp.csr_matrix, cfg: NeuralMfConfig, *, threads: int = 1) -> FactorModel:
    """Fit on a user x track matrix of summed play counts (only which tracks were played is used)."""
    torch = _torch()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(cfg.seed)
    n_users, n_items = train.shape
    mask = catalogue_mask(train)
    users_emb = torch.nn.Embedding(n_users, cfg.factors)
    items_emb = torch.nn.Embedding(n_items, cfg.factors)
    item_bias = torch.nn.Embedding(n_items, 1)
    h = torch.nn.Linear(cfg.factors, 1, bias=False)
    for emb in (users_emb, items_emb):
        torch.nn.init.normal_(emb.weight, std=0.01)
    torch.nn.init.zeros_(item_bias.weight)
    params = [*users_emb.parameters(), *items_emb.parameters(), *item_bias.parameters(), *h.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.l2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(cfg.epochs):
        users, items, labels = _epoch_pairs(sp.csr_matrix(train), np.flatnonzero(mask), cfg.negatives, rng)
        for start in range(0, users.size, cfg.batch):
            u = torch.from_numpy(users[start:start + cfg.batch].astype(np.int64))
            i = torch.from_numpy(items[start:start + cfg.batch].astype(np.int64))
            logits = h(users_emb(u) * items_emb(i)).squeeze(1) + item_bias(i).squeeze(1)
            loss = loss_fn(logits, torch.from_numpy(labels[start:start + cfg.batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        p = users_emb.weight.numpy()
        q = items_emb.weight.numpy() * h.weight.numpy()[0]
        b = item_bias.weight.numpy()
    user_factors = np.hstack([p, np.ones((n_users, 1))]).astype(np.float32)
    item_factors = np.hstack([q, b]).astype(np.float32)
    return FactorModel(user_factors, item_factors, mask, cfg.params())
