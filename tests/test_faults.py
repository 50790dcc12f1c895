"""Fault drills under the real scheduler, with the services `make up` starts (scripts/up.sh: a Spark
standalone master and worker, the MLflow tracking server with authentication, Airflow's API server,
scheduler, DAG processor and triggerer), every run triggered, cleared or backfilled through Airflow's
REST API as the UI does:

- the MLflow server restarted in the middle of the ALS sweep;
- the scheduler killed mid-run (with its task processes) and started again;
- the Spark master killed during the sweep, once after a configuration finished and once before any did;
- the run folder's filesystem full (a small tmpfs; skipped where mounting is not allowed);
- and, in tests/test_fault_backfill.py, a month of nightly partitions backfilled.

They take longer than CI's budget allows on 2 cores, so `make test` leaves them out (marker ``faults``);
``scripts/fault-drills.sh`` runs them (``pytest -m faults``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from airflow_api import DAG, Api, finished, run_folder, wait_for_dag, wait_until
from cluster_fixtures import SCRIPTS, free_port, run_script, service_env

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.spark]

# three ALS configurations, each its own Spark application on the standalone cluster
CONF = {"ranks": [8], "reg_params": [0.01, 0.1, 1.0], "alphas": [0.5], "max_iters": [4], "halving_rate": 1, "betas": [10],
        "index_kinds": [], "health_checks": "flag"}
SWEEP = {"als_sweep"}


@dataclass
class Stack:
    """The running services of one PIPELINE_HOME and the handles to break them."""

    home: Path
    env: dict[str, str]
    api: Api
    mlflow_url: str

    @property
    def services(self) -> Path:
        return self.home / "services"

    def script(self, name: str, *args: str) -> str:
        return run_script(name, *args, env=self.env, timeout=300)

    def kill(self, name: str) -> None:
        """SIGKILL the process group scripts/_common.sh started as ``name`` (a crash, not a shutdown)."""
        pid = int((self.services / f"{name}.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid):
            assert time.monotonic() < deadline, f"{name} (pid {pid}) still alive 30 s after SIGKILL"
            time.sleep(0.5)

    def conf(self, **extra) -> dict:
        return {**CONF, "input_path": str(self.home / "data" / "demo"), **extra}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    from pipeline import synth

    home = tmp_path_factory.mktemp("drills") / "home"
    synth.generate(home / "data" / "demo", n_listens=12_000, seed=5)
    ports = {name: str(free_port()) for name in ("SPARK_MASTER_PORT", "SPARK_MASTER_WEBUI_PORT",
                                                 "SPARK_WORKER_WEBUI_PORT", "MLFLOW_PORT", "AIRFLOW_PORT")}
    env = service_env(home, **ports, SPARK_WORKER_CORES="2", SPARK_WORKER_MEMORY="2g", SPARK_DRIVER_MEMORY="1g",
                      MLFLOW_TRACKING_USERNAME="drills-admin", MLFLOW_TRACKING_PASSWORD="drills-" + os.urandom(8).hex(),
                      # a task whose process died with the scheduler is failed after 60 s, not Airflow's 5 min
                      AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="60",
                      # and the tasks a killed scheduler had started are reset after a minute, not five
                      AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL="60",
                      SPARK_MASTER_PATIENCE_SECONDS="45")
    for key in ("AIRFLOW_HOME", "MLFLOW_TRACKING_URI", "SPARK_MASTER", "AIRFLOW_CONN_SPARK_DEFAULT"):
        env.pop(key, None)
    try:
        run_script("up.sh", "1", env=env, timeout=600)
        mlflow_url = f"http://127.0.0.1:{ports['MLFLOW_PORT']}"
        api = Api(f"http://127.0.0.1:{ports['AIRFLOW_PORT']}",
                  home / "airflow" / "simple_auth_manager_passwords.json.generated")
        wait_for_dag(api)
        _stop_the_catch_up_run(api)
        with pytest.MonkeyPatch.context() as mp:  # this process reads the server as its admin
            for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                mp.setenv(key, env[key])
            mp.setenv("MLFLOW_TRACKING_URI", mlflow_url)
            yield Stack(home=home, env=env, api=api, mlflow_url=mlflow_url)
    finally:
        subprocess.run([str(SCRIPTS / "down.sh")], env=env, capture_output=True, timeout=300)


def _stop_the_catch_up_run(api: Api) -> None:
    """Unpaused, the DAG starts its latest 03:00 run on the default params at once (catchup=False still
    runs the most recent interval): not one of the drills, so it is marked failed before it holds the
    only active run slot."""
    deadline = time.monotonic() + 120  # the scheduler creates it within a loop or two of the unpause
    while time.monotonic() < deadline:
        scheduled = [r for r in api.get(f"/api/v2/dags/{DAG}/dagRuns")["dag_runs"] if r["run_type"] == "scheduled"]
        for run in scheduled:
            api.patch(f"/api/v2/dags/{DAG}/dagRuns/{run['dag_run_id']}", {"state": "failed"})
        if scheduled:
            return
        time.sleep(2)


def sweep_states(stack: Stack, run_id: str) -> list[str | None]:
    return [s for (task, _), s in stack.api.states(run_id).items() if task in SWEEP]


def outputs(folder: Path) -> dict:
    """What a re-run must reproduce: every configuration's validation metrics and the test metrics."""
    board = json.loads((folder / "select" / "leaderboard.json").read_text())
    return {"leaderboard": sorted((r["key"], r["status"], r["metrics"]) for r in board if r["status"] == "ok"),
            "test": json.loads((folder / "test" / "metrics.json").read_text())}


