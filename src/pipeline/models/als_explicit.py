"""Explicit-rating ALS: Spark ``ALS(implicitPrefs=False)`` on ratings, scored by RMSE/MAE and by ranking.

The rating of a (user, track) pair is its ``transform``-ed value in the train matrix (MovieLens
stars with ``raw``; HetRec play counts with ``log1p``). The model minimises squared error on
the observed ratings only, so it answers "how much would u rate i", not "will u play i": its
ranking metrics are reported beside its rating metrics, and the leaderboard's ``objective``
column (``params()["objective"] == "rating"``) says which one it optimised.

:func:`rating_metrics` scores held-out ratings the way Spark's ``RegressionEvaluator`` does on
``ALSModel.transform`` output with ``coldStartStrategy="drop"``: only pairs whose user and track
both have factors count.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from pipeline.models.als_spark import _dense
from pipeline.models.base import FactorModel
from pipeline.models.configs import ExplicitAlsConfig
from pipeline.models.inputs import catalogue_mask, transform

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["fit", "ratings_frame", "regression_metrics", "rating_metrics"]


def ratings_frame(spark: "SparkSession", ratings: sp.csr_matrix) -> "DataFrame":
    """A ``(user_idx, track_idx, rating)`` DataFrame of the stored entries of ``ratings``."""
    import pandas as pd

    coo = ratings.tocoo()
    pdf = pd.DataFrame({"user_idx": coo.row.astype("int32"), "track_idx": coo.col.astype("int32"),
                        "rating": coo.data.astype("float32")})
    return spark.createDataFrame(pdf)


def fit(train: sp.csr_matrix, cfg: ExplicitAlsConfig, *, spark: "SparkSession",
        scratch: Path | None = None) -> FactorModel:
    """Fit Spark ALS on the transformed train matrix; factors come back through ``scratch`` (a temp folder by default).

    The ratings go to Spark from the driver's matrix, which suits rating data sets (MovieLens
    25M is 25M rows); ``als_spark.fit`` is the engine that reads a split folder in place.
    """
    from pyspark.ml.recommendation import ALS

    data = ratings_frame(spark, transform(train, cfg.transform)).cache()
    als = ALS(rank=cfg.rank, regParam=cfg.reg_param, maxIter=cfg.max_iter, seed=cfg.seed, implicitPrefs=False,
              nonnegative=cfg.nonnegative, userCol="user_idx", itemCol="track_idx", ratingCol="rating",
              coldStartStrategy="drop")
    model = als.fit(data)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        users, _ = _dense(model.userFactors, train.shape[0], cfg.rank, Path(tmp) / "users")
        items, _ = _dense(model.itemFactors, train.shape[1], cfg.rank, Path(tmp) / "items")
    data.unpersist()
    return FactorModel(users, items, catalogue_mask(train), cfg.params())


def regression_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """RMSE = sqrt(mean((p - a)²)) and MAE = mean(|p - a|) over the pairs, in float64 (as Spark's evaluator)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if predicted.shape != actual.shape or predicted.size == 0:
        raise ValueError(f"need equally long, non-empty predictions and ratings; "
                         f"got {predicted.shape} and {actual.shape}")
    err = predicted - actual
    return {"rmse": float(np.sqrt(np.mean(err * err))), "mae": float(np.mean(np.abs(err))), "n_rated": int(err.size)}


def rating_metrics(model: FactorModel, train: sp.csr_matrix, truth: sp.csr_matrix,
                   cfg: ExplicitAlsConfig) -> dict[str, float]:
    """RMSE/MAE of ``model`` on the held-out ratings of ``truth`` whose user and track were in train."""
    held = transform(truth, cfg.transform).tocoo()
    known = (np.diff(sp.csr_matrix(train).indptr) > 0)[held.row] & catalogue_mask(train)[held.col]
    rows, cols, actual = held.row[known], held.col[known], held.data[known]
    users = np.asarray(model.user_factors[rows], dtype=np.float32)
    predicted = np.einsum("ij,ij->i", users, np.asarray(model.item_factors[cols], dtype=np.float32))
    return regression_metrics(predicted, actual)
