"""The Airflow plugin's link points at the MLflow runs of the task instance."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import mlflow_links  # noqa: E402


def test_sweep_task_links_to_its_own_child_run(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_UI_URL", "http://127.0.0.1:5555/")
    from airflow.sdk.types import TaskInstanceKey

    from pipeline import tracking

    exp = tracking.experiment_id(tracking.client())
    key = TaskInstanceKey("music_recs_nightly", "als_sweep", "manual__2026-01-01T00:00:00+00:00", 1, 3)
    url = mlflow_links.MlflowRunsLink().get_link(None, ti_key=key)
    parts = urlsplit(url.replace("#", "", 1))
    assert url.startswith(f"http://127.0.0.1:5555/#/experiments/{exp}?")
    flt = parse_qs(parts.query)["searchFilter"][0]
    assert flt == ("tags.`airflow.dag_run_id` = 'manual__2026-01-01T00:00:00+00:00' and "
                   "tags.`airflow.task_id` = 'als_sweep' and tags.`airflow.map_index` = '3'")


def test_other_tasks_link_to_the_parent_run_and_the_plugin_registers_it():
    flt = mlflow_links.search_filter("promote", "r1")
    assert flt == "tags.`airflow.dag_run_id` = 'r1' and tags.`pipeline.role` = 'parent'"
    assert mlflow_links.mlflow_url("promote", "r1", experiment_id="7").startswith("http://127.0.0.1:5000/#/experiments/7?")
    assert [type(link).__name__ for link in mlflow_links.MlflowLinksPlugin.global_operator_extra_links] == ["MlflowRunsLink"]
