"""Indexes against exact search: tiny exact cases, recall on planted clusters, the selection rule, checksums."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline import ann


def planted(n_items=3000, n_users=100, rank=16, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, rank))
    items = centers[rng.integers(0, clusters, n_items)] + 0.3 * rng.normal(size=(n_items, rank))
    items *= rng.lognormal(0, 0.3, size=(n_items, 1))  # norms differ: inner product, not cosine
    users = centers[rng.integers(0, clusters, n_users)] + 0.3 * rng.normal(size=(n_users, rank))
    return items.astype(np.float32), users.astype(np.float32)


def test_exact_query_ranks_by_inner_product_with_ties_by_index():
    items = np.array([[1, 0, 0], [0, 1, 0], [2, 0, 0], [1, 0, 0]], dtype=np.float32)
    assert ann.exact_query(items, np.array([1, 0, 0]), 3).tolist() == [2, 0, 3]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    items, users = planted()
    choice = ann.tune(items, users, k=20, recall_target=0.9, out_dir=tmp_path_factory.mktemp("tune"),
                      annoy_trees=(10,), hnsw_ef=(20, 100))
    return items, users, choice


def test_every_kind_is_measured_and_exact_has_recall_one(tuned):
    _, _, choice = tuned
    kinds = {r["kind"] for r in choice.table}
    assert kinds == set(ann.KINDS)
    assert all(r["recall"] == 1.0 for r in choice.table if r["kind"] == "exact")
    assert max(r["recall"] for r in choice.table if r["kind"] == "hnsw_ip") >= 0.95
    for r in choice.table:
        assert r["p99_ms"] >= r["p50_ms"] > 0 and r["bytes"] > 0


def test_the_pareto_front_keeps_the_settings_nothing_cheaper_beats():
    # (cost, recall): 4 is beaten by 0 (cheaper, better); 3 ties 2 exactly (the first is kept);
    # 5 costs more than 2 for no more recall; 1 is the cheapest; 6 is the most accurate
    points = [(2.0, 0.5), (1.0, 0.2), (3.0, 0.9), (3.0, 0.9), (2.5, 0.4), (4.0, 0.9), (5.0, 0.95)]
    assert ann.pareto_front(points) == [1, 0, 2, 6]
    assert ann.pareto_front([]) == []
    assert ann.pareto_front([(1.0, 0.7)]) == [0]


def test_the_tradeoff_plot_renders_from_a_tuning_table(tuned, tmp_path):
    _, _, choice = tuned
    path = ann.plot_tradeoffs(choice.table, tmp_path / "tradeoffs.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_the_cheapest_setting_meeting_the_target_wins_else_exact():
    table = [
        {"kind": "exact", "params": {}, "recall": 1.0, "p50_ms": 2.0, "p99_ms": 3.0},
        {"kind": "hnsw_ip", "params": {"ef": 50}, "recall": 0.93, "p50_ms": 0.05, "p99_ms": 0.1},
        {"kind": "hnsw_ip", "params": {"ef": 100}, "recall": 0.97, "p50_ms": 0.09, "p99_ms": 0.2},
        {"kind": "annoy_dot", "params": {}, "recall": 0.96, "p50_ms": 4.0, "p99_ms": 6.0},
    ]
    assert ann.choose(table, 0.95)["params"] == {"ef": 100}
    assert ann.choose(table, 0.99)["kind"] == "exact"
    assert ann.choose(table, 0.9)["params"] == {"ef": 50}


def test_save_load_round_trip_and_checksum(tuned, tmp_path):
    items, users, choice = tuned
    path = ann.save_index(choice, items, tmp_path / "index")
    index = ann.load_index(path)
    assert index.kind == choice.kind
    got = index.query(users[0], 20)
    assert len(got) == 20 and len(set(got.tolist())) == 20
    meta = (path / "index.json").read_text()
    target = path / ("item_factors.npy" if choice.kind == "exact" else ann._FILES[choice.kind])
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt: sha256"):
        ann.load_index(path)
    assert "sha256" in meta


def test_annoy_angular_on_augmented_vectors_finds_inner_product_neighbours(tmp_path):
    items = np.array([[1, 0], [0, 1], [3, 0], [0, 0.5]], dtype=np.float32)
    choice = ann.tune(items, np.array([[1, 0.1]], dtype=np.float32), k=2, recall_target=0.5, out_dir=tmp_path,
                      kinds=("exact", "annoy_angular_aug"), annoy_trees=(5,))
    rows = [r for r in choice.table if r["kind"] == "annoy_angular_aug"]
    assert max(r["recall"] for r in rows) == 1.0


def test_tuning_reports_ranking_metrics_through_each_index(tmp_path):
    import scipy.sparse as sp

    items, users = planted(n_items=2000, n_users=50)
    exact_top = ann.exact_query  # the held-out "relevant" tracks: each user's exact top-5, so exact scores P@10 = 0.5
    rows = [u for u in range(50) for _ in range(5)]
    cols = [i for u in range(50) for i in exact_top(items, users[u], 5)]
    relevant = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(50, 2000))
    choice = ann.tune(items, users, k=10, recall_target=0.9, out_dir=tmp_path, kinds=("exact", "hnsw_ip"),
                      hnsw_ef=(10, 100), relevant=relevant)
    exact = next(r for r in choice.table if r["kind"] == "exact")
    assert exact["precision"] == pytest.approx(0.5) and exact["map"] == pytest.approx(1.0)
    for r in choice.table:
        assert 0 <= r["map"] <= exact["map"] and {"precision", "ndcg"} <= set(r)


def test_the_index_grid_comes_from_the_dag_params_and_exact_is_always_measured(tmp_path):
    from pipeline.runconfig import RunConfig

    default = RunConfig().index()
    assert default.kinds == ("exact", "hnsw_ip", "ivf_sq8_rerank", "norm_ranges") and default.hnsw_M == (16, 32)
    assert default.annoy_trees == (10, 50) and default.ivf_nprobe == (16, 32, 64, 128, 256, 512) and default.sample == 200_000
    lean = RunConfig.from_params({"index_kinds": ["hnsw_ip"], "hnsw_M": [8], "hnsw_ef_construction": "40"}).index()
    assert lean.kinds == ("exact", "hnsw_ip")
    items, users = planted(n_items=3000, n_users=20)
    choice = ann.tune(items, users, k=10, recall_target=0.5, out_dir=tmp_path, kinds=lean.kinds, hnsw_M=lean.hnsw_M,
                      hnsw_ef_construction=lean.hnsw_ef_construction, hnsw_ef=(20,))
    assert [(r["kind"], r["params"]) for r in choice.table] == [
        ("exact", {}), ("hnsw_ip", {"M": 8, "ef_construction": 40, "ef": 20})]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hnsw_ip-M8.hnsw"]


@pytest.mark.parametrize("bad, message", [
    ({"index_kinds": ["faiss"]}, "param index_kinds=['faiss']: 'faiss' is not one of 'annoy_dot'"),
    ({"hnsw_M": []}, "param hnsw_M=[] needs at least one value"),
    ({"hnsw_M": [0]}, "param hnsw_M=[0]: 0 is below the minimum 2"),
    ({"annoy_trees": [0]}, "param annoy_trees=[0]: 0 is below the minimum 1"),
    ({"hnsw_ef_construction": 0}, "param hnsw_ef_construction=0: 0 is below the minimum 1"),
])
def test_a_bad_index_grid_is_refused_naming_the_param(bad, message):
    from pipeline.runconfig import RunConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        RunConfig.from_params(bad)


def seed_shaped(n_items, n_users=100, rank=25, clusters=40, seed=0):
    """Factors shaped like an ALS fit on listening data (benchmarks/topk_scale.py): taste clusters, and a
    norm that grows with popularity, so the long tail of rarely played tracks has short vectors."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, rank))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    v = centers[rng.integers(0, clusters, n_items)] + rng.standard_normal((n_items, rank)) * 0.6 / np.sqrt(rank)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    items = v * (0.05 + np.power(1.0 / (rng.permutation(n_items) + 1.0), 0.35))[:, None]
    users = centers[rng.integers(0, clusters, n_users)] + rng.standard_normal((n_users, rank)) * 0.8 / np.sqrt(rank)
    return items.astype(np.float32), (users * rng.lognormal(0, 0.5, (n_users, 1))).astype(np.float32)


