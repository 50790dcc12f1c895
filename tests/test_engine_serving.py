"""The other families served as the nightly run serves ALS: an item-kNN model answers known users from
their exact lists and new listeners from the sent tracks' neighbours (``item_to_item``); a BPR model folds
new listeners in against its item factors. Both under ``exclude_seen``, which no source may break."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import models
from pipeline.data import SplitData
from pipeline.serving import Bundle
from pipeline_runs import isolated_home, run_pipeline

pytestmark = pytest.mark.spark

PARAMS = {"families": ["popularity", "item_knn", "bpr"], "betas": [100], "exclude_seen": True,
          "engine_grids": {"item_knn": [{"similarity": ["cosine"], "neighbours": [200], "transform": ["log1p"]}],
                           "bpr": [{"factors": [32], "learning_rate": [0.05], "iterations": [60]}]},
          "index_kinds": ["hnsw_ip"], "hnsw_M": [16]}


def _keys(bundle: Bundle, items: np.ndarray) -> list[str]:
    return [t["track_key"] for t in bundle._track_rows(np.asarray(items))]


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    with isolated_home(tmp_path_factory.mktemp("engines"), n_listens=15_000, seed=13):
        out = {}
        for family in ("item-knn", "bpr"):
            run = run_pipeline(f"run-{family}", PARAMS, force_selected=family)
            tested = run["indexed"]["tested"]
            assert tested["best"].startswith(family), tested["served_because"]
            lay = run["ref"].layout
            out[family] = {"bundle": Bundle(lay.bundle), "split": SplitData(lay.split),
                           "model": models.load(lay.bundle / "model"), "run": run}
        yield out


def test_every_family_is_swept_and_on_the_leaderboard(runs):
    board = (runs["bpr"]["run"]["ref"].layout.leaderboard_table).read_text()
    assert "| item_knn | ranking |" in board and "| bpr | ranking |" in board and "| popularity |" in board, board


def test_item_knn_answers_known_users_exactly_and_new_listeners_item_to_item(runs):
    served = runs["item-knn"]
    bundle, split, model = served["bundle"], served["split"], served["model"]
    assert bundle.index is None and bundle.meta["index"] is None
    train = split.train
    known = np.flatnonzero(np.diff(train.indptr) > 0)
    exact = model.recommend(known, 100, exclude=train)
    assert len(bundle.precomputed) == known.size
    assert all(np.array_equal(bundle.precomputed[int(u)], row) for u, row in zip(known, exact))
    index_of = {idx: uid for uid, idx in bundle.user_index.items()}
    for u in known[:100]:
        history = _keys(bundle, train[u].indices)
        sent = [key for key, n in zip(history, train[u].data) for _ in range(int(n))]
        for who in (index_of[int(u)], "a-stranger"):
            answer = bundle.recommend([who], k=50, listens=[sent])
            # sending one's own train history gives what the model scores for that history
            assert (answer["source"] == "item_to_item").all(), answer["source"].unique()
            assert answer["track"].tolist() == _keys(bundle, exact[list(known).index(u)][:50]), u
            assert not set(history) & set(answer["track"])


def test_bpr_folds_new_listeners_in_and_keeps_the_protocol(runs):
    served = runs["bpr"]
    bundle, split, model = served["bundle"], served["split"], served["model"]
    assert bundle.meta["index"]["recall"] >= 0.95
    train = split.train
    known = np.flatnonzero(np.diff(train.indptr) >= 5)
    exact = model.recommend(known, 100, exclude=train)
    assert all(np.array_equal(bundle.precomputed[int(u)], row) for u, row in zip(known, exact))
    overlaps = []
    for u, mine in zip(known[:100], exact):
        history = _keys(bundle, train[u].indices)
        answer = bundle.recommend(["a-stranger"], k=100, listens=[history])
        assert (answer["source"] == "folded_in").all() and not set(history) & set(answer["track"]), u
        overlaps.append(len(set(answer["track"]) & set(_keys(bundle, mine))) / 100)
    # a least-squares fold-in is not BPR's own user vector, but it must find much of what that vector finds
    assert np.mean(overlaps) >= 0.5, np.mean(overlaps)
