"""End to end, the run contract under `airflow dags test`: a bad param stops the first task before any
Spark job, and a failing popularity variant fails only itself while the ALS sweep (a grid over two
maxIter values, with unique map indexes and MLflow run names) runs and a model is promoted."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_runs import airflow_env

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# A fault planted in the real code path, in every Python process of the run (Airflow's and the
# spark-submit drivers'): the "plays" popularity variant raises; the other variants are untouched.
FAULT = '''
import pipeline.models.popularity as _pop

_fit = _pop.fit


def _faulty_fit(plays, listeners, cfg):
    if cfg.variant == "plays":
        raise RuntimeError("planted fault in the plays variant")
    return _fit(plays, listeners, cfg)


_pop.fit = _faulty_fit
'''


def _env(home: Path, extra_path: Path | None = None) -> dict[str, str]:
    env = airflow_env(home, migrate_db=False)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path), env.get("PYTHONPATH", "")) if p)
    return env


def _dags_test(env: dict[str, str], conf: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "airflow"), "dags", "test", "music_recs_nightly", "-c", json.dumps(conf)],
                          env=env, capture_output=True, text=True, timeout=1200)


def _states(home: Path) -> dict[str, list[str]]:
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        rows = db.execute("select task_id, state from task_instance order by task_id, map_index").fetchall()
    out: dict[str, list[str]] = {}
    for task, state in rows:
        out.setdefault(task, []).append(state)
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from pipeline import synth

    home = tmp_path_factory.mktemp("contract")
    synth.generate(home / "data" / "demo", n_listens=12_000, seed=5)
    airflow_env(home)  # migrates its metadata DB
    return home


def test_a_bad_param_fails_the_first_task_naming_it_before_any_spark_job(home):
    out = _dags_test(_env(home), {"input_path": str(home / "data" / "demo"), "hnsw_M": [0]})
    log = out.stdout + out.stderr
    assert "param hnsw_M=[0]: 0 is below the minimum 2" in log, log[-4000:]
    states = _states(home)
    assert states["start"] == ["failed"] and states["validate"] == ["upstream_failed"], states
    assert "upstream task 'start' failed" in log  # select_best names the cause, not "every model failed"
    assert "SparkContext" not in log and "spark-submit" not in log
    assert not list((home / "runs").glob("*/ingest")), "no stage after start ran"


def test_a_failing_popularity_variant_never_stops_the_als_sweep(home, tmp_path):
    from pipeline import tracking
    from pipeline.serving import MODEL_NAME

    (tmp_path / "sitecustomize.py").write_text(FAULT)
    for p in (home / "runs").glob("*"):  # the first test's run, so this one's folders are the only ones
        import shutil

        shutil.rmtree(p)
    conf = {"input_path": str(home / "data" / "demo"), "ranks": [8], "reg_params": [0.1], "alphas": [1.0],
            "max_iters": [2, 3], "halving_rate": 1, "betas": [10], "engine": "implicit", "index_kinds": ["hnsw_ip"], "hnsw_M": [8],
            "hnsw_ef_construction": 40}
    out = _dags_test(_env(home, extra_path=tmp_path), conf)
    log = out.stdout + out.stderr
    (home / "fault.log").write_text(log)
    assert "planted fault in the plays variant" in log, log[-4000:]

    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        run_id = db.execute("select run_id from dag_run order by id desc limit 1").fetchone()[0]
        rows = db.execute("select task_id, state, rendered_map_index from task_instance where run_id = ?",
                          (run_id,)).fetchall()
    states = {}
    for task, state, _ in rows:
        states.setdefault(task, []).append(state)
    assert states["popularity_sweep"] == ["failed"], states
    assert states["als_sweep"] == ["success", "success"], states
    for task in ("select_best", "test_eval", "build_index", "promote"):
        assert states[task] == ["success"], (task, states)
    labels = sorted(m for task, _, m in rows if task == "als_sweep")
    assert labels == ["implicit rank=8 reg=0.1 alpha=1 iters=2 log", "implicit rank=8 reg=0.1 alpha=1 iters=3 log"]

    os.environ["PIPELINE_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        c = tracking.client()
        exp = c.get_experiment_by_name("music-recs").experiment_id
        parent = c.search_runs([exp], f"tags.`pipeline.role` = 'parent' and tags.`airflow.dag_run_id` = '{run_id}'")[0]
        kids = tracking.children(parent.info.run_id)
        names = [r.info.run_name for r in kids]
        assert len(names) == len(set(names)) == 5, names  # beta 10, listeners, plays, ALS x 2 maxIter
        by_key = {r.data.tags["pipeline.config_key"]: r for r in kids}
        assert by_key["pop-plays"].info.status == "FAILED"
        assert "planted fault" in by_key["pop-plays"].data.tags["pipeline.error"]
        assert all(r.info.status == "FINISHED" for k, r in by_key.items() if k != "pop-plays")
        version = c.get_model_version_by_alias(MODEL_NAME, "champion")
        assert version.tags["airflow.dag_run_id"] == run_id
    finally:
        os.environ.pop("PIPELINE_HOME", None)
