"""Airflow under the real scheduler for tests: scripts/airflow.sh's services (as `make up` starts them)
and the admin's REST API client, as the UI's "Trigger" and "Clear" use it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cluster_fixtures import free_port, run_script, service_env
from pipeline_runs import airflow_env

__all__ = ["DAG", "Api", "services", "wait_for_dag", "wait_until", "finished", "run_folder"]

DAG = "music_recs_nightly"


class Api:
    """Airflow's REST API as the admin (a JWT from /auth/token)."""

    def __init__(self, url: str, passwords: Path):
        self.url = url
        password = json.loads(passwords.read_text())["admin"]
        self.token = self._call("POST", "/auth/token", {"username": "admin", "password": password})["access_token"]

    def _call(self, method: str, path: str, body: dict | None = None, *, raw: bool = False):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                data = resp.read().decode()
        except urllib.error.HTTPError as e:
            e.msg = f"{e.msg}: {e.read().decode(errors='replace')[:1000]}"  # what the API says is wrong
            raise
        return data if raw else json.loads(data)

    def get(self, path: str, *, raw: bool = False):
        return self._call("GET", path, raw=raw)

    def post(self, path: str, body: dict):
        return self._call("POST", path, body)

    def patch(self, path: str, body: dict):
        return self._call("PATCH", path, body)

    def trigger(self, conf: dict, logical_date: str | None = None, dag: str = DAG) -> str:
        """A new run of ``dag`` (the UI's "Trigger"); its run id."""
        return self.post(f"/api/v2/dags/{dag}/dagRuns", {"logical_date": logical_date, "conf": conf})["dag_run_id"]

    def states(self, run_id: str, dag: str = DAG) -> dict[tuple[str, int], str | None]:
        """(task id, map index) -> state of every task instance of the run."""
        tasks = self.get(f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]
        return {(t["task_id"], t["map_index"]): t["state"] for t in tasks}

    def clear(self, run_id: str, dag: str = DAG) -> None:
        """Clear every failed or stopped task of the run (the UI's "Clear" → "only failed"): it runs again."""
        self.post(f"/api/v2/dags/{dag}/clearTaskInstances",
                  {"dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True, "dry_run": False})


@contextmanager
def services(home: Path, **extra_env: str) -> Iterator[Api]:
    """scripts/airflow.sh's services for ``home`` with Spark local, as `make up` starts them; the admin's client."""
    port = free_port()
    env = service_env(home, **{k: v for k, v in airflow_env(home, migrate_db=False).items()
                               if k in ("AIRFLOW_CONN_SPARK_DEFAULT", "SPARK_DRIVER_MEMORY")},
                      AIRFLOW_PORT=str(port), **extra_env)
    env.pop("AIRFLOW_HOME", None)  # the script's own default under PIPELINE_HOME, as under `make up`
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        run_script("airflow.sh", "start", env=env, timeout=300)
        yield Api(f"http://127.0.0.1:{port}", home / "airflow" / "simple_auth_manager_passwords.json.generated")
    finally:
        run_script("airflow.sh", "stop", env=env, timeout=180)


def wait_for_dag(api: Api, timeout: float = 180, dag: str = DAG) -> None:
    """Unpause ``dag`` once the DAG processor has parsed it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            api.patch(f"/api/v2/dags/{dag}?update_mask=is_paused", {"is_paused": False})
            return
        except urllib.error.HTTPError as e:
            if e.code != 404 or time.monotonic() > deadline:  # 404 until the DAG processor has parsed it
                raise
            time.sleep(3)


def wait_until(what: str, ready: Callable[[], object], minutes: float = 10, every: float = 2) -> None:
    """Poll ``ready()`` every ``every`` seconds until it is truthy; fail naming ``what`` after ``minutes``."""
    deadline = time.monotonic() + minutes * 60
    while not ready():
        assert time.monotonic() < deadline, f"not {what} after {minutes} minutes"
        time.sleep(every)


def finished(api: Api, run_id: str, dag: str = DAG, minutes: float = 15) -> str:
    """Wait for the run to end; its state (success or failed)."""
    deadline = time.monotonic() + minutes * 60
    while (state := api.get(f"/api/v2/dags/{dag}/dagRuns/{run_id}")["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"{dag} run {run_id} still {state} after {minutes} minutes"
        time.sleep(3)
    return state


def run_folder(home: Path, run_id: str) -> Path:
    """The run's folder under ``home``/runs (its record names the DAG run)."""
    for record in home.glob("runs/*/context.json"):
        if json.loads(record.read_text())["dag_run_id"] == run_id:
            return record.parent
    raise AssertionError(f"no run folder under {home / 'runs'} records the DAG run {run_id}")
