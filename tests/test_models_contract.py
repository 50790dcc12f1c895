"""One contract every model passes: each popularity variant, Spark ALS, the single-machine ALS and every
other engine family (item-kNN per similarity, BPR, logistic MF, LightFM WARP, explicit-rating ALS).

The data is a checkerboard (two taste groups, each listening only to its own half of the
catalogue), so a personalized model must recommend each user only their group's tracks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline import models
from pipeline.config import AlsConfig, PopularityConfig
from pipeline.models import als_explicit, als_implicit, bpr, item_knn, lightfm_rank, lmf, neural_mf, popularity
from pipeline.models.configs import (
    BprConfig, ExplicitAlsConfig, ItemKnnConfig, LightFmConfig, LmfConfig, NeuralMfConfig,
)

N_USERS, N_ITEMS = 40, 30


def checkerboard() -> sp.csr_matrix:
    """User u listens to every track of their group (u % 2) except one per user, plays 1..3."""
    rng = np.random.default_rng(0)
    m = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    for u in range(N_USERS):
        items = np.arange(u % 2, N_ITEMS, 2)
        m[u, items] = rng.integers(1, 4, size=len(items))
        m[u, items[u % len(items)]] = 0  # a gap the model should fill from its own group
    return sp.csr_matrix(m)


def rated_checkerboard() -> sp.csr_matrix:
    """Ratings for a model of ratings: 4-5 stars on the user's group, 1 on the other, one gap in each."""
    m = checkerboard().toarray()
    rng = np.random.default_rng(1)
    for u in range(N_USERS):
        own = m[u] > 0
        m[u, own] = rng.integers(4, 6, size=own.sum())
        other = np.arange(1 - u % 2, N_ITEMS, 2)
        m[u, np.delete(other, (u + 3) % len(other))] = 1
    return sp.csr_matrix(m)


def fit_spark_als(train: sp.csr_matrix, tmp_path, spark):
    from pipeline.models import als_spark

    coo = train.tocoo()
    pdf = pd.DataFrame({"user_idx": coo.row.astype("int32"), "track_idx": coo.col.astype("int32"),
                        "play_count": coo.data.astype("int32")})
    spark.createDataFrame(pdf).write.mode("overwrite").parquet(str(tmp_path / "train"))
    cfg = AlsConfig(rank=2, reg_param=0.1, alpha=2.0, max_iter=15, seed=1)
    model = als_spark.fit(spark, tmp_path / "train", cfg, n_users=N_USERS, n_tracks=N_ITEMS, scratch=tmp_path / "factors")
    assert not (tmp_path / "factors").exists(), "the factors' scratch folder is removed after the fit"
    return model


def fit_implicit(train, tmp_path, spark):
    return als_implicit.fit(train, AlsConfig(rank=2, reg_param=0.1, alpha=2.0, max_iter=15, seed=1, engine="implicit"))


def fit_popularity(variant, beta=0.0):
    def fit(train, tmp_path, spark):
        plays, listeners = popularity.track_stats_matrix(train)
        return popularity.fit(plays, listeners, PopularityConfig(variant=variant, beta=beta))
    return fit


def fit_engine(module, cfg):
    return lambda train, tmp_path, spark: module.fit(train, cfg)


def fit_explicit_als(train, tmp_path, spark):
    return als_explicit.fit(train, ExplicitAlsConfig(rank=2, reg_param=0.05, max_iter=10, transform="raw", seed=1),
                            spark=spark)


