"""Explicit-rating ALS on MovieLens-style ratings: RMSE/MAE as Spark's ``RegressionEvaluator`` computes them.

The ratings are 1-5 stars from a planted rank-3 taste model plus noise, with a fifth of each
user's ratings held out. Parity is checked twice: the metric on the very same predictions (to
1e-9), and the engine's factor-model predictions against ``ALSModel.transform`` of the same fit.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.models import als_explicit
from pipeline.models.configs import ExplicitAlsConfig

pytestmark = pytest.mark.spark

CFG = ExplicitAlsConfig(rank=3, reg_param=0.05, max_iter=12, transform="raw", seed=4)


def stars(n_users: int = 80, n_items: int = 50) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train, held-out) ratings in 1..5; every user keeps at least 4 train ratings."""
    rng = np.random.default_rng(11)
    taste = rng.normal(size=(n_users, 3)) @ rng.normal(size=(3, n_items))
    r = np.clip(np.rint(3 + taste + rng.normal(scale=0.3, size=taste.shape)), 1, 5)
    rated = rng.random(r.shape) < 0.4
    held = rated & (rng.random(r.shape) < 0.2)
    held[:, :4] = False
    rated[:, :4] = True
    return sp.csr_matrix(r * (rated & ~held)), sp.csr_matrix(r * held)


def evaluator(metric: str):
    from pyspark.ml.evaluation import RegressionEvaluator

    return RegressionEvaluator(metricName=metric, labelCol="rating", predictionCol="prediction")


def test_rmse_and_mae_equal_regression_evaluator_on_the_same_predictions(spark):
    import pandas as pd

    rng = np.random.default_rng(0)
    actual = rng.integers(1, 6, size=500).astype(np.float64)
    predicted = actual + rng.normal(scale=0.8, size=500)
    ours = als_explicit.regression_metrics(predicted, actual)
    frame = spark.createDataFrame(pd.DataFrame({"rating": actual, "prediction": predicted}))
    for metric in ("rmse", "mae"):
        assert abs(ours[metric] - evaluator(metric).evaluate(frame)) <= 1e-9
    with pytest.raises(ValueError, match="non-empty"):
        als_explicit.regression_metrics(np.array([]), np.array([]))


def test_engine_predictions_and_metrics_match_spark_alsmodel_transform(spark):
    from pyspark.ml.recommendation import ALS

    train, held = stars()
    model = als_explicit.fit(train, CFG, spark=spark)
    ours = als_explicit.rating_metrics(model, train, held, CFG)

    frame = als_explicit.ratings_frame(spark, train)
    spark_model = ALS(rank=CFG.rank, regParam=CFG.reg_param, maxIter=CFG.max_iter, seed=CFG.seed,
                      userCol="user_idx", itemCol="track_idx", ratingCol="rating", coldStartStrategy="drop").fit(frame)
    predicted = spark_model.transform(als_explicit.ratings_frame(spark, held)).toPandas()
    assert len(predicted) == ours["n_rated"] == held.nnz
    rows, cols = predicted["user_idx"].to_numpy(), predicted["track_idx"].to_numpy()
    mine = np.einsum("ij,ij->i", model.user_factors[rows], model.item_factors[cols])
    np.testing.assert_allclose(mine, predicted["prediction"].to_numpy(), rtol=1e-5, atol=1e-5)
    spark_frame = spark.createDataFrame(predicted)
    for metric in ("rmse", "mae"):
        assert abs(ours[metric] - evaluator(metric).evaluate(spark_frame)) <= 1e-5
        same = als_explicit.regression_metrics(predicted["prediction"].to_numpy(), predicted["rating"].to_numpy())
        assert abs(same[metric] - evaluator(metric).evaluate(spark_frame)) <= 1e-9
    assert ours["rmse"] < 1.0, "a rank-3 model of rank-3 stars predicts held-out ratings within a star"