def children(stack: Stack, run_id: str) -> list:
    """The MLflow child runs under the parent run of the DAG run ``run_id``."""
    from pipeline import tracking

    c = tracking.client()
    exp = c.get_experiment_by_name("music-recs").experiment_id
    (parent,) = c.search_runs([exp], f"tags.`airflow.dag_run_id` = '{run_id}' and tags.`pipeline.role` = 'parent'")
    return c.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=1000)


@pytest.fixture(scope="module")
def reference(stack) -> dict:
    """A night without faults on the same data and params: what every drill's night must reproduce."""
    run_id = stack.api.trigger(stack.conf(), logical_date="2026-01-02T03:00:00Z")
    assert finished(stack.api, run_id) == "success", stack.api.states(run_id)
    kids = children(stack, run_id)
    return {"outputs": outputs(run_folder(stack.home, run_id)),
            "configs": sorted(k.data.tags["pipeline.config_key"] for k in kids)}


def test_the_mlflow_server_restarted_mid_sweep_loses_and_duplicates_no_child_run(stack, reference):
    run_id = stack.api.trigger(stack.conf(), logical_date="2026-01-03T03:00:00Z")
    wait_until("sweeping", lambda: "running" in sweep_states(stack, run_id))
    stack.script("mlflow-server.sh", "stop")
    time.sleep(30)  # every MLflow call of the sweep in these 30 s meets a closed port
    stack.script("mlflow-server.sh", "start")
    state = finished(stack.api, run_id)
    if state == "failed":  # a clear failure is allowed once: "Clear" runs the failed tasks again
        stack.api.clear(run_id)
        state = finished(stack.api, run_id)
    assert state == "success", stack.api.states(run_id)
    kids = children(stack, run_id)
    assert sorted(k.data.tags["pipeline.config_key"] for k in kids) == reference["configs"]  # none lost, none twice
    assert {k.info.status for k in kids} == {"FINISHED"}
    assert outputs(run_folder(stack.home, run_id)) == reference["outputs"]


def test_the_scheduler_killed_mid_run_fails_the_run_cleanly_and_a_rerun_reproduces_it(stack, reference):
    run_id = stack.api.trigger(stack.conf(), logical_date="2026-01-04T03:00:00Z")
    wait_until("sweeping", lambda: "running" in sweep_states(stack, run_id))
    stack.kill("airflow-scheduler")  # with it go the task processes it started (same process group)
    time.sleep(10)
    stack.script("airflow.sh", "start")  # starts what is not running: the scheduler
    state = finished(stack.api, run_id, minutes=20)
    states = stack.api.states(run_id)
    assert state in ("success", "failed"), states
    if state == "failed":  # cleanly: the killed tasks failed, nothing after them ran, nothing was promoted
        assert states[("promote", -1)] in ("upstream_failed", None), states
        stack.api.clear(run_id)
        state = finished(stack.api, run_id)
    assert state == "success", stack.api.states(run_id)
    assert outputs(run_folder(stack.home, run_id)) == reference["outputs"]
    kids = children(stack, run_id)
    assert sorted(k.data.tags["pipeline.config_key"] for k in kids) == reference["configs"]
    assert not [p for p in stack.home.glob("runs/*/**/.tmp-*")], "a killed writer left a partial output"


