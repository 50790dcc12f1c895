"""The DAG file: imports cleanly, wires the flow of the README, and does no heavy work at parse time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.airflow_env import embedded_env

REPO = Path(__file__).resolve().parents[1]
DAG_FILE = REPO / "dags" / "music_recs_nightly.py"


def airflow_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **embedded_env(tmp_path / "home"), "AIRFLOW_HOME": str(tmp_path / "airflow")}


def test_dag_parses_without_heavy_imports_or_io(tmp_path):
    probe = f"""
import json, sys
before = set(sys.modules)
import runpy
runpy.run_path({str(DAG_FILE)!r})
heavy = sorted(m for m in ("pyspark", "pandas", "mlflow", "great_expectations", "annoy", "hnswlib", "implicit", "scipy")
               if m in sys.modules and m not in before)
print(json.dumps(heavy))
"""
    out = subprocess.run([sys.executable, "-c", probe], env=airflow_env(tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert not (tmp_path / "home").exists(), "parsing the DAG wrote to the pipeline home"


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags["music_recs_nightly"]


def test_dag_wires_the_flow(dag):
    def downstream(task_id):
        return set(dag.get_task(task_id).downstream_task_ids)

    assert downstream("start") >= {"validate"}
    assert downstream("validate") >= {"dedup_and_map"}
    assert downstream("dedup_and_map") >= {"split"}
    assert downstream("split") >= {"popularity_sweep", "als_configs"}
    assert downstream("als_configs") >= {"als_sweep"}
    assert downstream("split") >= {"engine_configs"} and downstream("engine_configs") >= {"engine_sweep"}
    # successive halving's later rungs: each picks the survivors of the one before, then submits them
    assert downstream("als_sweep") >= {"halve_1"} and downstream("halve_1") >= {"als_rung_1"}
    assert downstream("als_rung_1") >= {"halve_2"} and downstream("halve_2") >= {"als_rung_2"}
    assert all("select_best" in downstream(t)
               for t in ("als_sweep", "als_rung_1", "als_rung_2", "popularity_sweep", "engine_sweep"))
    assert "test_eval" in downstream("select_best")
    assert "build_index" in downstream("test_eval")
    assert "promote" in downstream("build_index")
    # the health checks run beside build_index; a night that fails them is not promoted
    assert "health" in downstream("test_eval") and downstream("health") == {"promote"}
    assert all(type(cb).__name__ == "WebhookNotifier" for cb in dag.get_task("health").on_failure_callback)
    # retention last, as a teardown: it runs whatever became of the night and never decides the run's state
    assert downstream("promote") == {"retain"} and dag.get_task("retain").is_teardown


def test_dag_schedule_and_params(dag):
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.timetable.expression == "0 3 * * *"
    params = dag.params
    for name in ("input_path", "input_format", "k", "ranks", "reg_params", "alphas", "max_iters", "betas",
                 "halving_rate", "halving_budget", "als_applications",
                 "health_checks", "health_max_ratio", "health_max_map_drop",
                 "train_window_days", "recall_target", "index_kinds", "annoy_trees", "hnsw_M", "hnsw_ef_construction"):
        assert name in params, name
        param = params.get_param(name)
        assert param.schema.get("type") and param.description, f"param {name} needs a type and a description"
    assert params.get_param("input_format").schema["enum"][0] == "auto"
    assert set(params.get_param("index_kinds").schema["items"]["enum"]) == {"annoy_dot", "annoy_angular_aug", "hnsw_ip",
                                                                       "hnsw_aug", "ivf_sq8_rerank", "norm_ranges"}


def test_als_sweep_is_mapped_spark_submit_with_readable_names(dag):
    for task_id in ("als_sweep", "als_rung_1", "als_rung_2"):
        task = dag.get_task(task_id)
        assert task.operator_name == "SparkSubmitOperator"
        assert task.partial_kwargs.get("conn_id") == "spark_default"
        assert task.partial_kwargs.get("map_index_template") == "{{ task.name }}"
    assert dag.get_task("halve_1").trigger_rule == "all_done_min_one_success"  # a failed config only stays behind
    engines = dag.get_task("engine_sweep")
    assert engines.partial_kwargs.get("map_index_template") == "{{ label }}"
    assert dag.params.get_param("families").schema["items"]["enum"][:3] == ["popularity", "als", "item_knn"]


def test_the_nightly_schedule_is_cron_the_landing_asset_or_both():
    from airflow.sdk import AssetOrTimeSchedule

    from pipeline.assets import CRON, LANDED, nightly_schedule

    assert nightly_schedule({}) == CRON == nightly_schedule({"MUSIC_RECS_SCHEDULE": "cron"})
    assert nightly_schedule({"MUSIC_RECS_SCHEDULE": "asset"}) == [LANDED]
    assert isinstance(nightly_schedule({"MUSIC_RECS_SCHEDULE": "cron_or_asset"}), AssetOrTimeSchedule)
    with pytest.raises(ValueError, match="MUSIC_RECS_SCHEDULE='hourly': expected one of cron, asset, cron_or_asset"):
        nightly_schedule({"MUSIC_RECS_SCHEDULE": "hourly"})


def test_a_run_the_landing_asset_started_trains_on_what_landed_unless_given_a_conf():
    import datetime as dt
    from types import SimpleNamespace

    from pipeline.assets import LANDED, run_params

    def event(day, path):
        return SimpleNamespace(timestamp=dt.datetime(2026, 1, day, tzinfo=dt.timezone.utc),
                               extra={"input_path": path, "input_format": "listenbrainz", "conf": {"k": 10}})

    params = {"input_path": "data/demo", "input_format": "lastfm1k", "k": 100}
    events = {LANDED: [event(2, "/d/new"), event(1, "/d/old")]}
    assert run_params(params, {}, events) == {"input_path": "/d/new", "input_format": "listenbrainz", "k": 10}
    assert run_params(params, {"k": 5}, events) == params  # its own conf wins: a run triggered by hand
    assert run_params(params, None, None) == params  # a cron run


def test_the_landing_dag_updates_the_landed_asset_and_promote_the_model_asset(dag):
    from airflow.dag_processing.dagbag import DagBag

    from pipeline.assets import LANDED, MODEL

    bag = DagBag(dag_folder=str(DAG_FILE.parent / "music_recs_landing.py"))
    assert bag.import_errors == {}
    landing = bag.dags["music_recs_landing"]
    assert type(landing.timetable).__name__ == "NullTimetable" and landing.get_task("land").outlets == [LANDED]
    assert set(landing.params) == {"source", "landing", "input_format", "nightly_conf"}
    assert dag.get_task("promote").outlets == [MODEL]
