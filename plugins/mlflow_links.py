"""Airflow plugin: an "MLflow run" link on every task instance, opening that task's runs in the MLflow UI.

The pipeline tags every MLflow run it creates (``pipeline.tracking``): the parent run of a DAG run
with ``airflow.dag_id``, ``airflow.dag_run_id`` and ``pipeline.role = parent``; each child run
(one per sweep configuration) also with ``airflow.task_id`` and, for mapped tasks,
``airflow.map_index``. So the link is the experiment's runs page with a search filter on those
tags: a sweep task instance opens its own child run(s), any other task the DAG run's parent run.

The MLflow UI has no route by experiment name (its routes are ``#/experiments/<id>/runs``, with the
search in ``?searchFilter=``), so the experiment id comes from ``$MLFLOW_EXPERIMENT_ID`` when set;
otherwise it is read once, without side effects, from the tracking store: a read-only
``experiments/get-by-name`` call to a tracking server, or a read-only query of the embedded SQLite
file. Links are rendered by the API server, which calls ``get_link`` (see
``airflow.serialization.definitions.baseoperator.SerializedBaseOperator.get_extra_links``), so a
link never raises: when the experiment cannot be found it opens the MLflow experiments list.

Env: ``MLFLOW_UI_URL`` (default http://127.0.0.1:5000, the URL a browser uses),
``MLFLOW_TRACKING_URI`` (where the API server looks the id up), ``MLFLOW_EXPERIMENT_NAME``
(``music-recs``), ``MLFLOW_EXPERIMENT_ID`` (skips the look-up), ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD`` (HTTP Basic credentials for a server with authentication, as MLflow's client).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

__all__ = [
    "CHILD_RUN_TASKS",
    "search_filter",
    "experiment_id",
    "mlflow_runs_url",
    "MlflowRunLink",
    "MlflowLinksPlugin",
]

log = logging.getLogger(__name__)

#: Tasks that create child runs of their own (one per configuration); every other task links to the parent run.
CHILD_RUN_TASKS = frozenset({"als_sweep", "als_rung_1", "als_rung_2", "popularity_sweep", "engine_sweep"})
DEFAULT_UI_URL = "http://127.0.0.1:5000"
_FOUND: dict[tuple[str, str], str] = {}  # (tracking URI, experiment name) -> id; ids never change meaning


def _literal(value: str) -> str:
    """``value`` as an MLflow filter string literal (single quotes, or double when it holds one)."""
    for q in ("'", '"'):
        if q not in value:
            return f"{q}{value}{q}"
    raise ValueError(f"cannot quote {value!r} in an MLflow search filter: it holds both quote characters")


def search_filter(*, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The MLflow search filter that finds the runs of one task instance (see the module docstring)."""
    parts = [f"tags.`airflow.dag_id` = {_literal(dag_id)}", f"tags.`airflow.dag_run_id` = {_literal(run_id)}"]
    if task_id in CHILD_RUN_TASKS:
        parts.append(f"tags.`airflow.task_id` = {_literal(task_id)}")
        if map_index >= 0:
            parts.append(f"tags.`airflow.map_index` = '{map_index}'")
    else:
        parts.append("tags.`pipeline.role` = 'parent'")
    return " and ".join(parts)


def _tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    from pipeline.paths import pipeline_home  # the embedded store pipeline.tracking uses

    return f"sqlite:///{pipeline_home() / 'mlflow' / 'mlflow.db'}"


def _lookup_http(uri: str, name: str) -> str | None:
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{urlencode({'experiment_name': name})}"
    headers = {}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:  # the server of scripts/mlflow-server.sh answers 401 without them
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2) as resp:
            return str(json.load(resp)["experiment"]["experiment_id"])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # RESOURCE_DOES_NOT_EXIST: no run was logged yet
            return None
        raise


def _lookup_sqlite(path: str, name: str) -> str | None:
    if not os.path.isfile(path):
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as db:
        row = db.execute("SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'",
                         (name,)).fetchone()
    return str(row[0]) if row else None


def experiment_id(name: str | None = None, *, tracking_uri: str | None = None) -> str | None:
    """The experiment's id: ``$MLFLOW_EXPERIMENT_ID``, else a read-only look-up by name (None if absent)."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME", "music-recs")
    uri = tracking_uri or _tracking_uri()
    if (uri, name) in _FOUND:
        return _FOUND[(uri, name)]
    if uri.startswith(("http://", "https://")):
        found = _lookup_http(uri, name)
    elif uri.startswith("sqlite:///"):
        found = _lookup_sqlite(uri.removeprefix("sqlite:///"), name)
    else:
        raise ValueError(f"cannot look up experiment {name!r} in {uri.split('://')[0]}:// stores from the "
                         "API server: set MLFLOW_EXPERIMENT_ID, or MLFLOW_TRACKING_URI to the tracking server")
    if found is not None:
        _FOUND[(uri, name)] = found
    return found


def mlflow_runs_url(*, dag_id: str, run_id: str, task_id: str, map_index: int = -1,
                    exp_id: str | None, base_url: str | None = None) -> str:
    """The MLflow UI page listing the runs of one task instance (the experiments list if ``exp_id`` is None)."""
    base = (base_url or os.environ.get("MLFLOW_UI_URL") or DEFAULT_UI_URL).rstrip("/")
    if exp_id is None:
        return f"{base}/#/experiments"
    flt = search_filter(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
    return f"{base}/#/experiments/{quote(exp_id, safe='')}/runs?searchFilter={quote(flt, safe='')}"


class MlflowRunLink(BaseOperatorLink):
    """The "MLflow run" button on every task instance (a global link: TaskFlow tasks, SparkSubmitOperator, ...)."""

    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The task instance's MLflow runs; never raises (the API server renders every task's links)."""
        try:
            exp = experiment_id()
            return mlflow_runs_url(dag_id=ti_key.dag_id, run_id=ti_key.run_id, task_id=ti_key.task_id,
                                   map_index=ti_key.map_index, exp_id=exp)
        except (OSError, ValueError, KeyError, sqlite3.Error) as exc:
            log.warning("MLflow link for %s falls back to the experiments list: %s", ti_key, exc)
            return mlflow_runs_url(dag_id=ti_key.dag_id, run_id=ti_key.run_id, task_id=ti_key.task_id, exp_id=None)


class MlflowLinksPlugin(AirflowPlugin):
    """Registers :class:`MlflowRunLink` as a global operator extra link."""

    name = "mlflow_links"
    global_operator_extra_links = [MlflowRunLink()]
