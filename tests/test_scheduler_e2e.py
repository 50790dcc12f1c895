"""The nightly DAG under the real scheduler, as `make up` runs it: scripts/airflow.sh starts the API
server, scheduler, DAG processor and triggerer on a free port; a run triggered through the REST API
(as the UI's "Trigger" does) finishes, and each task's log reads back through the API server.

This is the path `airflow dags test` does not take: task processes report to the API server's
execution API with tokens the scheduler signs, so every process of the home must share its secrets
(pipeline.airflow_env.prepare), and task logs are files the API server reads itself.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cluster_fixtures import free_port, run_script, service_env
from pipeline_runs import airflow_env

pytestmark = pytest.mark.e2e

DAG = "music_recs_nightly"
CONF = {"ranks": [8], "reg_params": [0.1], "alphas": [0.5], "max_iters": [3], "betas": [10], "engine": "implicit",
        "index_kinds": ["hnsw_ip"], "hnsw_M": [8], "hnsw_ef_construction": 40}


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


@contextmanager
def services(home: Path, **extra_env: str):
    """scripts/airflow.sh's services for ``home``, as `make up` starts them; the admin's API client."""
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


@pytest.fixture()
def airflow(tmp_path):
    from pipeline import synth

    home = tmp_path / "home"
    synth.generate(home / "data" / "demo", n_listens=12_000, seed=5)
    with services(home) as api:
        yield api, home


def _wait_for_dag(api: Api, timeout: float = 180, dag: str = DAG) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            api.patch(f"/api/v2/dags/{dag}?update_mask=is_paused", {"is_paused": False})
            return
        except urllib.error.HTTPError as e:
            if e.code != 404 or time.monotonic() > deadline:  # 404 until the DAG processor has parsed it
                raise
            time.sleep(3)


def test_a_run_triggered_through_the_api_finishes_under_the_scheduler_with_readable_task_logs(airflow):
    api, home = airflow
    _wait_for_dag(api)
    conf = {**CONF, "input_path": str(home / "data" / "demo")}
    run_id = api.post(f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]
    deadline = time.monotonic() + 900
    while (state := api.get(f"/api/v2/dags/{DAG}/dagRuns/{run_id}")["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run {run_id} still {state} after 15 minutes"
        time.sleep(5)
    tasks = api.get(f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
    states = {(t["task_id"], t["map_index"]): t["state"] for t in tasks}
    # no engine family was asked for (families defaults to popularity and ALS): its sweep maps over nothing;
    # without halving_rate the halving's later rungs map over nothing too
    assert state == "success" and states.pop(("engine_sweep", -1)) == "skipped", states
    assert [states.pop((t, -1)) for t in ("als_rung_1", "halve_2", "als_rung_2")] == ["skipped"] * 3, states
    assert set(states.values()) == {"success"}, states
    # the Logs tab's source: the task's log file, read by the API server itself (no log server runs)
    log = api.get(f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/validate/logs/1?full_content=true", raw=True)
    assert "rows kept" in log and "Could not read served logs" not in log, log[-2000:]
    # and it reads: no Great Expectations import chatter or progress bar (shown as ERROR lines)
    assert "Skipping registering function" not in log and "Calculating Metrics" not in log, log[-2000:]


def _finished(api: Api, dag: str, run_id: str, minutes: float = 15) -> str:
    deadline = time.monotonic() + minutes * 60
    while (state := api.get(f"/api/v2/dags/{dag}/dagRuns/{run_id}")["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"{dag} run {run_id} still {state} after {minutes} minutes"
        time.sleep(3)
    return state


def test_scheduled_on_the_landing_asset_the_nightly_run_starts_when_a_night_lands_and_not_before(tmp_path):
    from pipeline import synth

    home = tmp_path / "home"
    synth.generate(home / "data" / "log", n_listens=8_000, n_users=120, n_tracks=600, start="2026-01-01", days=2,
                   seed=5)
    with services(home, MUSIC_RECS_SCHEDULE="asset") as api:
        for dag in (DAG, "music_recs_landing"):
            _wait_for_dag(api, dag=dag)
        runs = f"/api/v2/dags/{DAG}/dagRuns"
        assert api.get(runs)["total_entries"] == 0
        conf = {"source": str(home / "data" / "log"), "landing": "data/nightly", "nightly_conf": CONF}
        # a landing for the day before the log begins lands nothing: the asset is not updated, no night starts
        early = api.post("/api/v2/dags/music_recs_landing/dagRuns",
                         {"logical_date": "2025-12-31T06:00:00Z", "conf": conf})["dag_run_id"]
        assert _finished(api, "music_recs_landing", early) == "success"
        ti = api.get(f"/api/v2/dags/music_recs_landing/dagRuns/{early}/taskInstances/land")
        assert ti["state"] == "skipped"
        time.sleep(20)  # several scheduler loops
        assert api.get(runs)["total_entries"] == 0, api.get(runs)
        # the first night lands: the asset is updated and the nightly run starts on it
        landed = api.post("/api/v2/dags/music_recs_landing/dagRuns",
                          {"logical_date": "2026-01-01T06:00:00Z", "conf": conf})["dag_run_id"]
        assert _finished(api, "music_recs_landing", landed) == "success"
        events = api.get("/api/v2/assets/events?limit=10")["asset_events"]
        assert [e["extra"]["partitions"] for e in events if e["source_dag_id"] == "music_recs_landing"] == [
            ["date=2026-01-01"]]
        deadline = time.monotonic() + 120
        while not (started := api.get(runs)["dag_runs"]):
            assert time.monotonic() < deadline, "no nightly run two minutes after the night landed"
            time.sleep(3)
        (run,) = started
        assert run["run_type"] == "asset_triggered", run
        assert _finished(api, DAG, run["dag_run_id"]) == "success"
        # it trained on what landed, with the landing's params for it, and promote updated the model asset
        summary = json.loads(next(home.glob("runs/*/ingest/summary.json")).read_text())
        assert summary["ingested"] == ["date=2026-01-01"] and summary["partitions"] == ["date=2026-01-01"]
        record = json.loads(next(home.glob("runs/*/context.json")).read_text())
        assert record["input_path"] == str(home / "data" / "nightly") and record["config"]["ranks"] == CONF["ranks"]
        events = api.get("/api/v2/assets/events?limit=10")["asset_events"]
        model = [e for e in events if e["source_dag_id"] == DAG]
        assert len(model) == 1 and model[0]["extra"]["alias"] == "champion" and model[0]["extra"]["version"] == "1"
