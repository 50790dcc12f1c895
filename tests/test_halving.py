"""Successive halving over the ALS grid: the plan a budget buys, who continues, and a whole run of it."""

from __future__ import annotations

import json

import pytest

from pipeline.halving import plan, survivors
from pipeline.runconfig import RunConfig

SEED_GRID = {"ranks": [10, 20, 25], "reg_params": [0.001, 0.01, 0.1], "alphas": [0.1, 0.5, 0.8, 1.2], "max_iters": [10]}


def test_the_seed_grid_halves_by_three_in_half_the_iterations():
    p = RunConfig(**SEED_GRID, halving_rate=3).als_plan()
    assert (p.configs, p.iterations, p.cost, p.full_cost) == ((36, 12, 4), (2, 6, 10), 184, 360)
    assert str(p) == ("successive halving (rate 3): 36 at 2 iterations → 12 at 6 iterations → 4 at 10 iterations; "
                      "184 of 360 iterations")
    # a budget may still ask for 1 iteration in rung 0 (the default never does: its ranking is noise)
    p = RunConfig(**SEED_GRID, halving_rate=3, halving_budget=112).als_plan()
    assert str(p) == ("successive halving (rate 3): 36 at 1 iteration → 12 at 3 iterations → 4 at 10 iterations; "
                      "112 of 360 iterations")


def test_a_budget_buys_the_longest_first_rung_that_fits():
    costs = {}
    for budget in (112, 183, 184, 300, 360, 10_000):
        p = plan(36, 10, 3, budget)
        assert p.cost <= budget and p.iterations[-1] == 10
        costs[budget] = (p.iterations, p.cost)
    assert costs[112] == costs[183] == ((1, 3, 10), 112)
    assert costs[184] == ((2, 6, 10), 184)
    assert costs[300] == ((5, 10), 300)  # 5 x 3 is past max_iter: the second rung is the last
    assert costs[360] == costs[10_000] == ((10,), 360)  # the whole grid fits: nothing is stopped


def test_a_budget_too_small_and_several_max_iters_are_refused_with_the_param_named():
    with pytest.raises(ValueError, match=r"halving_budget=100 is below .* at least 112"):
        RunConfig(**SEED_GRID, halving_rate=3, halving_budget=100)
    with pytest.raises(ValueError, match=r"max_iters=\[5, 10\] takes one value with halving_rate=2"):
        RunConfig(max_iters=[5, 10], halving_rate=2)


def test_without_halving_the_grid_is_one_rung_as_before():
    cfg = RunConfig(ranks=[10, 20], reg_params=[0.01, 0.1], alphas=[0.5], max_iters=[5, 10], halving_rate=1)
    assert cfg.als_rung(0) == cfg.als_configs() and len(cfg.als_rung(0)) == 8
    assert cfg.als_rung(1) == cfg.als_rung(2) == []


def test_rungs_refit_the_same_configurations_for_more_iterations():
    cfg = RunConfig(**SEED_GRID, halving_rate=3)
    rungs = [cfg.als_rung(r) for r in range(3)]
    assert [{c.max_iter for c in rung} for rung in rungs] == [{2}, {6}, {10}]
    assert [c.label.replace("iters=2 ", "iters=10 ") for c in rungs[0]] == [c.label for c in rungs[2]]
    assert len({c.key for rung in rungs for c in rung}) == 3 * 36  # each fit has its own folder and child run


def test_the_best_finished_results_continue_and_a_failed_one_never_does():
    results = [{"key": "a", "status": "ok", "metrics": {"m": 0.2}},
               {"key": "b", "status": "failed"},
               {"key": "c", "status": "ok", "metrics": {"m": 0.3}},
               {"key": "d", "status": "ok", "metrics": {"m": 0.2}},
               {"key": "e", "status": "missing"}]
    assert [r["key"] for r in survivors(results, 2, "m")] == ["c", "a"]  # ties: key order
    assert [r["key"] for r in survivors(results, 9, "m")] == ["c", "a", "d"]


@pytest.mark.spark
def test_a_halving_run_fits_the_best_share_longer_and_mlflow_says_where_each_stopped(spark, tmp_path):
    from pipeline import tracking
    from pipeline.results import leaderboard
    from pipeline_runs import isolated_home, run_pipeline

    params = {"engine": "implicit", "ranks": [4, 16], "reg_params": [0.1], "alphas": [0.5, 5.0], "max_iters": [8],
              "betas": [100], "halving_rate": 2}
    with isolated_home(tmp_path / "home", n_listens=15_000, seed=3):
        run = run_pipeline("halving", params)
        ref = run["ref"]
        board = leaderboard([ref.layout.sweep], 100)
        by_iters: dict[int, list[dict]] = {}
        for row in board:
            by_iters.setdefault(row["params"]["max_iter"], []).append(row)
        assert sorted((i, len(rows)) for i, rows in by_iters.items()) == [(2, 4), (4, 2), (8, 1)]

        def grid_point(row):
            return {k: v for k, v in row["params"].items() if k != "max_iter"}

        # the two best at 2 iterations went on to 4, the best of those to 8
        best2 = [grid_point(r) for r in by_iters[2][:2]]
        assert sorted(map(json.dumps, best2)) == sorted(json.dumps(grid_point(r)) for r in by_iters[4])
        assert grid_point(by_iters[8][0]) == grid_point(by_iters[4][0])
        c = tracking.client()
        tags = {r["key"]: c.get_run(r["mlflow_run_id"]).data.tags.get("pipeline.halving") for r in board}
        assert sorted(tags.values(), key=str) == sorted(
            ["continued to 4 iterations"] * 2 + ["stopped at 2 iterations (rung 0)"] * 2
            + ["continued to 8 iterations", "stopped at 4 iterations (rung 1)", None], key=str)
        table = ref.layout.leaderboard_table.read_text()
        assert "successive halving (rate 2): 4 at 2 iterations → 2 at 4 iterations → 1 at 8 iterations; 24 of 32" \
            in table
        assert (ref.layout.select / "map_vs_iterations.png").stat().st_size > 10_000  # one line per grid point


