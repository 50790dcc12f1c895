"""The run contract: one RunConfig behind the DAG params and the CLI flags, a named run layout, the
promotion rule on its own, and a select step that names the upstream failure. No Spark, no Airflow."""

from __future__ import annotations

import json
import re
from dataclasses import fields

import pytest

from pipeline.intervals import Interval
from pipeline.paths import RunLayout
from pipeline.promotion import decide_alias
from pipeline.runconfig import RunConfig


def test_defaults_are_a_valid_run_and_round_trip_through_params():
    cfg = RunConfig()
    assert RunConfig.from_params(cfg.to_params()) == cfg
    assert RunConfig.from_params(json.loads(json.dumps(cfg.to_params()))) == cfg  # what an XCom or a conf holds
    assert len(cfg.als_configs()) == 9 and len(cfg.popularity_configs()) == 9
    # the default ALS sweep halves its nine configurations by three: 9 fits of 2 iterations, 3 of 6, 1 of 15
    assert str(cfg.als_plan()) == ("successive halving (rate 3): 9 at 2 iterations → 3 at 6 iterations → 1 at 15 "
                                   "iterations; 51 of 135 iterations")


@pytest.mark.parametrize("params, message", [
    ({"hnsw_M": [0]}, "param hnsw_M=[0]: 0 is below the minimum 2"),
    ({"hnsw_m": [16]}, "unknown param 'hnsw_m'; the run knows: alphas"),
    ({"ranks": [10, 10]}, "param ranks=[10, 10] repeats 10; give each value once"),
    ({"alphas": []}, "param alphas=[] needs at least one value"),
    ({"alphas": [0]}, "param alphas=[0.0]: 0.0 must be greater than 0"),
    ({"k": 0}, "param k=0: 0 is below the minimum 1"),
    ({"k": 2.5}, "param k=2.5 must be an integer"),
    ({"split_fraction": 1.5}, "param split_fraction=1.5: 1.5 is above the maximum 1"),
    ({"engine": "gpu"}, "param engine='gpu': 'gpu' is not one of 'spark', 'implicit'"),
    ({"exclude_seen": "maybe"}, "param exclude_seen='maybe' must be a boolean"),
    ({"index_kinds": ["faiss"]}, "'faiss' is not one of 'annoy_dot', 'annoy_angular_aug', 'hnsw_ip'"),
    ({"families": ["als", "bpr"]}, "param families=['als', 'bpr'] must include 'popularity': it is the baseline"),
    ({"families": ["popularity", "svd"]}, "param families=['popularity', 'svd']: 'svd' is not one of 'popularity'"),
    ({"engine_grids": {"svd": [{"factors": [8]}]}}, "param engine_grids names 'svd', which is not an engine family"),
    ({"families": ["popularity", "bpr"], "engine_grids": {"bpr": [{"factorz": [8]}]}},
     "param engine_grids['bpr']: bpr has no parameter(s) ['factorz']; its parameters are ['factors'"),
    ({"families": ["popularity", "lmf"], "engine_grids": {"lmf": [{"transform": ["sqrt"]}]}},
     "param engine_grids['lmf']: transform='sqrt' is not allowed; choose one of ('raw', 'log1p', 'binary')"),
    ({"engine_grids": "{bpr"}, "param engine_grids is not valid JSON"),
])
def test_a_bad_param_is_refused_with_one_line_naming_it(params, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        RunConfig.from_params(params)
    assert "\n" not in str(err.value)


def test_values_typed_into_the_ui_are_coerced_to_the_field_type():
    cfg = RunConfig.from_params({"k": "50", "exclude_seen": "true", "ranks": "8,16", "alphas": [1, 2],
                                 "train_window_days": None})
    assert (cfg.k, cfg.exclude_seen, cfg.ranks, cfg.alphas, cfg.train_window_days) == (50, True, (8, 16),
                                                                                        (1.0, 2.0), 0)
    with pytest.raises(AttributeError):
        cfg.k = 10  # frozen: a run's settings do not change under it


def test_every_field_is_a_dag_param_with_its_type_default_and_limits():
    specs = RunConfig.param_specs()
    assert list(specs) == [f.name for f in fields(RunConfig)]
    assert specs["hnsw_M"] == {"default": [16, 32], "type": "array", "items": {"type": "integer"},
                               "description": "HNSW: M (graph degree) to build. At least one value, each once, "
                                              "each >= 2 and <= 512."}
    assert specs["input_format"]["enum"][0] == "auto"
    assert specs["train_window_days"]["type"] == ["integer", "null"]
    for name, spec in specs.items():
        assert spec["description"] and spec["type"], name


def test_families_sweep_their_grids_with_readable_unique_labels():
    cfg = RunConfig.from_params({"families": ["popularity", "item_knn", "bpr", "als_explicit"], "seed": 3,
                                 "engine_grids": json.dumps({"bpr": [{"factors": [16, 32], "iterations": 5}]})})
    assert cfg.als_configs() == []  # ALS left out of families
    labels = [c.label for c in cfg.engine_configs()]
    assert labels[:2] == ["item_knn similarity=bm25 K=100 k1=1.2 b=0.75 input=raw",
                          "item_knn similarity=cosine K=500 input=log1p"]  # the default grid
    assert labels[2:4] == ["bpr factors=16 lr=0.01 reg=0.01 iters=5", "bpr factors=32 lr=0.01 reg=0.01 iters=5"]
    assert len(labels) == 8 and len(set(labels)) == 8 and {c.seed for c in cfg.engine_configs()} == {3}
    assert RunConfig.from_params(cfg.to_params()) == cfg
    spec = RunConfig.param_specs()["engine_grids"]
    assert spec["type"] == "object" and set(spec["default"]) == {"item_knn", "bpr", "lmf", "lightfm", "als_explicit",
                                                                  "neural_mf"}
    assert RunConfig().families == ("popularity", "als") and RunConfig().engine_configs() == []


def test_grid_labels_and_keys_are_unique_for_any_grid():
    cfg = RunConfig.from_params({"ranks": [10, 20], "reg_params": [0.1, 0.1000001, 1e-05], "alphas": [0.5, 2],
                                 "max_iters": [5, 10], "halving_rate": 1, "betas": [1, 1.5, 10]})
    als = cfg.als_configs()
    assert len(als) == 24 and len({c.label for c in als}) == 24 and len({c.key for c in als}) == 24
    assert als[0].label == "spark rank=10 reg=0.1 alpha=0.5 iters=5 log"
    assert {c.label for c in als if c.max_iter == 10} and {c.label for c in als if c.max_iter == 5}
    pops = cfg.popularity_configs()
    assert len({c.label for c in pops}) == len(pops) == 5


def test_the_layout_names_every_output_under_the_run_folder(tmp_path):
    lay = RunLayout.for_run("manual__2026-01-01T00:00:00+00:00", home=tmp_path)
    assert lay.root == tmp_path / "runs" / "manual__2026-01-01T00-00-00-00-00"
    from pipeline.paths import IngestLayout

    names = [n for n in dir(RunLayout) if isinstance(getattr(RunLayout, n), property) and n not in ("results", "ingest")]
    paths = [getattr(lay, n) for n in names]
    paths += [getattr(lay.ingest, n) for n in dir(IngestLayout) if isinstance(getattr(IngestLayout, n), property)]
    assert all(lay.root in p.parents for p in paths)
    assert len(set(paths)) == len(paths)  # no two names for one place
    assert lay.results == (lay.popularity, lay.sweep)
    with pytest.raises(FileNotFoundError, match="the run's first task \\(start\\) did not finish"):
        lay.read_record()


def test_select_names_the_upstream_task_that_failed(tmp_path, monkeypatch):
    from pipeline import stages

    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    ref = stages.RunRef(dag_id="music_recs_nightly", dag_run_id="r1", run_key="r1")
    with pytest.raises(RuntimeError, match="upstream task 'start' failed"):
        stages.select(ref)
    ref.layout.root.mkdir(parents=True)
    ref.layout.record.write_text("{}")
    ref.layout.ingest.root.mkdir()
    ref.layout.ingest.validate_summary.write_text(json.dumps({"success": False, "rows_in": 10}))
    with pytest.raises(RuntimeError, match="upstream task 'validate' failed .* says the batch failed"):
        stages.select(ref)
    ref.layout.ingest.validate_summary.write_text(json.dumps({"success": True}))
    with pytest.raises(RuntimeError, match="upstream task 'dedup_and_map' failed"):
        stages.select(ref)


@pytest.mark.parametrize("incumbent, difference, alias, why", [
    (None, None, "champion", "no champion yet"),
    ("3", None, "champion", "already champion"),
    ("2", None, "champion", "incumbent v2 has no bundle to re-score"),
    ("2", Interval(0.010, 0.002, 0.018), "champion",
     "test MAP@100 better than incumbent v2 beyond noise: difference +0.01000 [+0.00200, +0.01800]"),
    # better on average, but inside the noise: the champion stays
    ("2", Interval(0.004, -0.003, 0.011), "challenger",
     "test MAP@100 not better than incumbent v2 beyond noise: difference +0.00400 [-0.00300, +0.01100]"),
    ("2", Interval(-0.02, -0.03, -0.01), "challenger",
     "test MAP@100 not better than incumbent v2 beyond noise: difference -0.02000 [-0.03000, -0.01000]"),
])
def test_the_alias_decision(incumbent, difference, alias, why):
    d = decide_alias(k=100, version="3", incumbent_version=incumbent, difference=difference)
    assert (d.alias, d.reason) == (alias, why)


def test_cli_flags_that_set_a_run_param_take_its_default_type_and_choices():
    import argparse

    from pipeline.cli import build_parser

    specs = RunConfig.param_specs()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    seen = set()
    for command in ("ingest", "split"):  # the stages a run also runs (synth's --seed seeds the generator)
        for action in sub.choices[command]._actions:
            if action.dest in specs:
                seen.add(action.dest)
                spec = specs[action.dest]
                assert action.default == spec["default"] or action.required, (command, action.dest)
                assert action.help == spec["description"], (command, action.dest)
                assert action.choices == spec.get("enum"), (command, action.dest)
    assert {"input_format", "max_quarantine_share", "split_strategy", "split_fraction", "seed", "test_quantile",
            "train_window_days"} <= seen


def _row(label, model, value, **params):
    return {"label": label, "status": "ok", "params": {"model": model, **params},
            "metrics": {"val_map_at_100": value}}


def test_a_best_configuration_on_its_grids_edge_names_the_param_to_widen():
    from pipeline.results import grid_axes, grid_edges

    cfg = RunConfig(ranks=(16, 32, 64), reg_params=(0.03, 0.1, 0.3), alphas=(1.0,), max_iters=(15,),
                    families=("popularity", "als", "item_knn"),
                    engine_grids={"item_knn": [{"similarity": ["cosine"], "neighbours": [100, 500]}]})
    axes = grid_axes(cfg)
    board = [_row("rank 64", "als", 0.2, rank=64, reg_param=0.1, alpha=1.0, max_iter=15),
             _row("knn 500", "item_knn", 0.19, similarity="cosine", neighbours=500),
             _row("rank 32", "als", 0.18, rank=32, reg_param=0.03, alpha=1.0, max_iter=15)]
    edges = grid_edges(board, axes, ["als"])
    assert len(edges) == 1 and "rank=64 is the largest value of its grid (16, 32, 64): widen ranks above it" in edges[0]
    # an interior best, or an axis of one value (alpha, max_iter here), says nothing
    assert grid_edges(board[2:], axes, ["als"]) == [
        "rank 32 is the best als configuration and its reg_param=0.03 is the smallest value of its grid "
        "(0.03, 0.1, 0.3): widen reg_params below it"]
    assert grid_edges(board[1:2], axes, ["item_knn", "als"]) == [
        "knn 500 is the best item_knn configuration and its neighbours=500 is the largest value of its grid "
        "(100, 500): widen engine_grids['item_knn'] neighbours above it"]
    # under successive halving an early-stopped configuration's iterations are no edge
    assert "max_iter" not in grid_axes(RunConfig(max_iters=(15,), halving_rate=2))["als"]


def test_an_empty_exclude_seen_is_decided_from_the_log_at_split_and_read_by_every_later_task(tmp_path, monkeypatch):
    from pipeline import stages
    from pipeline.data import SplitData
    from pipeline.split import seen_protocol

    assert seen_protocol(has_timestamps=False, fmt="hetrec")[0] is True  # plays summed per pair
    assert seen_protocol(has_timestamps=True, fmt="movielens")[0] is True  # one rating per pair
    value, why = seen_protocol(has_timestamps=True, fmt="listenbrainz")
    assert value is False and "replay" in why
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    ref = stages.RunRef(dag_id="music_recs_nightly", dag_run_id="r1", run_key="r1")
    ref.layout.root.mkdir(parents=True)
    ref.layout.record.write_text(json.dumps({"config": RunConfig().to_params()}))
    assert RunConfig().exclude_seen is None and stages.Run.open(ref).cfg.exclude_seen is None  # before the split
    stats = SplitData(ref.layout.split).stats_path
    stats.parent.mkdir(parents=True)
    stats.write_text(json.dumps({"exclude_seen": {"value": True, "why": "no timestamps"}}))
    run = stages.Run.open(ref)
    assert run.cfg.exclude_seen is True and run.cfg.eval().exclude_seen is True and run.cfg.protocol == "exclude_seen"
    # what the user set is never overridden
    ref.layout.record.write_text(json.dumps({"config": RunConfig(exclude_seen=False).to_params()}))
    assert stages.Run.open(ref).cfg.exclude_seen is False
