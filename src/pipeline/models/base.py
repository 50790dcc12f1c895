"""The kinds of fitted model: a score per track (popularity), factor matrices (ALS, BPR, LMF,
LightFM, explicit ALS) and item-item similarities (item-kNN, in ``item_knn.py``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import scipy.sparse as sp

from pipeline.paths import atomic_dir

if TYPE_CHECKING:
    from pipeline.models.item_knn import ItemKnnModel

__all__ = ["Recommender", "PopularityModel", "FactorModel", "load", "write_model"]


class Recommender(Protocol):
    """What every model offers the evaluation, the index and the server."""

    params: dict[str, Any]

    def recommend(self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None) -> np.ndarray:
        """Top-``k`` track indices per user (rows of ``users``), best first, -1 padded."""
        ...

    def save(self, path: Path) -> Path: ...


def write_model(path: Path, kind: str, params: dict[str, Any], arrays: dict[str, Any]) -> Path:
    """Write a model folder atomically: ``model.json`` (kind, params), ``<name>.npy`` or, for sparse, ``<name>.npz``."""
    with atomic_dir(path) as tmp:
        tmp.mkdir(parents=True)
        for name, a in arrays.items():
            if sp.issparse(a):
                sp.save_npz(tmp / f"{name}.npz", a)
            else:
                np.save(tmp / f"{name}.npy", a)
        (tmp / "model.json").write_text(json.dumps({"kind": kind, "params": params}, indent=1))
    return Path(path)


def _rows(m: sp.csr_matrix | None, users: np.ndarray) -> sp.csr_matrix | None:
    return None if m is None else m[users]


@dataclass
class PopularityModel:
    """One score per track; the same ranked list for every user (ties by track index ascending)."""

    scores: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def recommend(self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None) -> np.ndarray:
        from pipeline.topk import topk_for_scores

        users = np.asarray(users)
        return topk_for_scores(self.scores.astype(np.float32), k, n_users=len(users), exclude=_rows(exclude, users))

    def save(self, path: Path) -> Path:
        return write_model(path, "popularity", self.params, {"scores": self.scores})


@dataclass
class FactorModel:
    """User and item factors; score(u, i) = <user_factors[u], item_factors[i]>.

    ``item_mask`` marks the train catalogue: tracks outside it have no learned factors and
    are never recommended.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    item_mask: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def recommend(self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None) -> np.ndarray:
        from pipeline.topk import topk

        users = np.asarray(users)
        catalogue = np.flatnonzero(self.item_mask)
        ex = _rows(exclude, users)
        if ex is not None:
            ex = ex[:, catalogue]
        ranked = topk(self.user_factors[users], self.item_factors, k, exclude=ex, subset=catalogue)
        return np.where(ranked >= 0, catalogue[np.maximum(ranked, 0)], -1).astype(np.int32)

    def save(self, path: Path) -> Path:
        return write_model(path, "factors", self.params, {"user_factors": self.user_factors,
                                                          "item_factors": self.item_factors,
                                                          "item_mask": self.item_mask})


def load(path: Path) -> "PopularityModel | FactorModel | ItemKnnModel":
    """Load a model folder written by ``save``."""
    path = Path(path)
    meta_file = path / "model.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{path} holds no model.json: not a model folder written by this pipeline")
    meta = json.loads(meta_file.read_text())
    if meta["kind"] == "popularity":
        return PopularityModel(np.load(path / "scores.npy"), meta["params"])
    if meta["kind"] == "item_knn":
        from pipeline.models.item_knn import ItemKnnModel

        return ItemKnnModel.load(path, meta["params"])
    return FactorModel(
        np.load(path / "user_factors.npy", mmap_mode="r"),
        np.load(path / "item_factors.npy"),
        np.load(path / "item_mask.npy"),
        meta["params"],
    )
