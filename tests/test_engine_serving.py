"""The other families served as the nightly run serves ALS: an item-kNN model answers known users from
their exact lists and new listeners from the sent tracks' neighbours (``item_to_item``); every factor
family (BPR, logistic MF, LightFM, explicit ALS, and neural MF where torch is installed) folds new
listeners in against its item factors. All under ``exclude_seen``, which no source may break."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from pipeline import models
from pipeline.data import SplitData
from pipeline.serving import Bundle
from pipeline_runs import isolated_home, run_pipeline

pytestmark = pytest.mark.spark

FACTOR_FAMILIES = ["bpr", "lmf", "lightfm", "als_explicit"] + (
    ["neural_mf"] if importlib.util.find_spec("torch") else [])
PARAMS = {"families": ["popularity", "item_knn", *FACTOR_FAMILIES], "betas": [100], "exclude_seen": True,
          "engine_grids": {"item_knn": [{"similarity": ["cosine"], "neighbours": [200], "transform": ["log1p"]}],
                           "bpr": [{"factors": [32], "learning_rate": [0.05], "iterations": [60]}],
                           "lmf": [{"factors": [16], "iterations": [20]}],
                           "lightfm": [{"components": [16], "epochs": [10]}],
                           "als_explicit": [{"rank": [8], "max_iter": [5]}],
                           "neural_mf": [{"factors": [16], "epochs": [20]}]},
          "index_kinds": ["hnsw_ip"], "hnsw_M": [16]}


def _keys(bundle: Bundle, items: np.ndarray) -> list[str]:
    return [t["track_key"] for t in bundle._track_rows(np.asarray(items))]


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    with isolated_home(tmp_path_factory.mktemp("engines"), n_listens=15_000, seed=13):
        out = run_pipeline("run-engines", PARAMS, force_selected="item-knn")
        tested = out["indexed"]["tested"]
        assert tested["best"].startswith("item-knn"), tested["served_because"]
        yield out


def _bundle_of(run: dict, family: str, out: Path) -> Bundle:
    """What build_index packs when ``family``'s configuration is the one served."""
    from pipeline import stages
    from pipeline.indexing import build_bundle
    from pipeline.results import best_popularity, leaderboard

    r = stages.Run.open(run["ref"])
    row = next(x for x in leaderboard(r.layout.results, r.cfg.k) if x["params"]["model"] == family)
    build_bundle(model_dir=Path(row["model_dir"]), data=r.split_data, tracks=r.layout.ingest.tracks,
                 idmap_root=r.idmap_root, fallback_model_dir=Path(best_popularity(r.layout.popularity, 100)["model_dir"]),
                 out=out / "bundle", tuning_dir=out / "tuning", cfg=r.cfg.index(), k=r.cfg.k, exclude_seen=True,
                 info={"model_key": row["key"], "params": row["params"], "dag_run_id": "test"})
    return Bundle(out / "bundle")


def test_every_family_is_swept_and_on_the_leaderboard(run):
    board = run["ref"].layout.leaderboard_table.read_text()
    assert "| item_knn | ranking |" in board and "| popularity | none (counts) |" in board, board
    for family in FACTOR_FAMILIES:
        assert f"| {family} | " in board, (family, board)
    assert "| als_explicit | rating (val RMSE " in board, board


def test_item_knn_answers_known_users_exactly_and_new_listeners_item_to_item(run):
    lay = run["ref"].layout
    bundle, split, model = Bundle(lay.bundle), SplitData(lay.split), models.load(lay.bundle / "model")
    assert bundle.index is None and bundle.meta["index"] is None
    train = split.train
    known = np.flatnonzero(np.diff(train.indptr) > 0)
    exact = model.recommend(known, 100, exclude=train)
    assert len(bundle.precomputed) == known.size
    assert all(np.array_equal(bundle.precomputed[int(u)], row) for u, row in zip(known, exact))
    index_of = {idx: uid for uid, idx in bundle.user_index.items()}
    for u, mine in list(zip(known, exact))[:100]:
        history = _keys(bundle, train[u].indices)
        sent = [key for key, n in zip(history, train[u].data) for _ in range(int(n))]
        for who in (index_of[int(u)], "a-stranger"):
            answer = bundle.recommend([who], k=50, listens=[sent])
            # sending one's own train history gives what the model scores for that history
            assert (answer["source"] == "item_to_item").all(), answer["source"].unique()
            assert answer["track"].tolist() == _keys(bundle, mine[:50]), u
            assert not set(history) & set(answer["track"])


@pytest.mark.parametrize("family", FACTOR_FAMILIES)
def test_every_factor_family_folds_new_listeners_in_and_keeps_the_protocol(run, family, tmp_path):
    bundle = _bundle_of(run, family, tmp_path)
    split, model = SplitData(run["ref"].layout.split), models.load(bundle.path / "model")
    assert bundle.meta["index"]["recall"] >= 0.95
    train = split.train
    known = np.flatnonzero(np.diff(train.indptr) >= 5)
    exact = model.recommend(known, 100, exclude=train)
    assert all(np.array_equal(bundle.precomputed[int(u)], row) for u, row in zip(known, exact))
    overlaps = []
    for u, mine in list(zip(known, exact))[:100]:
        history = _keys(bundle, train[u].indices)
        answer = bundle.recommend(["a-stranger"], k=100, listens=[history])
        assert (answer["source"] == "folded_in").all() and not set(history) & set(answer["track"]), u
        overlaps.append(len(set(answer["track"]) & set(_keys(bundle, mine))) / 100)
    print(f"{family}: fold-in finds {np.mean(overlaps):.2f} of the trained vector's top-100")
    if family == "bpr":  # a least-squares fold-in is not BPR's own user vector, but must find much of what it finds
        assert np.mean(overlaps) >= 0.5, np.mean(overlaps)
