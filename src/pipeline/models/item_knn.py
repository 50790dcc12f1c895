"""Item-kNN: item-item neighbours from ``implicit.nearest_neighbours`` (cosine, BM25, TF-IDF).

There are no user vectors: a user's scores are their (transformed) history times the item
similarity matrix, ``score(u, ·) = history(u, ·) @ S``, as ``implicit``'s own scorer computes them.
The model keeps the similarity and the train history, so a known user is answered from their
history and a new one from the listens they send (:meth:`ItemKnnModel.recommend_history`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline.models.base import write_model
from pipeline.models.configs import ItemKnnConfig
from pipeline.models.inputs import catalogue_mask, transform

__all__ = ["ItemKnnModel", "fit"]

USER_BLOCK = 512  # users scored per dense block: 512 x 1M tracks of float32 is 2 GB, so shrink with the catalogue


@dataclass
class ItemKnnModel:
    """Item-to-item similarities ``S`` (tracks x tracks) and the history the scores start from."""

    similarity: sp.csr_matrix
    history: sp.csr_matrix
    item_mask: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def recommend(self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None) -> np.ndarray:
        users = np.asarray(users)
        return self.recommend_history(self.history[users], k, exclude=None if exclude is None else exclude[users])

    def recommend_history(self, history: sp.csr_matrix, k: int, *, exclude: sp.csr_matrix | None = None) -> np.ndarray:
        """Top-``k`` tracks for each row of ``history`` (transformed plays, like the train history).

        Ties (tracks no neighbour reaches score 0) are broken by track index; tracks outside the
        train catalogue and ``exclude``-d ones are never returned; short rows are -1 padded.
        """
        from pipeline.topk import rank_rows

        history = sp.csr_matrix(history, dtype=np.float32)
        catalogue = np.flatnonzero(self.item_mask)
        block = max(1, min(USER_BLOCK, (1 << 26) // max(1, catalogue.size)))
        out = np.full((history.shape[0], k), -1, dtype=np.int32)
        similarity = self.similarity[:, catalogue]
        for start in range(0, history.shape[0], block):
            rows = slice(start, start + block)
            scores = np.asarray((history[rows] @ similarity).todense(), dtype=np.float32)
            if exclude is not None:
                ex = exclude[rows][:, catalogue].tocoo()
                scores[ex.row, ex.col] = -np.inf
            ranked = rank_rows(scores, k)
            out[rows] = np.where(ranked >= 0, catalogue[np.maximum(ranked, 0)], -1)
        return out

    def save(self, path: Path) -> Path:
        return write_model(path, "item_knn", self.params, {"similarity": self.similarity, "history": self.history,
                                                           "item_mask": self.item_mask})

    @classmethod
    def load(cls, path: Path, params: dict[str, Any]) -> "ItemKnnModel":
        path = Path(path)
        return cls(sp.load_npz(path / "similarity.npz").tocsr(), sp.load_npz(path / "history.npz").tocsr(),
                   np.load(path / "item_mask.npy"), params)


def fit(train: sp.csr_matrix, cfg: ItemKnnConfig, *, threads: int = 1) -> ItemKnnModel:
    """Fit on a user x track matrix of summed play counts."""
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender
    from implicit.utils import ParameterWarning

    history = transform(train, cfg.transform)
    if cfg.similarity == "bm25":
        model = BM25Recommender(K=cfg.neighbours, K1=cfg.bm25_k1, B=cfg.bm25_b, num_threads=threads)
    elif cfg.similarity == "cosine":
        model = CosineRecommender(K=cfg.neighbours, num_threads=threads)
    else:
        model = TFIDFRecommender(K=cfg.neighbours, num_threads=threads)
    with warnings.catch_warnings():  # the library hands its own weighted COO matrix to a CSR-only step
        warnings.simplefilter("ignore", ParameterWarning)
        model.fit(history, show_progress=False)
    return ItemKnnModel(model.similarity.tocsr().astype(np.float32), history, catalogue_mask(train), cfg.params())