@pytest.fixture(scope="module")
def long_tail(tmp_path_factory):
    items, users = seed_shaped(60_000)
    choice = ann.tune(items, users, k=100, recall_target=0.95, out_dir=tmp_path_factory.mktemp("tail"),
                      kinds=("exact", "hnsw_ip", "hnsw_aug", "ivf_sq8_rerank", "norm_ranges"), hnsw_M=(16,),
                      hnsw_ef=(100, 200))
    return items, users, choice


def test_on_a_long_tail_of_short_vectors_the_inverted_file_keeps_its_recall_where_raw_hnsw_does_not(long_tail):
    _, _, choice = long_tail
    best = {kind: max(r["recall"] for r in choice.table if r["kind"] == kind)
            for kind in ("hnsw_ip", "hnsw_aug", "ivf_sq8_rerank")}
    assert best["ivf_sq8_rerank"] >= 0.95 and best["hnsw_ip"] < 0.9, best
    assert best["hnsw_aug"] > best["hnsw_ip"], best  # the extra dimension helps the graph too
    ivf = [r for r in choice.table if r["kind"] == "ivf_sq8_rerank"]
    assert [r["params"]["nprobe"] for r in ivf] == [16, 32, 64, 128, 256, 512][: len(ivf)]  # stopped once it held
    assert ivf[-1]["bytes"] < 40 * len(long_tail[0])  # 8-bit codes: 26 bytes per track plus its id


