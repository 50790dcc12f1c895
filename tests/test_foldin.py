"""Fold-in is the ALS user step: it equals implicit's own recalculate_user on the same confidence, and
Spark's λ scaling when the model came from Spark."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.foldin import fold_in, gram


@pytest.fixture(scope="module")
def fitted():
    from implicit.cpu.als import AlternatingLeastSquares

    rng = np.random.default_rng(0)
    plays = sp.random(60, 80, density=0.15, random_state=1, data_rvs=lambda n: rng.integers(1, 6, n)).tocsr()
    alpha, reg = 2.0, 0.05
    confidence = plays.astype(np.float32).copy()
    confidence.data = 1 + alpha * confidence.data  # what the implicit engine hands implicit: c = 1 + alpha * r
    model = AlternatingLeastSquares(factors=6, regularization=reg, alpha=1.0, iterations=5, random_state=0,
                                    num_threads=1, calculate_training_loss=False)
    model.fit(confidence, show_progress=False)
    return model, plays, confidence, {"alpha": alpha, "reg_param": reg, "confidence": "linear", "engine": "implicit"}


def test_fold_in_equals_implicits_recalculate_user(fitted):
    model, plays, confidence, params = fitted
    items = np.asarray(model.item_factors)
    yty = gram(items)
    for u in range(5):
        row = plays[u]
        mine = fold_in(items, yty, row.indices, row.data, params)
        theirs = np.asarray(model.recalculate_user(u, confidence[u])).ravel()
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-4)


def test_spark_models_scale_lambda_by_the_users_rated_tracks(fitted):
    model, plays, _, params = fitted
    items = np.asarray(model.item_factors, dtype=np.float64)
    row = plays[0]
    spark = {**params, "engine": "spark"}
    x = fold_in(items, gram(items), row.indices, row.data, spark)
    c = 1 + spark["alpha"] * row.data
    y = items[row.indices]
    a = items.T @ items + (y.T * (c - 1)) @ y + spark["reg_param"] * row.nnz * np.eye(items.shape[1])
    np.testing.assert_allclose(x, np.linalg.solve(a, y.T @ c), rtol=1e-5)


def test_fold_in_refuses_repeated_items_and_gives_zero_for_nothing(fitted):
    model, _, _, params = fitted
    items = np.asarray(model.item_factors)
    with pytest.raises(ValueError, match="distinct items"):
        fold_in(items, gram(items), np.array([1, 1]), np.array([1.0, 2.0]), params)
    assert not fold_in(items, gram(items), np.array([], dtype=int), np.array([]), params).any()


def test_explicit_als_folds_in_by_its_ridge_step_and_recovers_a_users_ratings():
    rng = np.random.default_rng(3)
    items = rng.normal(size=(500, 8)).astype(np.float32)
    truth = rng.normal(size=8)
    rated = rng.choice(500, size=40, replace=False)
    ratings = items[rated].astype(np.float64) @ truth  # ratings a user with vector `truth` would give
    params = {"model": "als_explicit", "reg_param": 0.0, "transform": "raw"}
    x = fold_in(items, gram(items), rated, ratings, params)
    assert np.allclose(x, truth, atol=1e-3)
    # with a penalty the vector shrinks toward zero, scaled by the number of rated tracks as Spark's ALS-WR
    shrunk = fold_in(items, gram(items), rated, ratings, {**params, "reg_param": 1.0})
    y = items[rated].astype(np.float64)
    assert np.allclose(shrunk, np.linalg.solve(y.T @ y + 40 * np.eye(8), y.T @ ratings), atol=1e-4)
    assert np.linalg.norm(shrunk) < np.linalg.norm(x)


def test_ranking_families_fold_in_with_the_documented_implicit_step():
    from pipeline.foldin import RANKING_FOLD_IN

    rng = np.random.default_rng(4)
    # two tastes: tracks 0-149 lie along one direction, 150-299 along another (BPR-like factors, any scale)
    items = 0.3 * rng.normal(size=(300, 6)).astype(np.float32)
    items[:150, 0] += 2.0
    items[150:, 1] += 2.0
    sent, plays = np.array([3, 17, 42, 99]), np.array([1.0, 4.0, 2.0, 1.0])
    bpr = fold_in(items, gram(items), sent, plays, {"model": "bpr", "factors": 6, "learning_rate": 0.01})
    assert np.array_equal(bpr, fold_in(items, gram(items), sent, plays, RANKING_FOLD_IN))
    # someone who sent tracks of the first taste is recommended that taste
    top = np.argsort(-(items @ bpr))[:50]
    assert (top < 150).all(), top

