"""Fold-in: a user vector for listens the model never trained on, by the ALS user step.

With the trained item factors Y (rank f) fixed, the user's listened tracks with play counts r
get confidence c = 1 + alpha * r (``log`` confidence: 1 + alpha * log1p(r)) and preference 1,
and the vector is the least-squares solve of implicit ALS (Hu, Koren and Volinsky 2008)::

    x = (YᵀY + Yᵀ(C − I)Y + λI)⁻¹ Yᵀ C p

which is ``implicit``'s ``recalculate_user``. Spark scales λ by the user's number of rated
tracks (ALS-WR); ``implicit`` does not: the engine that trained the model decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["gram", "fold_in"]


def gram(item_factors: np.ndarray) -> np.ndarray:
    """YᵀY (float64, f x f): the part of every user's system that does not depend on the user."""
    y = np.asarray(item_factors, dtype=np.float64)
    return y.T @ y


def fold_in(item_factors: np.ndarray, yty: np.ndarray, items: np.ndarray, plays: np.ndarray,
            params: Mapping[str, Any]) -> np.ndarray:
    """The user vector for ``items`` (track indices, distinct) played ``plays`` times each.

    ``params`` are the model's ALS params (``alpha``, ``reg_param``, ``confidence``, ``engine``).
    """
    items = np.asarray(items, dtype=np.int64)
    plays = np.asarray(plays, dtype=np.float64)
    if items.size != plays.size or items.size != np.unique(items).size:
        raise ValueError("fold_in needs distinct items, each with its play count")
    f = yty.shape[0]
    if items.size == 0:
        return np.zeros(f, dtype=np.float32)
    r = np.log1p(plays) if params.get("confidence", "linear") == "log" else plays
    c = 1.0 + float(params["alpha"]) * r
    y = np.asarray(item_factors[items], dtype=np.float64)
    lam = float(params["reg_param"]) * (items.size if params.get("engine", "spark") == "spark" else 1)
    a = yty + (y.T * (c - 1.0)) @ y + lam * np.eye(f)
    b = y.T @ c
    return np.linalg.solve(a, b).astype(np.float32)
