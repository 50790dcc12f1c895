"""plugins/mlflow_links.py: the "MLflow run" link of a task instance points at exactly its MLflow runs."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import mlflow_links  # noqa: E402

RUN_ID = "manual__2026-01-01T00:00:00+00:00"


def key(task_id: str, map_index: int = -1):
    """The key the API server hands to ``get_link`` (``TaskInstance.key``)."""
    from airflow.models.taskinstancekey import TaskInstanceKey

    return TaskInstanceKey("music_recs_nightly", task_id, RUN_ID, 1, map_index)


def split_link(url: str) -> tuple[str, str, str]:
    """(base, hash route, searchFilter) of an MLflow UI link ``base/#/route?searchFilter=...``."""
    base, _, fragment = url.partition("/#")
    route = urlsplit(fragment)
    return base, route.path, parse_qs(route.query).get("searchFilter", [""])[0]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_UI_URL", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    mlflow_links._FOUND.clear()


def test_a_mapped_sweep_task_links_to_its_own_child_run(monkeypatch):
    monkeypatch.setenv("MLFLOW_UI_URL", "http://127.0.0.1:5555/")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "7")
    url = mlflow_links.MlflowRunLink().get_link(None, ti_key=key("als_sweep", 3))
    base, route, flt = split_link(url)
    assert (base, route) == ("http://127.0.0.1:5555", "/experiments/7/runs")
    assert flt == ("tags.`airflow.dag_id` = 'music_recs_nightly' and "
                   f"tags.`airflow.dag_run_id` = '{RUN_ID}' and "
                   "tags.`airflow.task_id` = 'als_sweep' and tags.`airflow.map_index` = '3'")
    assert "+" not in url.split("?", 1)[1], "the run id's '+' must be percent-encoded, not read as a space"


def test_other_tasks_link_to_the_dag_runs_parent_run(monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "7")
    base, route, flt = split_link(mlflow_links.MlflowRunLink().get_link(None, ti_key=key("promote")))
    assert base == "http://127.0.0.1:5000" and route == "/experiments/7/runs"
    assert flt.endswith("tags.`pipeline.role` = 'parent'") and "airflow.task_id" not in flt
    # an unmapped task that creates children (popularity: one child per variant) filters on its task only
    flt = mlflow_links.search_filter(dag_id="d", run_id="r", task_id="popularity_sweep")
    assert flt == "tags.`airflow.dag_id` = 'd' and tags.`airflow.dag_run_id` = 'r' and tags.`airflow.task_id` = 'popularity_sweep'"
    assert mlflow_links.search_filter(dag_id="d", run_id="it's", task_id="t").count('"it\'s"') == 1
    with pytest.raises(ValueError, match="both quote"):
        mlflow_links.search_filter(dag_id="d", run_id="a'b\"c", task_id="t")


def test_the_filter_finds_exactly_the_task_instances_runs_in_a_real_store(monkeypatch, tmp_path):
    """Runs logged by pipeline.tracking to an SQLite store; the plugin finds the experiment read-only."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from pipeline import tracking

    link = mlflow_links.MlflowRunLink()
    assert link.get_link(None, ti_key=key("als_sweep", 0)).endswith("/#/experiments"), "no experiment yet"
    parent = tracking.parent_run(dag_id="music_recs_nightly", dag_run_id=RUN_ID)
    other_parent = tracking.parent_run(dag_id="music_recs_nightly", dag_run_id="scheduled__2026-01-02")
    kids = [tracking.child_run(p, config_key=f"rank{i}", name=f"rank {i}", params={"rank": i},
                               tags={"airflow.task_id": "als_sweep", "airflow.map_index": str(i)})
            for p in (parent, other_parent) for i in range(3)]
    client = tracking.client()
    exp = tracking.experiment_id(client)
    assert mlflow_links.experiment_id() == exp

    def found(ti_key) -> set[str]:
        base, route, flt = split_link(link.get_link(None, ti_key=ti_key))
        assert route == f"/experiments/{exp}/runs"
        return {r.info.run_id for r in client.search_runs([exp], filter_string=flt)}

    assert found(key("als_sweep", 1)) == {kids[1]}
    assert found(key("select_best")) == {parent}
    assert found(key("popularity_sweep")) == set(), "no popularity child was logged in this test"


def test_an_unreachable_tracking_server_gives_the_experiments_list_not_an_error(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the look-up: connection refused
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    assert mlflow_links.MlflowRunLink().get_link(None, ti_key=key("als_sweep", 0)) == "http://127.0.0.1:5000/#/experiments"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u@127.0.0.1/mlflow")
    with pytest.raises(ValueError, match="MLFLOW_EXPERIMENT_ID"):
        mlflow_links.experiment_id()


def test_the_plugin_registers_one_global_link():
    from airflow.plugins_manager import AirflowPlugin, is_valid_plugin

    assert issubclass(mlflow_links.MlflowLinksPlugin, AirflowPlugin) and is_valid_plugin(mlflow_links.MlflowLinksPlugin)
    links = mlflow_links.MlflowLinksPlugin.global_operator_extra_links
    assert [(type(link).__name__, link.name) for link in links] == [("MlflowRunLink", "MLflow run")]
