"""Ranking metrics on hand-computed cases, Spark's documented example, and the evaluate CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import evaluate as evaluate_mod
from pipeline.metrics import (
    average_precision_at_k, hit_at_k, ndcg_at_k, precision_at_k, ranking_metrics, recall_at_k, reciprocal_rank_at_k,
)
from pipeline.topk import topk

# Spark's documented RankingMetrics example (mllib guide / pyspark.mllib.evaluation doctest)
SPARK_PREDS = [[1, 6, 2, 7, 8, 3, 9, 10, 4, 5], [4, 1, 5, 6, 2, 7, 3, 8, 9, 10], [1, 2, 3, 4, 5]]
SPARK_LABELS = [[1, 2, 3, 4, 5], [1, 2, 3], []]
# the documented values, as the doctest prints them ("0.26..."); Spark averages over all three
# rows, the label-less one counting 0
SPARK_DOC = {("precision", 1): "0.33", ("precision", 5): "0.26", ("precision", 15): "0.17", ("map", 1): "0.33",
             ("map", 2): "0.25", ("ndcg", 3): "0.33", ("ndcg", 10): "0.48", ("recall", 1): "0.06",
             ("recall", 5): "0.35", ("recall", 15): "0.66"}


def as_arrays(preds, labels, n_items):
    k = max(len(p) for p in preds)
    recs = np.full((len(preds), k), -1)
    for i, p in enumerate(preds):
        recs[i, : len(p)] = p
    rows = [i for i, ls in enumerate(labels) for _ in ls]
    cols = [x for ls in labels for x in ls]
    return recs, sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(preds), n_items))


def test_hand_computed_single_list():
    p, r = [3, 1, 7, 2], {1, 2, 9}
    assert precision_at_k(p, r, 4) == 2 / 4
    assert recall_at_k(p, r, 4) == 2 / 3
    assert average_precision_at_k(p, r, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(p, r, 4) == pytest.approx(dcg / idcg)
    assert hit_at_k(p, r, 1) == 0.0 and hit_at_k(p, r, 2) == 1.0
    assert reciprocal_rank_at_k(p, r, 4) == 0.5 and reciprocal_rank_at_k(p, r, 1) == 0.0


def test_more_relevant_than_k_normalizes_by_k():
    p, r = [1, 2], {1, 2, 3, 4, 5}
    assert average_precision_at_k(p, r, 2) == 1.0  # divided by min(|R|, K) = 2
    assert ndcg_at_k(p, r, 2) == pytest.approx(1.0)
    assert recall_at_k(p, r, 2) == 2 / 5


def test_spark_documented_example():
    recs, truth = as_arrays(SPARK_PREDS, SPARK_LABELS, 11)
    for (name, k), documented in SPARK_DOC.items():
        ours = ranking_metrics(recs, truth, k)
        assert ours["n_users"] == 2  # the label-less user is not evaluated ...
        spark_style = ours[f"{name}_at_{k}"] * 2 / 3  # ... Spark counts it as 0
        assert f"{math.floor(spark_style * 100 + 1e-9) / 100:.2f}" == documented, (name, k, spark_style)


def test_padding_never_hits_and_users_without_truth_are_skipped():
    recs = np.array([[5, -1, -1], [0, 1, 2], [2, 1, 0]])
    truth = sp.csr_matrix(np.array([[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]))
    m = ranking_metrics(recs, truth, 3, n_items=6)
    assert m["n_users"] == 2
    assert m["precision_at_3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["mrr_at_3"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["coverage_at_3"] == pytest.approx(4 / 6)  # {5, 2, 1, 0} of 6


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12))
def test_vectorized_equals_the_single_list_definitions(seed, k):
    rng = np.random.default_rng(seed)
    n, m = 30, 25
    recs = np.array([rng.permutation(m)[:k] for _ in range(n)])
    recs[rng.random((n, k)) < 0.1] = -1
    truth = sp.random(n, m, density=0.15, random_state=seed, format="csr")
    truth.data[:] = 1
    got = ranking_metrics(recs, truth, k)
    users = [u for u in range(n) if truth[u].nnz]
    for name, f in [("precision", precision_at_k), ("recall", recall_at_k), ("map", average_precision_at_k),
                    ("ndcg", ndcg_at_k), ("hit_rate", hit_at_k), ("mrr", reciprocal_rank_at_k)]:
        want = np.mean([f(list(recs[u]), set(truth[u].indices), k) for u in users]) if users else 0.0
        assert got[f"{name}_at_{k}"] == pytest.approx(want, abs=1e-12), name


def test_topk_matches_a_full_sort_with_ties_and_exclusions():
    rng = np.random.default_rng(1)
    users = rng.integers(-2, 3, size=(50, 3)).astype(np.float32)  # small ints: many exact ties
    items = rng.integers(-2, 3, size=(40, 3)).astype(np.float32)
    exclude = sp.random(50, 40, density=0.3, random_state=2, format="csr")
    for k, ex in [(5, None), (7, exclude), (40, exclude), (45, None)]:
        got = topk(users, items, k, exclude=ex, block_size=7)
        scores = users @ items.T
        if ex is not None:
            scores[ex.toarray() != 0] = -np.inf
        for u in range(50):
            order = [i for i in np.lexsort((np.arange(40), -scores[u])) if np.isfinite(scores[u, i])][:k]
            assert got[u].tolist() == order + [-1] * (k - len(order))


def write_lists(path, users, lists):
    pq.write_table(pa.table({"user": users, "items": pa.array(lists, pa.list_(pa.string()))}), path)


def test_evaluate_cli_scores_any_recommenders_output(tmp_path, capsys):
    write_lists(tmp_path / "recs.parquet", ["a", "b", "zed"], [["x", "y", "z"], ["y"], ["x"]])
    write_lists(tmp_path / "truth.parquet", ["a", "b", "c"], [["y"], ["q"], ["x"]])
    assert evaluate_mod.main(["--recs", str(tmp_path / "recs.parquet"), "--truth", str(tmp_path / "truth.parquet"), "-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_users"] == 3  # c has no recommendations: evaluated with an empty list
    assert out["precision_at_2"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert out["mrr_at_2"] == pytest.approx((1 / 2) / 3)


def test_evaluate_names_the_missing_column(tmp_path, capsys):
    pq.write_table(pa.table({"user_id": ["a"], "items": [["x"]]}), tmp_path / "recs.parquet")
    write_lists(tmp_path / "truth.parquet", ["a"], [["x"]])
    assert evaluate_mod.main(["--recs", str(tmp_path / "recs.parquet"), "--truth", str(tmp_path / "truth.parquet")]) == 2
    err = capsys.readouterr().err
    assert "recs.parquet" in err and "['user']" in err and "user_id" in err


@pytest.mark.parametrize("seed", range(6))
def test_topk_streaming_blocks_match_a_brute_force_oracle_with_ties(seed):
    """Many small item blocks (the running-threshold path) against a full lexsort, ties at every cut."""
    rng = np.random.default_rng(seed)
    n, m, r = int(rng.integers(1, 40)), int(rng.integers(1, 400)), int(rng.integers(1, 5))
    users = rng.integers(-2, 3, size=(n, r)).astype(np.float32)
    items = rng.integers(-2, 3, size=(m, r)).astype(np.float32)
    exclude = sp.random(n, m, density=float(rng.uniform(0, 0.5)), random_state=seed, format="csr")
    scores = (users.astype(np.float64) @ items.T.astype(np.float64))
    for k in (1, 3, 17, m, m + 5):
        for ex in (None, exclude):
            s = scores.copy()
            if ex is not None:
                s[ex.toarray() != 0] = -np.inf
            want = np.full((n, k), -1)
            for u in range(n):
                order = [i for i in np.lexsort((np.arange(m), -s[u])) if np.isfinite(s[u, i])][:k]
                want[u, : len(order)] = order
            for bs, ib, th in [(None, 4096, None), (3, 1, 1), (5, 7, 2), (64, 13, 2), (4, 64, 2), (9, 128, 1)]:
                got = topk(users, items, k, exclude=ex, block_size=bs, item_block=ib, threads=th)
                assert got.dtype == np.int32 and np.array_equal(got, want), (k, bs, ib, th)


@pytest.mark.parametrize("item_block", [1, 64, 4096])
def test_topk_over_a_subset_of_items_equals_topk_over_their_copy(item_block):
    """A train catalogue ranked in place (``subset``) gives what ranking ``items[subset]`` gives, ties included."""
    rng = np.random.default_rng(7)
    users = rng.integers(-2, 3, size=(37, 4)).astype(np.float32)
    items = rng.standard_normal((3_000, 4)).astype(np.float32)
    items[::5] = items[1::5]  # duplicate rows: exact ties inside and across blocks
    subset = np.flatnonzero(rng.random(3_000) < 0.7)
    exclude = sp.random(37, subset.size, density=0.01, random_state=3, format="csr")
    for k, ex in [(1, None), (25, exclude), (100, None), (subset.size + 3, exclude)]:
        want = topk(users, items[subset], k, exclude=ex, block_size=8, item_block=item_block)
        got = topk(users, items, k, exclude=ex, block_size=8, item_block=item_block, subset=subset)
        assert np.array_equal(got, want), k


def test_topk_fractional_scores_with_duplicate_items_match_a_full_sort():
    """Fractional (dyadic, so exactly summed in any order) factors, duplicated item rows tied at every rank."""
    rng = np.random.default_rng(3)
    users = (rng.integers(-64, 65, size=(37, 8)) / 32).astype(np.float32)
    items = np.repeat((rng.integers(-64, 65, size=(500, 8)) / 32).astype(np.float32), 3, axis=0)
    full = users.astype(np.float64) @ items.T.astype(np.float64)
    want = np.array([np.lexsort((np.arange(full.shape[1]), -row))[:50] for row in full])
    for bs, ib in [(10, 64), (None, 128), (37, 4096)]:
        assert np.array_equal(topk(users, items, 50, block_size=bs, item_block=ib), want), (bs, ib)


@pytest.mark.parametrize("item_block", [1, 7, 64, 4096])
def test_topk_rising_scores_fill_and_prune_the_candidate_pools(item_block):
    """Scores rising with the item index: every item beats the running threshold, pools fill up and are pruned."""
    m = 2000
    items = np.stack([np.arange(m, dtype=np.float32) / 8, np.zeros(m, np.float32)], axis=1)
    items[1::2, 0] = items[0::2, 0]  # pairs of equal scores: the lower index first
    users = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    for k in (1, 5, 100):
        got = topk(users, items, k, item_block=item_block, block_size=2)
        s = users.astype(np.float64) @ items.T.astype(np.float64)
        want = np.array([np.lexsort((np.arange(m), -row))[:k] for row in s])
        assert np.array_equal(got, want), k


def _split_folder(root, rng, n_users=40, n_tracks=300):
    """A split folder as the split stage writes it: train/val/test Parquet parts, stats.json with the shape."""
    for name, rows in (("train", 2000), ("val", 400), ("test", 300)):
        users = rng.integers(0, n_users - 3, rows)  # the last three users have no row anywhere
        tracks = rng.integers(0, n_tracks - 50, rows) if name == "train" else rng.integers(0, n_tracks, rows)
        (root / name).mkdir(parents=True)
        for part, idx in enumerate(np.array_split(np.arange(rows), 3)):  # repeated pairs, across parts
            pq.write_table(pa.table({"user_idx": users[idx].astype(np.int32),
                                     "track_idx": tracks[idx].astype(np.int32),
                                     "play_count": rng.integers(1, 5, len(idx)).astype(np.int32)}),
                           root / name / f"part-{part}.parquet")
    (root / "stats.json").write_text(json.dumps({"shape": [n_users, n_tracks]}))


def test_scoring_without_exclude_seen_gives_the_same_metrics_without_reading_the_train_matrix(tmp_path):
    from pipeline.config import EvalConfig
    from pipeline.data import SplitData
    from pipeline.models import FactorModel

    rng = np.random.default_rng(3)
    _split_folder(tmp_path, rng)
    model = FactorModel(rng.normal(size=(40, 8)).astype(np.float32),
                        rng.normal(size=(300, 8)).astype(np.float32), np.ones(300, dtype=bool))
    cfg = EvalConfig(k=20, resamples=50)
    streamed = SplitData(tmp_path)
    lean = evaluate_mod.score(model, streamed, "val", cfg)
    assert "train" not in streamed.__dict__  # the masks came from the Parquet columns, not the matrix

    read = SplitData(tmp_path)
    train = read.train
    assert [m.tolist() for m in read.train_presence] == [m.tolist() for m in streamed.train_presence]
    assert read.train_presence[0].tolist() == (np.diff(train.indptr) > 0).tolist()
    assert read.train_presence[1].tolist() == (np.diff(train.tocsc().indptr) > 0).tolist()
    full = evaluate_mod.score(model, read, "val", cfg)
    assert lean.metrics == full.metrics and lean.users.tolist() == full.users.tolist()
    assert lean.metrics["coverage_at_20"] > 0 and 250 >= int(streamed.train_presence[1].sum()) > 200

    with_seen = evaluate_mod.score(model, SplitData(tmp_path), "val",
                                   EvalConfig(k=20, resamples=50, exclude_seen=True))
    assert with_seen.metrics != lean.metrics  # exclude_seen still reads the matrix and drops seen tracks