def _restart_spark(stack: Stack) -> None:
    stack.script("spark-cluster.sh", "stop")
    stack.script("spark-cluster.sh", "start", "1")


def test_the_spark_master_killed_mid_sweep_fails_the_open_configurations_and_selects_among_the_finished(stack):
    port = stack.env["SPARK_MASTER_PORT"]
    run_id = stack.api.trigger(stack.conf(), logical_date="2026-01-05T03:00:00Z")
    wait_until("one configuration finished", lambda: "success" in sweep_states(stack, run_id))
    stack.kill(f"spark-master-{port}")
    state = finished(stack.api, run_id, minutes=20)
    states = stack.api.states(run_id)
    _restart_spark(stack)
    sweep = sweep_states(stack, run_id)
    assert "success" in sweep and "failed" in sweep, states
    assert states[("select_best", -1)] == "success", states
    folder = run_folder(stack.home, run_id)
    board = json.loads((folder / "select" / "leaderboard.json").read_text())
    failed = [r for r in board if r["status"] != "ok"]
    # the configurations that were open fail naming the master (the watch cancels what Spark would wait on
    # forever), or with Spark's own "All masters are unresponsive" when they could not even register
    assert all("master" in r.get("error", "").lower() for r in failed), failed
    served = json.loads((folder / "test" / "metrics.json").read_text())["best"]
    assert served in {r["key"] for r in board if r["status"] == "ok"}, (served, board)
    assert state == "success", states
    for kid in children(stack, run_id):
        assert kid.info.status in ("FINISHED", "FAILED"), kid  # no child left RUNNING


def test_with_the_spark_master_gone_before_any_configuration_finished_the_night_is_not_promoted(stack):
    from pipeline import tracking

    port = stack.env["SPARK_MASTER_PORT"]
    versions = len(tracking.client().search_model_versions("name = 'music-recs'"))
    run_id = stack.api.trigger(stack.conf(), logical_date="2026-01-06T03:00:00Z")
    wait_until("split", lambda: stack.api.states(run_id).get(("split", -1)) == "success")
    stack.kill(f"spark-master-{port}")
    state = finished(stack.api, run_id, minutes=20)
    states = stack.api.states(run_id)
    _restart_spark(stack)
    assert state == "failed", states
    assert "success" not in sweep_states(stack, run_id), states
    assert states[("promote", -1)] in ("upstream_failed", None), states
    assert len(tracking.client().search_model_versions("name = 'music-recs'")) == versions


def test_a_full_run_folder_fails_the_task_with_one_line_and_marks_nothing_complete(stack):
    from pipeline.paths import run_key

    logical = "2026-01-07T03:00:00+00:00"
    folder = stack.home / "runs" / run_key(logical)
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        run_id = stack.api.trigger(stack.conf(), logical_date=logical)
        assert finished(stack.api, run_id) == "failed"
        states = stack.api.states(run_id)
        # the stage that hit the full disk; select_best, which always runs, then names it as the upstream that
        # failed; retain, the teardown, may not write its record either
        failed = [t for (t, _), s in states.items() if s == "failed" and t not in ("select_best", "retain")]
        assert len(failed) == 1, states
        log = stack.api.get(f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{failed[0]}/logs/1"
                            "?full_content=true", raw=True)
        line = re.search(r"\[Errno 28\] task \w+ ran out of disk space [^\"]*", log)  # the exception's one line
        assert line and "DiskFull" in log and "point PIPELINE_HOME" in line[0], log[-3000:]
        print(f"\n{failed[0]}: {line[0]}")
        assert states[("promote", -1)] in ("upstream_failed", None)
        written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
        assert not [p for p in written if ".tmp-" in p], written  # no partial output left
        # nothing past the failed stage claims to be complete
        assert not (folder / "split").exists() and not (folder / "select").exists(), written
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
