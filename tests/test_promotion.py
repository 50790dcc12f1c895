"""Promotion in the MLflow registry: a worse candidate gets `challenger`, the champion stays, and the
parent run says why; a failing configuration is marked FAILED while the others go on."""

from __future__ import annotations

import pytest

from pipeline import stages, tracking
from pipeline.config import EvalConfig
from pipeline.data import SplitData
from pipeline.paths import RunLayout
from pipeline.results import leaderboard, select_best
from pipeline.serving import MODEL_NAME
from pipeline.sweep import run_config

from pipeline_runs import isolated_home, run_pipeline

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def home(spark, tmp_path_factory):
    with isolated_home(tmp_path_factory.mktemp("home"), n_listens=15_000, seed=11) as home:
        yield home


GOOD = {"engine": "implicit", "ranks": [16], "reg_params": [0.1], "alphas": [1.0], "max_iters": [8], "betas": [100]}


def test_an_als_that_loses_to_popularity_is_not_served_and_the_champion_stays(home):
    first = run_pipeline("run-good", GOOD)
    assert first["promotion"]["alias"] == "champion"
    tested = first["indexed"]["tested"]
    assert tested["best"].startswith("als-") and tested["versus_popularity"]["beyond_noise"], tested
    assert {"test_map_at_100_ci_low", "test_map_at_100_ci_high"} <= set(tested["metrics"])
    # the second run's selected model is a crippled ALS (rank 2, one iteration, regularized to nearly
    # nothing), as if it had won on validation: it loses to popularity on the test window, so the
    # popularity model is what gets served ...
    worse = {**GOOD, "ranks": [2], "max_iters": [1], "reg_params": [10000.0]}
    second = run_pipeline("run-worse", worse, force_selected="als-")
    tested = second["indexed"]["tested"]
    assert tested["validation_winner"].startswith("als-") and tested["best"].startswith("pop-"), tested
    assert "the popularity model is served" in tested["served_because"]
    assert not tested["versus_popularity"]["beyond_noise"]
    # ... and it is no better than the incumbent: challenger, the champion stays
    p = second["promotion"]
    assert p["alias"] == "challenger", p
    assert p["incumbent_version"] == first["promotion"]["version"]
    assert p["incumbent_test_map_at_100"] > p["candidate_test_map_at_100"]
    assert p["difference_test_map_at_100"]["ci_high"] < 0
    c = tracking.client()
    assert str(c.get_model_version_by_alias(MODEL_NAME, "champion").version) == first["promotion"]["version"]
    assert str(c.get_model_version_by_alias(MODEL_NAME, "challenger").version) == p["version"]
    tag = c.get_run(second["record"]["parent_run_id"]).data.tags["pipeline.promotion"]
    assert "challenger" in tag and "not better than incumbent" in tag
    # a retried promote task registers nothing new
    again = stages.promote(second["ref"], second["indexed"])
    assert again["version"] == p["version"] and again["alias"] == "challenger"


def test_a_candidate_better_only_within_noise_does_not_become_champion(home):
    """The same configuration trained again: its test MAP differs from the champion's by noise at most."""
    third = run_pipeline("run-good-again", GOOD)
    p = third["promotion"]
    assert p["alias"] == "challenger", p
    d = p["difference_test_map_at_100"]
    assert d["ci_low"] <= 0 <= d["ci_high"], d
    assert "beyond noise" in p["reason"]


def test_a_failed_configuration_is_marked_failed_and_the_sweep_goes_on(home):
    lay = RunLayout.for_run("run-good", home=home)
    ctx = lay.read_record()
    data = SplitData(lay.split)

    def broken():
        raise RuntimeError("out of memory (simulated)")

    with pytest.raises(RuntimeError):
        run_config(key="als-broken", label="broken", params={"model": "als"}, out_dir=lay.sweep,
                   data=data, eval_cfg=EvalConfig(), fit=broken, parent_run_id=ctx["parent_run_id"])
    kids = {r.data.tags["pipeline.config_key"]: r for r in tracking.children(ctx["parent_run_id"])}
    assert kids["als-broken"].info.status == "FAILED"
    assert "out of memory" in kids["als-broken"].data.tags["pipeline.error"]
    board = leaderboard(lay.results, 100)
    assert board[-1]["key"] == "als-broken" and board[-1]["status"] == "failed"
    assert select_best(board, 100)["status"] == "ok"
