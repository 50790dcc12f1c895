"""MLflow bookkeeping: one parent run per DAG run, one nested child per configuration.

Runs are found again by their tags, never created twice: a retried task or a re-run of the
same DAG run reuses the parent and the child of the same configuration. Every run carries
``airflow.dag_id``, ``airflow.dag_run_id`` (and for children ``airflow.task_id`` and
``airflow.map_index``) so the Airflow plugin can link a task straight to its runs.

The tracking URI is ``$MLFLOW_TRACKING_URI`` or an SQLite store under the pipeline home;
artifacts of the embedded store go to ``<home>/mlflow/artifacts``. A tracking server with
authentication (scripts/mlflow-server.sh) takes ``$MLFLOW_TRACKING_USERNAME`` and
``$MLFLOW_TRACKING_PASSWORD``, which MLflow's client reads itself; a refusal (HTTP 401 or 403)
surfaces here as one :class:`TrackingAuthError` line naming what to set.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from pipeline.paths import pipeline_home

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "EXPERIMENT",
    "TrackingAuthError",
    "tracking_uri",
    "client",
    "experiment_id",
    "parent_run",
    "child_run",
    "children",
    "finish",
    "log_metrics",
    "compact",
    "log_files",
    "set_tags",
]

EXPERIMENT = os.environ.get("MLFLOW_EXPERIMENT_NAME", "music-recs")
PARENT_TAG = "mlflow.parentRunId"
_F = TypeVar("_F", bound=Callable[..., Any])


class TrackingAuthError(RuntimeError):
    """The tracking server refused the request: no or wrong credentials (401), or no permission (403)."""


def _auth_message(code: str) -> str:
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    where = f"MLflow at {tracking_uri()}"
    if code == "PERMISSION_DENIED":
        return (f"{where} refused user '{user}' (HTTP 403, permission denied): an MLflow admin grants it "
                "through the server's permissions API or UI, or use another MLFLOW_TRACKING_USERNAME")
    if user and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        return (f"{where} rejected the credentials of MLFLOW_TRACKING_USERNAME='{user}' (HTTP 401): "
                "check MLFLOW_TRACKING_PASSWORD (for the server of scripts/mlflow-server.sh: "
                "eval \"$(scripts/mlflow-server.sh env)\")")
    return (f"{where} requires authentication (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (for the server of scripts/mlflow-server.sh: "
            "eval \"$(scripts/mlflow-server.sh env)\")")


def _authenticated(fn: _F) -> _F:
    """Turn MLflow's 401/403 (an error that quotes the server's HTML-ish body) into one TrackingAuthError line."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            code = getattr(e, "error_code", None)
            if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
                raise TrackingAuthError(_auth_message(code)) from None
            raise

    return call  # type: ignore[return-value]


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` or the embedded SQLite store under the pipeline home."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = pipeline_home() / "mlflow"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def client() -> "MlflowClient":
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@_authenticated
def experiment_id(c: "MlflowClient", name: str = EXPERIMENT) -> str:
    """The experiment's id, created on first use (artifacts beside the embedded store)."""
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri().startswith("sqlite:"):
        location = (pipeline_home() / "mlflow" / "artifacts").as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - another task created it first
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _find(c: "MlflowClient", exp_id: str, tags: Mapping[str, str]) -> Any | None:
    flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = c.search_runs([exp_id], filter_string=flt, max_results=2, order_by=["attributes.start_time ASC"])
    return runs[0] if runs else None


@_authenticated
def parent_run(*, dag_id: str, dag_run_id: str, run_key: str | None = None, tags: Mapping[str, str] | None = None,
               params: Mapping[str, Any] | None = None) -> str:
    """The parent run of this DAG run (created once per ``run_key``; later calls return the same id).

    ``run_key`` defaults to the run id; the DAG passes the logical date, so a re-run of the same
    date (a new Airflow run id) finds the same parent and re-tags it with the new run id.
    """
    c = client()
    exp = experiment_id(c)
    key = {"pipeline.run_key": run_key or dag_run_id, "pipeline.role": "parent"}
    run = _find(c, exp, key)
    if run is None:
        run = c.create_run(exp, run_name=f"{dag_id} {run_key or dag_run_id}",
                           tags={**key, "airflow.dag_id": dag_id, "airflow.dag_run_id": dag_run_id, **(tags or {})})
        for k, v in (params or {}).items():
            c.log_param(run.info.run_id, k, v)
    elif run.data.tags.get("airflow.dag_run_id") != dag_run_id:
        c.set_tag(run.info.run_id, "airflow.dag_run_id", dag_run_id)
    return run.info.run_id


@_authenticated
def child_run(parent_id: str, *, config_key: str, name: str, params: Mapping[str, Any],
              tags: Mapping[str, str] | None = None) -> str:
    """The child run of one configuration under ``parent_id`` (reused on retry, status reset to RUNNING)."""
    c = client()
    parent = c.get_run(parent_id)
    exp = parent.info.experiment_id
    key = {PARENT_TAG: parent_id, "pipeline.config_key": config_key}
    run = _find(c, exp, key)
    if run is None:
        base = {k: v for k, v in parent.data.tags.items() if k in ("airflow.dag_id", "airflow.dag_run_id")}
        run = c.create_run(exp, run_name=name, tags={**base, **key, "pipeline.role": "child", **(tags or {})})
        for k, v in params.items():
            c.log_param(run.info.run_id, k, v)
    else:
        c.update_run(run.info.run_id, status="RUNNING")
        current = {k: v for k, v in parent.data.tags.items() if k == "airflow.dag_run_id"}
        for k, v in {**current, **(tags or {})}.items():
            c.set_tag(run.info.run_id, k, v)
    return run.info.run_id


@_authenticated
def log_metrics(run_id: str, metrics: Mapping[str, float], *, prefix: str = "") -> None:
    """Log a dict of numbers in one batch (non-numbers are skipped)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(prefix + k, float(v), now, 0) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if batch:
        client().log_batch(run_id, metrics=batch)


def compact(metrics: Mapping[str, Any], *, digits: int = 5) -> tuple[dict[str, float], dict[str, str]]:
    """What a sweep's runs table shows of one configuration: the metrics rounded to ``digits`` (the full
    values stay in its ``result.json``), and each bootstrap interval as one tag ``<metric>_ci`` =
    ``[low, high]`` in place of two metrics whose names the table cuts to the same ``val_map_at_10…``.
    Cold-user counts are left to ``result.json``."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    shown = {k: round(float(v), digits) for k, v in numbers.items()
             if not k.endswith(("_ci_low", "_ci_high", "_n_cold_users"))}
    tags = {f"{k}_ci": f"[{numbers[k + '_ci_low']:.{digits}f}, {numbers[k + '_ci_high']:.{digits}f}]"
            for k in shown if k + "_ci_low" in numbers and k + "_ci_high" in numbers}
    return shown, tags


@_authenticated
def log_files(run_id: str, paths: list[Path], folder: str) -> None:
    """Log each existing file (or a folder's contents) under ``folder``; missing ones are skipped."""
    c = client()
    for p in map(Path, paths):
        if p.is_dir():
            c.log_artifacts(run_id, str(p), folder)
        elif p.exists():
            c.log_artifact(run_id, str(p), folder)


@_authenticated
def set_tags(run_id: str, tags: Mapping[str, str]) -> None:
    c = client()
    for k, v in tags.items():
        c.set_tag(run_id, k, v)


@_authenticated
def children(parent_id: str) -> list[Any]:
    """All child runs of a parent, oldest first."""
    c = client()
    exp = c.get_run(parent_id).info.experiment_id
    return c.search_runs([exp], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
                         order_by=["attributes.start_time ASC"], max_results=10_000)


@_authenticated
def finish(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)
