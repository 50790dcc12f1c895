"""Airflow plugin: an "MLflow runs" link on every task, straight to that task's MLflow runs.

The pipeline tags every MLflow run with ``airflow.dag_run_id`` (children also with
``airflow.task_id`` and ``airflow.map_index``), so the link is an MLflow UI search over those
tags: a sweep task instance opens its own child run(s); any other task opens the DAG run's
parent run. The UI's base URL comes from ``$MLFLOW_UI_URL`` (default http://127.0.0.1:5000).
"""

from __future__ import annotations

import os
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

SWEEP_TASKS = ("als_sweep", "popularity_sweep")


def search_filter(task_id: str, run_id: str, map_index: int = -1) -> str:
    """The MLflow search filter that finds the runs of one task instance."""
    parts = [f"tags.`airflow.dag_run_id` = '{run_id}'"]
    if task_id in SWEEP_TASKS:
        parts.append(f"tags.`airflow.task_id` = '{task_id}'")
        if map_index >= 0:
            parts.append(f"tags.`airflow.map_index` = '{map_index}'")
    else:
        parts.append("tags.`pipeline.role` = 'parent'")
    return " and ".join(parts)


def _experiment_id() -> str | None:
    try:
        from pipeline import tracking

        exp = tracking.client().get_experiment_by_name(tracking.EXPERIMENT)
        return exp.experiment_id if exp else None
    except Exception:  # noqa: BLE001 - a link must never fail a task; it falls back to the list of experiments
        return None


def mlflow_url(task_id: str, run_id: str, map_index: int = -1, *, experiment_id: str | None = None) -> str:
    base = os.environ.get("MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")
    exp = experiment_id if experiment_id is not None else _experiment_id()
    if exp is None:
        return f"{base}/#/experiments"
    return f"{base}/#/experiments/{exp}?searchFilter={quote(search_filter(task_id, run_id, map_index), safe='')}"


class MlflowRunsLink(BaseOperatorLink):
    """The button on each task instance: its MLflow runs."""

    name = "MLflow runs"

    def get_link(self, operator, *, ti_key) -> str:  # noqa: D102 - see the class docstring
        return mlflow_url(ti_key.task_id, ti_key.run_id, ti_key.map_index)


class MlflowLinksPlugin(AirflowPlugin):
    name = "mlflow_links"
    global_operator_extra_links = [MlflowRunsLink()]