FACTORIES = {
    "pop-plays_per_listener": (fit_popularity("plays_per_listener", 10.0), False),
    "pop-listeners": (fit_popularity("listeners"), False),
    "pop-plays": (fit_popularity("plays"), False),
    "als-implicit": (fit_implicit, True),
    "als-spark": (fit_spark_als, True),
    "als-explicit": (fit_explicit_als, True),
    **{f"knn-{sim}": (fit_engine(item_knn, ItemKnnConfig(similarity=sim, neighbours=20, transform="raw")), True)
       for sim in ("cosine", "bm25", "tfidf")},
    "bpr": (fit_engine(bpr, BprConfig(factors=4, learning_rate=0.05, iterations=200, seed=1)), True),
    "lmf": (fit_engine(lmf, LmfConfig(factors=4, iterations=60, neg_prop=5, seed=1)), True),
    "lightfm-warp": (fit_engine(lightfm_rank, LightFmConfig(components=4, epochs=40, seed=1)), True),
    "neural-mf": (fit_engine(neural_mf, NeuralMfConfig(factors=2, learning_rate=0.05, epochs=30, batch=64, seed=1)), True),  # rank 2 as ALS: with more, sampled negatives teach it each gap
}
SPARK_ENGINES = {"als-spark", "als-explicit"}
DATA = {"als-explicit": rated_checkerboard}  # a rating model learns dislikes from low ratings, not from absence


@pytest.fixture(params=sorted(FACTORIES), ids=sorted(FACTORIES))
def fitted(request, tmp_path):
    fit, personalized = FACTORIES[request.param]
    spark = None
    if request.param == "neural-mf":
        pytest.importorskip("torch", reason="neural MF needs torch, an optional extra")
    if request.param in SPARK_ENGINES:
        pytest.importorskip("pyspark")
        spark = request.getfixturevalue("spark")
    train = DATA.get(request.param, checkerboard)()
    return request.param, fit(train, tmp_path, spark), personalized, train, (fit, spark, tmp_path)


def test_recommend_returns_k_distinct_catalogue_tracks_per_user(fitted):
    _, model, _, _, _ = fitted
    users = np.arange(N_USERS)
    recs = model.recommend(users, 10)
    assert recs.shape == (N_USERS, 10) and recs.dtype.kind == "i"
    assert ((recs >= 0) & (recs < N_ITEMS)).all()
    assert all(len(set(row)) == 10 for row in recs)


def test_exclude_seen_never_returns_a_seen_track_and_pads_when_short(fitted):
    _, model, _, train, _ = fitted
    users = np.arange(N_USERS)
    recs = model.recommend(users, N_ITEMS, exclude=train)
    for u, row in enumerate(recs):
        seen = set(train[u].indices)
        kept = [i for i in row if i >= 0]
        assert not seen & set(kept)
        assert len(kept) == N_ITEMS - len(seen) and (row[len(kept):] == -1).all()


def test_personalized_models_fill_each_users_gap_from_their_own_group(fitted):
    name, model, personalized, train, _ = fitted
    if not personalized:
        pytest.skip(f"{name} is not personalized: the same list for every user")
    recs = model.recommend(np.arange(N_USERS), 1, exclude=train)
    groups = recs[:, 0] % 2
    assert (groups == np.arange(N_USERS) % 2).all(), "a recommendation crossed the taste groups"


def test_fitting_twice_gives_the_same_rankings_and_save_load_round_trips(fitted, tmp_path):
    name, model, _, train, (fit, spark, fit_tmp) = fitted
    again = fit(train, fit_tmp / "again", spark)
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(model.recommend(users, 5), again.recommend(users, 5))
    loaded = models.load(model.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.recommend(users, 5), model.recommend(users, 5))


@pytest.mark.spark
def test_distributed_top_k_equals_the_local_one(spark):
    from pipeline.distributed import recommend_distributed

    train = checkerboard()
    model = fit_implicit(train, None, None)
    model.item_mask[3] = False  # a track outside the train catalogue is never recommended
    users = np.arange(N_USERS)
    for exclude in (None, train):
        local = model.recommend(users, 7, exclude=exclude)
        np.testing.assert_array_equal(recommend_distributed(spark, model, users, 7, exclude=exclude, block_users=6), local)
        assert not (local == 3).any()
