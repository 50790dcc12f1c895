"""Fold-in: a user vector for listens the model never trained on, by the ALS user step.

With the trained item factors Y (rank f) fixed, the user's listened tracks with play counts r
get confidence c = 1 + alpha * r (``log`` confidence: 1 + alpha * log1p(r)) and preference 1,
and the vector is the least-squares solve of implicit ALS (Hu, Koren and Volinsky 2008)::

    x = (YᵀY + Yᵀ(C − I)Y + λI)⁻¹ Yᵀ C p

which is ``implicit``'s ``recalculate_user``. Spark scales λ by the user's number of rated
tracks (ALS-WR); ``implicit`` does not: the engine that trained the model decides.

The other factor families are folded in against their own item factors too:

- explicit-rating ALS by its own user step, ridge regression on the sent tracks' ratings (the
  play counts under the model's ``transform``), ``x = (Y_sᵀY_s + λ·n·I)⁻¹ Y_sᵀ r`` as Spark's
  ALS-WR solves it;
- the ranking families (BPR, logistic MF, LightFM, neural MF), which have no closed-form user
  step, by the implicit-ALS step above with ``RANKING_FOLD_IN`` (α 1 on log1p plays, λ 0.1): the
  vector whose scores fit "these tracks, not the others" in least squares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["gram", "fold_in", "RANKING_FOLD_IN"]

RANKING_FOLD_IN = {"alpha": 1.0, "reg_param": 0.1, "confidence": "log", "engine": "implicit"}


def gram(item_factors: np.ndarray) -> np.ndarray:
    """YᵀY (float64, f x f): the part of every user's system that does not depend on the user."""
    y = np.asarray(item_factors, dtype=np.float64)
    return y.T @ y


def fold_in(item_factors: np.ndarray, yty: np.ndarray, items: np.ndarray, plays: np.ndarray,
            params: Mapping[str, Any]) -> np.ndarray:
    """The user vector for ``items`` (track indices, distinct) played ``plays`` times each.

    ``params`` are the model's params: ALS's (``alpha``, ``reg_param``, ``confidence``,
    ``engine``), explicit ALS's (``reg_param``, ``transform``), or any other family's (then
    ``RANKING_FOLD_IN``).
    """
    items = np.asarray(items, dtype=np.int64)
    plays = np.asarray(plays, dtype=np.float64)
    if items.size != plays.size or items.size != np.unique(items).size:
        raise ValueError("fold_in needs distinct items, each with its play count")
    f = yty.shape[0]
    if items.size == 0:
        return np.zeros(f, dtype=np.float32)
    y = np.asarray(item_factors[items], dtype=np.float64)
    if params.get("model") == "als_explicit":
        r = np.log1p(plays) if params.get("transform") == "log1p" else plays
        a = y.T @ y + float(params["reg_param"]) * items.size * np.eye(f)
        return np.linalg.lstsq(a, y.T @ r, rcond=None)[0].astype(np.float32)  # λ 0 and few tracks: singular
    if params.get("model", "als") != "als":  # a ranking family (LightFM's own "alpha" is an L2 penalty)
        params = RANKING_FOLD_IN
    r = np.log1p(plays) if params.get("confidence", "linear") == "log" else plays
    c = 1.0 + float(params["alpha"]) * r
    lam = float(params["reg_param"]) * (items.size if params.get("engine", "spark") == "spark" else 1)
    a = yty + (y.T * (c - 1.0)) @ y + lam * np.eye(f)
    b = y.T @ c
    return np.linalg.solve(a, b).astype(np.float32)
