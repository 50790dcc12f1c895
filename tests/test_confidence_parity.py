"""Spark ALS and the ``implicit`` engine see the same confidence for the same params.

Both engines alternate exact least-squares solves, so each fitted model satisfies the
normal equations of its last half-step (DESIGN.md "Serving contract", fold-in):

    x_u = (YᵀY + Yᵀ(C_u − I)Y + λ_u I)⁻¹ Yᵀ C_u p_u,
    C_u = diag(1 + alpha · f(plays_u)), p = 1 on played tracks

Spark's last half-step solves the users against its final item factors with λ_u = regParam · n_u
(ALS-WR); ``implicit``'s last half-step solves the items against its final user factors with
λ = regularization. The tests fit both engines on the same data and check each against this
closed form with the confidence written out here, independently of either engine's code; a
third check hands Spark's item factors to ``implicit``'s own solver with the engine's confidence
matrix and gets Spark's user factors back.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline.config import AlsConfig
from pipeline.models import als_implicit

RANK = 3  # implicit's CG solver takes 3 steps: exact for rank <= 3


def plays() -> sp.csr_matrix:
    """14 users x 9 tracks, plays 1..20 on about half the pairs, every user and track played."""
    rng = np.random.default_rng(7)
    m = rng.integers(1, 21, size=(14, 9)) * (rng.random((14, 9)) < 0.5)
    m[np.arange(14), np.arange(14) % 9] = 3
    return sp.csr_matrix(m.astype(np.float32))


def expected_confidence(r: np.ndarray, cfg: AlsConfig) -> np.ndarray:
    f = np.log1p(r) if cfg.confidence == "log" else r
    return 1.0 + cfg.alpha * f


def solve(other: np.ndarray, row_plays: np.ndarray, cfg: AlsConfig, lam: float) -> np.ndarray:
    """The closed-form ALS solve of one row (float64) against the fixed factors ``other``."""
    other = other.astype(np.float64)
    played = row_plays > 0
    c = expected_confidence(row_plays[played].astype(np.float64), cfg)
    yp = other[played]
    a = other.T @ other + (yp.T * (c - 1.0)) @ yp + lam * np.eye(other.shape[1])
    return np.linalg.solve(a, yp.T @ c)


def assert_last_half_step(solved: np.ndarray, fixed: np.ndarray, rows: np.ndarray, cfg: AlsConfig,
                          lam_of) -> None:
    """Each ``solved[r]`` is the closed-form solve of ``rows[r]`` (plays) against ``fixed``.

    λ is ``lam_of(count of played tracks in the row)``.
    """
    for r, row in enumerate(rows):
        want = solve(fixed, row, cfg, lam_of(int((row > 0).sum())))
        np.testing.assert_allclose(solved[r], want, rtol=2e-3, atol=2e-4)


def spark_fit(spark, train: sp.csr_matrix, cfg: AlsConfig, tmp_path):
    from pipeline.models import als_spark

    coo = train.tocoo()
    pdf = pd.DataFrame({"user_idx": coo.row.astype("int32"), "track_idx": coo.col.astype("int32"),
                        "play_count": coo.data.astype("int32")})
    spark.createDataFrame(pdf).write.mode("overwrite").parquet(str(tmp_path / "train"))
    return als_spark.fit(spark, tmp_path / "train", cfg, n_users=train.shape[0], n_tracks=train.shape[1],
                         scratch=tmp_path / "scratch")


CONFIGS = [
    AlsConfig(rank=RANK, reg_param=0.05, alpha=0.5, max_iter=6, seed=3),
    AlsConfig(rank=RANK, reg_param=0.05, alpha=2.0, max_iter=6, seed=3, confidence="log"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.confidence}-alpha{c.alpha:g}")
def test_implicit_engine_solves_with_confidence_one_plus_alpha_f(cfg):
    train = plays()
    model = als_implicit.fit(train, replace(cfg, engine="implicit"), threads=1)
    # implicit ends on the item half-step, λ unscaled
    assert_last_half_step(model.item_factors, model.user_factors, train.toarray().T, cfg, lambda n: cfg.reg_param)


@pytest.mark.spark
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.confidence}-alpha{c.alpha:g}")
def test_spark_solves_with_the_same_confidence_and_lambda_times_ratings(spark, cfg, tmp_path):
    train = plays()
    model = spark_fit(spark, train, cfg, tmp_path)
    # Spark ends on the user half-step, λ · n_u (ALS-WR)
    assert_last_half_step(model.user_factors, model.item_factors, train.toarray(), cfg, lambda n: cfg.reg_param * n)


@pytest.mark.spark
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.confidence}-alpha{c.alpha:g}")
def test_implicits_solver_on_the_engines_confidence_gives_sparks_user_factors(spark, cfg, tmp_path):
    from implicit.cpu.als import AlternatingLeastSquares

    train = plays()
    spark_model = spark_fit(spark, train, cfg, tmp_path)
    conf = als_implicit.confidence(train, cfg)
    solver = AlternatingLeastSquares(factors=RANK, alpha=1.0, num_threads=1)
    solver.item_factors = np.ascontiguousarray(spark_model.item_factors, dtype=np.float32)
    for u in range(train.shape[0]):
        solver.regularization = cfg.reg_param * conf[u].nnz  # Spark's λ_u in implicit's terms
        got = solver.recalculate_user(u, conf[u])
        np.testing.assert_allclose(got, spark_model.user_factors[u], rtol=2e-3, atol=2e-4)