@pytest.mark.parametrize("kind", ["ivf_sq8_rerank", "hnsw_aug", "norm_ranges"])
def test_norm_aware_indexes_round_trip_and_refuse_an_altered_file(long_tail, kind, tmp_path):
    items, users, choice = long_tail
    rows = [r for r in choice.table if r["kind"] == kind]
    one = ann.IndexChoice(choice.table, rows[-1], 0.95, choice.files)
    path = ann.save_index(one, items, tmp_path / kind)
    from pipeline.topk import topk

    loaded = ann.load_index(path)  # answers as the index that was measured did, from the bundle's files
    measured = ann._measure(loaded, items, users, topk(users, items, 100), 100)
    assert measured["recall"] == pytest.approx(rows[-1]["recall"], abs=1e-9)
    data = bytearray((path / ann._FILES[kind]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / ann._FILES[kind]).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt: sha256"):
        ann.load_index(path)


def test_above_the_sample_size_only_the_winner_is_built_at_full_size_and_meets_the_target(tmp_path):
    items, users = seed_shaped(50_000, n_users=60)
    choice = ann.tune(items, users, k=50, recall_target=0.9, out_dir=tmp_path, sample=10_000,
                      kinds=("exact", "hnsw_ip", "ivf_sq8_rerank"), hnsw_M=(8, 16), hnsw_ef=(50, 100))
    sample = [r for r in choice.table if r["stage"] == "sample"]
    full = [r for r in choice.table if r["stage"] == "full"]
    assert {r["kind"] for r in sample} == {"exact", "hnsw_ip", "ivf_sq8_rerank"}
    assert {r["catalogue"] for r in sample} == {10_000} and {r["catalogue"] for r in full} == {50_000}
    assert {r["kind"] for r in full} == {"exact", choice.kind} and choice.chosen in full  # no norm_ranges asked
    assert choice.chosen["recall"] >= 0.9  # verified on the whole catalogue, not only on the sample
    assert choice.explored == sample
    assert len(set(choice.files.values())) == 1 and not (tmp_path / "sample").exists() or \
        not any((tmp_path / "sample").iterdir())  # the sample's builds are gone


def test_the_cell_count_grows_with_the_catalogue_and_leaves_faiss_enough_training_points():
    assert [ann.ivf_nlist(n) for n in (10, 1000, 60_000, 1_310_083, 6_300_000, 21_800_000)] == \
        [1, 16, 1024, 8192, 16384, 16384]
    assert all(ann.ivf_nlist(n) * 40 <= n for n in (40, 1000, 5000, 60_000))


def test_norm_ranges_answer_exactly_what_exact_search_answers_ties_included():
    rng = np.random.default_rng(3)
    items = (rng.standard_normal((20_000, 8)) * rng.lognormal(0, 1, (20_000, 1))).astype(np.float32)
    items[[7, *range(5000, 5010)]] = 0
    items[[7, *range(5000, 5010)], 0] = 100.0  # eleven equal vectors, longer than any other
    ranges = ann.NormRanges.build(items)

    def reference(q, k):  # every score, sorted: best first, ties by item index
        return np.lexsort((np.arange(len(items)), -(items @ q)))[:k].tolist()

    for q in rng.standard_normal((30, 8)).astype(np.float32):
        assert ranges.query(q, 50).tolist() == reference(q, 50)
    top = ranges.query(np.eye(8, dtype=np.float32)[0], 20).tolist()
    assert top == reference(np.eye(8, dtype=np.float32)[0], 20)
    assert top[:11] == [7, *range(5000, 5010)]  # tied: by index


def test_norm_ranges_skip_most_of_a_long_tail(long_tail):
    _, _, choice = long_tail
    row = next(r for r in choice.table if r["kind"] == "norm_ranges")
    exact = next(r for r in choice.table if r["kind"] == "exact")
    assert row["recall"] == 1.0 and row["bytes"] < 120 * 60_000
    assert choice.kind in ("norm_ranges", "ivf_sq8_rerank")  # not exact: an index meets the target faster


def test_norm_ranges_are_measured_at_full_size_whatever_won_the_sample(tmp_path):
    items, users = seed_shaped(30_000, n_users=40)
    choice = ann.tune(items, users, k=50, recall_target=0.9, out_dir=tmp_path, sample=5_000,
                      kinds=("exact", "ivf_sq8_rerank", "norm_ranges"))
    full = {r["kind"] for r in choice.table if r["stage"] == "full"}
    assert {"exact", "norm_ranges"} <= full and choice.chosen["stage"] == "full"
    won = ann.choose([r for r in choice.table if r["stage"] == "sample"], 0.9)
    ranged = next(r for r in choice.table if r["stage"] == "full" and r["kind"] == "norm_ranges")
    skipped = (won["kind"] != "norm_ranges" and ranged["recall"] >= 0.9
               and not ann._worth_building(won, ranged["p50_ms"], 30_000, 5_000))
    # built only if it could answer at least WORTH_BUILDING times faster than norm_ranges
    assert (won["kind"] in full) != skipped or won["kind"] in ("exact", "norm_ranges")


def test_a_graph_is_built_at_full_size_only_when_its_grown_sample_time_promises_to_beat_norm_ranges():
    won = {"kind": "hnsw_ip", "p50_ms": 0.092}  # 10M listens, v1252: HNSW M32 ef 50 on a 200,000-track sample
    # 1.3M tracks: sqrt(6.6) grows 0.092 to 0.24 ms; norm_ranges at 0.27 ms needs no 207 s build
    assert not ann._worth_building(won, 0.27, 1_310_083, 200_000)
    assert ann._worth_building(won, 0.27, 200_000, 200_000)  # no growth: 0.27 > 2 x 0.092
    assert ann._worth_building(won, 1.0, 1_310_083, 200_000)  # norm_ranges slow enough to be beaten
    assert ann._worth_building(won, None, 1_310_083, 200_000)  # norm_ranges missed the target or was not asked
    assert not ann._worth_building(won, 0.18, 100_000, 200_000)  # a smaller catalogue is not grown down