def test_a_rungs_configurations_are_shared_evenly_among_the_applications():
    from pipeline.stages import shares

    grid = list(range(36))
    assert [len(s) for s in shares(grid, 0)] == [1] * 36  # the default: one application per configuration
    assert [len(s) for s in shares(grid, 3)] == [12, 12, 12]
    assert [len(s) for s in shares(grid[:4], 3)] == [1, 1, 2]
    assert [len(s) for s in shares(grid[:2], 5)] == [1, 1]  # never an application with nothing to fit
    assert sum(shares(grid, 5), []) == grid  # every configuration once, in grid order
    assert shares([], 3) == []


@pytest.mark.spark
def test_one_application_fits_its_share_as_one_application_each_would_and_a_retry_fits_none_again(tmp_path):
    from pipeline import stages, tracking
    from pipeline.jobs import als_job
    from pipeline_runs import isolated_home

    params = {"ranks": [4, 8], "reg_params": [0.1], "alphas": [0.5], "max_iters": [3], "betas": [100],
              "als_applications": 1, "halving_rate": 1}
    with isolated_home(tmp_path / "home", n_listens=15_000, seed=5):
        ref = stages.RunRef(dag_id="music_recs_nightly", dag_run_id="shared", run_key="shared")
        stages.start(ref, params)
        stages.split(ref, stages.dedup(ref, stages.validate(ref)))
        (submit,) = stages.als_submit_kwargs(ref)
        assert submit["name"] == "spark rank=4 reg=0.1 alpha=0.5 iters=3 log +1 more"
        shared = als_job.main(submit["application_args"])
        assert [r["status"] for r in shared] == ["ok", "ok"]
        # the better rank is an edge of the grid (4, 8): the leaderboard, the log and MLflow say which param to widen
        best = stages.select(ref)
        rank = best["params"]["rank"]
        side = "largest value of its grid (4, 8): widen ranks above" if rank == 8 else \
            "smallest value of its grid (4, 8): widen ranks below"
        assert f"Grid edge: {best['label']} is the best als configuration and its rank={rank} is the {side} it." in \
            ref.layout.leaderboard_table.read_text().splitlines()
        assert side in tracking.client().get_run(stages.Run.open(ref).parent).data.tags["pipeline.warning.grid_edge"]
        # the same configurations, each in an application of its own, into another folder
        args = submit["application_args"]
        configs = json.loads(args[args.index("--config") + 1])
        alone = [als_job.main(["--split", str(ref.layout.split), "--out", str(tmp_path / "alone"),
                               "--config", json.dumps(c)]) for c in configs]
        for a, b in zip(shared, alone):
            assert a["key"] == b["key"]
            assert a["metrics"]["val_map_at_100"] == pytest.approx(b["metrics"]["val_map_at_100"], abs=1e-6)
        parent = stages.Run.open(ref).parent
        children = len(tracking.children(parent))
        results = [ref.layout.sweep / r["key"] / "result.json" for r in shared]
        written = [f.stat().st_mtime_ns for f in results]
        again = als_job.main(submit["application_args"])  # the retry of an application that had finished
        assert [r["mlflow_run_id"] for r in again] == [r["mlflow_run_id"] for r in shared]
        assert [f.stat().st_mtime_ns for f in results] == written  # nothing fitted again
        assert len(tracking.children(parent)) == children
        (ref.layout.split / "stats.json").touch()  # the run split again (a re-run): its results are fitted again
        als_job.main(submit["application_args"])
        assert all(f.stat().st_mtime_ns > w for f, w in zip(results, written))
        # a configuration that fails fails only itself: its share goes on, then the application names it
        from pipeline.config import AlsConfig, from_params

        blocked, fine = [{**c, "engine": "implicit", "max_iter": 2} for c in configs]
        keys = [from_params(AlsConfig, {k: v for k, v in c.items() if k != "model"}).key for c in (blocked, fine)]
        in_the_way = tmp_path / "alone" / keys[0] / "val_per_user.npz"  # a folder where its scores go
        in_the_way.mkdir(parents=True)
        (in_the_way / "keep").write_text("")
        with pytest.raises(SystemExit, match=r"^1 of 2 ALS configurations failed .*: implicit rank=4 "):
            als_job.main(["--split", str(ref.layout.split), "--out", str(tmp_path / "alone"),
                          "--config", json.dumps([blocked, fine])])
        status = [json.loads((tmp_path / "alone" / key / "result.json").read_text())["status"] for key in keys]
        assert status == ["failed", "ok"]
