"""A real Spark standalone master and worker on 127.0.0.1 (started by scripts/spark-cluster.sh):
the ALS sweep goes through SparkSubmitOperator and the connection spark_default, and the
master's JSON status page shows the applications FINISHED."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cluster_fixtures import start_spark_cluster

from pipeline.config import als_grid

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, monkeypatch_module):
    """A cluster of this module's own (its fault test kills the worker), with spark_default pointing at it."""
    with start_spark_cluster(tmp_path_factory.mktemp("svc")) as c:
        status = c.status()
        assert status["status"] == "ALIVE" and status["aliveworkers"] == 1
        monkeypatch_module.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": c.master_url}))
        monkeypatch_module.setenv("PATH", c.env["PATH"])
        yield c


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def submit(cfg, split_dir: Path, out: Path, k: int = 50) -> None:
    """One sweep task: SparkSubmitOperator through the connection spark_default."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from pipeline.spark import submit_conf
    from pipeline.stages import JOB_FILE

    SparkSubmitOperator(
        task_id="als_sweep", conn_id="spark_default", application=str(JOB_FILE), name=cfg.label, deploy_mode="client",
        conf={**submit_conf(), "spark.driver.memory": "1g", "spark.executor.memory": "1g"},
        application_args=["--split", str(split_dir), "--out", str(out), "--config", json.dumps(cfg.params()),
                          "--k", str(k)],
    ).execute(context={})


def test_als_sweep_runs_on_the_standalone_cluster(cluster, small_split):
    configs = als_grid(ranks=[8], reg_params=[0.1], alphas=[0.5, 2.0], max_iters=[4])
    for cfg in configs:
        submit(cfg, small_split / "split", small_split / "sweep")
    for cfg in configs:
        result = json.loads((small_split / "sweep" / cfg.key / "result.json").read_text())
        assert result["status"] == "ok" and result["metrics"]["val_map_at_50"] > 0
    finished = {app["name"]: app["state"] for app in cluster.status()["completedapps"]}
    for cfg in configs:
        assert finished.get(f"als {cfg.label}") == "FINISHED", finished

def test_a_killed_worker_is_replaced_and_the_job_gives_the_same_result(cluster, small_split):
    """Kill the only worker while an ALS job runs and start a new one: the job finishes with the same metrics."""
    import threading
    import time

    cfg = als_grid(ranks=[8], reg_params=[0.1], alphas=[1.0], max_iters=[15])[0]
    submit(cfg, small_split / "split", small_split / "undisturbed")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            submit(cfg, small_split / "split", small_split / "faulted")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    job = threading.Thread(target=run)
    job.start()
    for _ in range(600):  # until the application holds cores on the worker
        status = cluster.status()
        if status["activeapps"] and any(w["coresused"] > 0 for w in status["workers"] if w["state"] == "ALIVE"):
            break
        time.sleep(0.2)
    time.sleep(3)  # into the ALS iterations
    pid = cluster.worker_pid(1)
    os.kill(pid, 9)
    assert cluster.status()["activeapps"], "the job ended before the worker was killed: nothing was tested"
    for _ in range(300):  # until the killed worker is gone (or a zombie): else `start` finds it "running"
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                break
        except FileNotFoundError:  # gone and reaped
            break
        time.sleep(0.1)
    cluster.start_workers(1)
    job.join(timeout=900)
    assert not job.is_alive() and not errors, errors
    before = json.loads((small_split / "undisturbed" / cfg.key / "result.json").read_text())
    after = json.loads((small_split / "faulted" / cfg.key / "result.json").read_text())
    assert after["status"] == "ok"
    assert after["metrics"] == pytest.approx(before["metrics"], rel=1e-6)
