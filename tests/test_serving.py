"""The served model on a run with `exclude_seen`: which source answers whom, exact lists for known users,
fold-in for listens the model never saw, the run's protocol at every source, and a tampered bundle refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipeline import models
from pipeline.data import SplitData
from pipeline.serving import Bundle
from pipeline_runs import isolated_home, run_pipeline

pytestmark = pytest.mark.spark

PARAMS = {"engine": "implicit", "ranks": [16], "reg_params": [0.1], "alphas": [1.0], "max_iters": [10],
          "betas": [100], "exclude_seen": True, "index_kinds": ["hnsw_ip"], "hnsw_M": [16]}


@pytest.fixture(scope="module")
def served(spark, tmp_path_factory):
    with isolated_home(tmp_path_factory.mktemp("serving"), n_listens=15_000, seed=13) as home:
        run = run_pipeline("run-serving", PARAMS)
        assert run["indexed"]["tested"]["best"].startswith("als-"), run["indexed"]["tested"]
        lay = run["ref"].layout
        bundle = Bundle(lay.bundle)
        yield {"home": home, "bundle": bundle, "split": SplitData(lay.split),
               "model": models.load(lay.bundle / "model")}


def _keys(bundle: Bundle, items: np.ndarray) -> list[str]:
    return [t["track_key"] for t in bundle._track_rows(np.asarray(items))]


def test_every_known_user_is_answered_from_the_exact_lists(served):
    bundle, split, model = served["bundle"], served["split"], served["model"]
    assert bundle.meta["protocol"] == "exclude_seen" and bundle.meta["precomputed_depth"] == 100
    known = np.flatnonzero(np.diff(split.train.indptr) > 0)
    exact = model.recommend(known, 100, exclude=split.train)
    assert len(bundle.precomputed) == known.size
    for u, row in zip(known, exact):
        assert np.array_equal(bundle.precomputed[int(u)], row)
    user = next(uid for uid, idx in bundle.user_index.items() if idx == known[0])
    answer = bundle.recommend([user], k=10)
    assert (answer["source"] == "precomputed").all() and answer["track"].tolist() == _keys(bundle, exact[0][:10])


def test_folding_in_a_users_own_history_finds_what_their_trained_vector_finds(served):
    from pipeline.foldin import fold_in

    bundle, split, model = served["bundle"], served["split"], served["model"]
    train = split.train
    users = np.flatnonzero(np.diff(train.indptr) >= 5)[:50]
    recalls = []
    for u in users:
        row = train[u]
        x = fold_in(model.item_factors, bundle.gram, row.indices, row.data, bundle.meta["params"])
        mine = set(model.recommend(np.array([u]), 100)[0].tolist())
        folded = models.FactorModel(x[None, :], model.item_factors, model.item_mask, model.params)
        recalls.append(len(mine & set(folded.recommend(np.array([0]), 100)[0].tolist())) / 100)
    assert np.mean(recalls) >= 0.9, np.mean(recalls)
    # through the served model: the user's train listens sent as track keys
    u = int(users[0])
    sent = [k for k, n in zip(_keys(bundle, train[u].indices), train[u].data) for _ in range(int(n))]
    answer = bundle.recommend(["someone-new"], k=100, listens=[sent])
    assert (answer["source"] == "folded_in").all() and len(answer) == 100


def test_an_unknown_user_without_listens_gets_the_popularity_list_flagged(served):
    bundle = served["bundle"]
    answer = bundle.recommend(["nobody-at-all"], k=10)
    assert (answer["source"] == "popularity").all() and answer["fallback"].all()
    assert answer["track"].tolist() == _keys(bundle, bundle.fallback[:10])


def test_under_exclude_seen_no_source_returns_a_track_of_the_users_history(served):
    bundle, split = served["bundle"], served["split"]
    train = split.train
    index_of = {idx: uid for uid, idx in bundle.user_index.items()}
    for u in np.flatnonzero(np.diff(train.indptr) > 0)[:200]:
        history = set(_keys(bundle, train[u].indices))
        known = bundle.recommend([index_of[int(u)]], k=100)
        assert not history & set(known["track"]), u
        # a listener who sends the same history, whether they are known or not, is folded in from it
        sent = sorted(history)
        for who in (index_of[int(u)], "a-stranger"):
            folded = bundle.recommend([who], k=100, listens=[sent])
            assert (folded["source"] == "folded_in").all() and not history & set(folded["track"]), (u, who)
    # someone who sends the most popular tracks (and one the model never heard of) never gets them back
    top = _keys(bundle, bundle.fallback[:3])
    answer = bundle.recommend(["a-stranger"], k=10, listens=[top + ["src:never-heard-of"]])
    assert (answer["source"] == "folded_in").all() and not set(top) & set(answer["track"])
    # and someone whose tracks are all unknown gets the popularity list
    answer = bundle.recommend(["a-stranger"], k=10, listens=[["src:never-heard-of"]])
    assert (answer["source"] == "popularity").all() and answer["track"].tolist() == top[:3] + answer["track"].tolist()[3:]


def test_a_bundle_whose_index_file_was_altered_is_refused(served, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(served["bundle"].path, copy)
    index_file = copy / "index" / json.loads((copy / "index" / "index.json").read_text())["file"]
    with open(index_file, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="is corrupt: sha256"):
        Bundle(copy)
