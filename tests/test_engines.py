"""The engine families beyond ALS: configs that check and name themselves, input transforms, and
each wrapper against its library's own scoring (the contract suite covers the shared behaviour)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.models import bpr, engines, item_knn, lightfm_rank, lmf
from pipeline.models.configs import (
    CONFIGS, DEFAULT_GRIDS, BprConfig, ExplicitAlsConfig, ItemKnnConfig, LightFmConfig, LmfConfig,
    default_grid, grid, grids,
)
from pipeline.models.inputs import transform


def plays(n_users: int = 60, n_items: int = 45, seed: int = 0) -> sp.csr_matrix:
    """Random play counts 1..50 on ~20% of the pairs; every user has at least one track."""
    rng = np.random.default_rng(seed)
    m = rng.integers(1, 51, size=(n_users, n_items)) * (rng.random((n_users, n_items)) < 0.2)
    m[np.arange(n_users), rng.integers(0, n_items, n_users)] = 2
    return sp.csr_matrix(m.astype(np.float32))


@pytest.mark.parametrize("family", sorted(DEFAULT_GRIDS))
def test_every_default_grid_has_unique_readable_labels_and_folder_safe_keys(family):
    configs = default_grid(family)
    assert configs and len({c.label for c in configs}) == len(configs) == len({c.key for c in configs})
    for c in configs:
        assert c.label.startswith(family + " ") and "=" in c.label
        assert re.fullmatch(r"[A-Za-z0-9_.=+-]+", c.key), c.key
        assert c.params()["model"] == family and c.params()["objective"] in ("ranking", "rating")


def test_bpr_label_reads_like_the_issue():
    assert BprConfig(factors=64, learning_rate=0.01).label == "bpr factors=64 lr=0.01 reg=0.01 iters=100"
    assert ExplicitAlsConfig().params()["objective"] == "rating"


@pytest.mark.parametrize("bad", [
    lambda: ItemKnnConfig(similarity="jaccard"),
    lambda: ItemKnnConfig(similarity="cosine", bm25_b=0.2),
    lambda: ItemKnnConfig(neighbours=0),
    lambda: BprConfig(learning_rate=0),
    lambda: LmfConfig(transform="sqrt"),
    lambda: LightFmConfig(loss="logistic"),
    lambda: ExplicitAlsConfig(transform="binary"),
])
def test_configs_refuse_bad_values_with_a_message(bad):
    with pytest.raises(ValueError, match="not allowed|only apply"):
        bad()


def test_grid_expands_every_combination_and_refuses_unknown_parameters():
    configs = grid("item_knn", similarity=["cosine", "bm25"], transform=["raw", "log1p", "binary"])
    assert len(configs) == 6 == len({c.key for c in configs})
    union = grids("item_knn", [{"similarity": ["cosine"]}, {"similarity": ["bm25", "cosine"], "bm25_b": [0.75]}])
    assert [c.similarity for c in union] == ["cosine", "bm25"], "a union keeps each config once, in order"
    with pytest.raises(ValueError, match="no parameter"):
        grid("bpr", rank=[10])
    with pytest.raises(ValueError, match="not an engine family"):
        grid("svd")
    assert set(CONFIGS) == set(engines.FAMILIES)


def test_input_transforms():
    m = sp.csr_matrix(np.array([[0, 3], [1, 0]], dtype=np.float32))
    assert transform(m, "raw").toarray().tolist() == [[0, 3], [1, 0]]
    np.testing.assert_allclose(transform(m, "log1p").toarray(), [[0, np.log(4)], [np.log(2), 0]])
    assert transform(m, "binary").toarray().tolist() == [[0, 1], [1, 0]]
    assert m.toarray().tolist() == [[0, 3], [1, 0]], "the input is not modified"


@pytest.mark.parametrize("similarity", ["cosine", "bm25", "tfidf"])
def test_item_knn_ranks_as_implicits_own_scorer(similarity):
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender

    train = plays()
    cfg = ItemKnnConfig(similarity=similarity, neighbours=15, transform="log1p")
    model = item_knn.fit(train, cfg)
    lib = {"cosine": CosineRecommender, "bm25": BM25Recommender, "tfidf": TFIDFRecommender}[similarity](K=15)
    history = transform(train, "log1p")
    lib.fit(history, show_progress=False)
    users = np.arange(train.shape[0])
    ids, scores = lib.recommend(users, history, N=5, filter_already_liked_items=True)
    ours = model.recommend(users, 5, exclude=train)
    dense = (history @ model.similarity).toarray()
    for u in users:
        np.testing.assert_allclose(np.sort(dense[u, ours[u]]), np.sort(scores[u]), rtol=1e-5)


def test_item_knn_answers_a_new_listener_from_their_listens_like_a_known_one(tmp_path):
    from pipeline import models

    train = plays()
    model = item_knn.fit(train, ItemKnnConfig(similarity="bm25", neighbours=15))
    loaded = models.load(model.save(tmp_path / "knn"))
    sent = transform(train[[7]], "log1p")  # user 7's listens, sent as a stranger's
    np.testing.assert_array_equal(loaded.recommend_history(sent, 10, exclude=train[[7]]),
                                  model.recommend(np.array([7]), 10, exclude=train))


@pytest.mark.parametrize("module,cfg,lib", [
    (bpr, BprConfig(factors=8, iterations=20, seed=2), "BayesianPersonalizedRanking"),
    (lmf, LmfConfig(factors=8, iterations=10, transform="log1p", seed=2), "LogisticMatrixFactorization"),
])
def test_implicit_factor_engines_rank_as_the_library(module, cfg, lib):
    import implicit.cpu.bpr
    import implicit.cpu.lmf

    train = plays()
    model = module.fit(train, cfg)
    cls = getattr(implicit.cpu.bpr if lib.startswith("Bayes") else implicit.cpu.lmf, lib)
    kwargs = dict(factors=cfg.factors, learning_rate=cfg.learning_rate, regularization=cfg.regularization,
                  iterations=cfg.iterations, random_state=cfg.seed, num_threads=1)
    if isinstance(cfg, LmfConfig):
        kwargs["neg_prop"] = cfg.neg_prop
    ref = cls(**kwargs)
    ref.fit(transform(train, "binary" if isinstance(cfg, BprConfig) else cfg.transform), show_progress=False)
    users = np.arange(train.shape[0])
    ids, _ = ref.recommend(users, train[users], N=5, filter_already_liked_items=True)
    np.testing.assert_array_equal(model.recommend(users, 5, exclude=train), ids)


def test_lightfm_factor_model_scores_as_lightfm_predict_up_to_the_user_bias():
    from lightfm import LightFM

    train = plays()
    cfg = LightFmConfig(components=8, epochs=5, transform="log1p", seed=3)
    model = lightfm_rank.fit(train, cfg)
    ref = LightFM(no_components=8, loss="warp", learning_rate=cfg.learning_rate, random_state=3)
    w = transform(train, "log1p").tocoo()
    ref.fit(sp.coo_matrix((np.ones_like(w.data), (w.row, w.col)), shape=w.shape), sample_weight=w, epochs=5)
    user_bias, _ = ref.get_user_representations()
    items = np.arange(train.shape[1], dtype=np.int32)
    for u in (0, 17, 59):
        want = ref.predict(np.full(items.size, u, dtype=np.int32), items)
        ours = model.user_factors[u] @ model.item_factors.T + user_bias[u]
        np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4)


def test_engines_fit_refuses_foreign_configs_and_spark_families_without_spark():
    from pipeline.config import AlsConfig

    with pytest.raises(ValueError, match="not an engine config"):
        engines.fit(plays(), AlsConfig())
    with pytest.raises(ValueError, match="pass spark="):
        engines.fit(plays(), ExplicitAlsConfig())
