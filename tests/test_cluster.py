"""A real Spark standalone master and worker on 127.0.0.1 (started by scripts/spark-cluster.sh):
the ALS sweep goes through SparkSubmitOperator and the connection spark_default, and the
master's JSON status page shows the applications FINISHED."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipeline.config import als_grid

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[1]
PORTS = {"SPARK_MASTER_PORT": "7177", "SPARK_MASTER_WEBUI_PORT": "8181", "SPARK_WORKER_WEBUI_PORT": "8182"}


def master_json() -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['SPARK_MASTER_WEBUI_PORT']}/json/", timeout=5) as r:
        return json.load(r)


SCRIPT = REPO / "scripts" / "spark-cluster.sh"


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    return {**os.environ, **PORTS, "PIPELINE_HOME": str(tmp_path_factory.mktemp("svc")), "SPARK_WORKER_CORES": "2",
            "SPARK_WORKER_MEMORY": "2g", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def cluster(cluster_env):
    try:
        subprocess.run([str(SCRIPT), "start", "1"], env=cluster_env, check=True, timeout=180, capture_output=True)
        status = master_json()
        assert status["status"] == "ALIVE" and status["aliveworkers"] == 1
        yield f"spark://127.0.0.1:{PORTS['SPARK_MASTER_PORT']}"
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=cluster_env, timeout=120, capture_output=True)


def submit(cfg, split_dir: Path, out: Path, k: int = 50) -> None:
    """One sweep task: SparkSubmitOperator through the connection spark_default."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from pipeline.stages import JOB_FILE, spark_conf

    SparkSubmitOperator(
        task_id="als_sweep", conn_id="spark_default", application=str(JOB_FILE), name=cfg.label, deploy_mode="client",
        conf={**spark_conf(), "spark.driver.memory": "1g", "spark.executor.memory": "1g"},
        application_args=["--split", str(split_dir), "--out", str(out), "--config", json.dumps(cfg.params()),
                          "--k", str(k)],
    ).execute(context={})


def test_als_sweep_runs_on_the_standalone_cluster(cluster, small_split, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": cluster}))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    configs = als_grid(ranks=[8], reg_params=[0.1], alphas=[0.5, 2.0], max_iters=[4])
    for cfg in configs:
        submit(cfg, small_split / "split", small_split / "sweep")
    for cfg in configs:
        result = json.loads((small_split / "sweep" / cfg.key / "result.json").read_text())
        assert result["status"] == "ok" and result["metrics"]["val_map_at_50"] > 0
    finished = {app["name"]: app["state"] for app in master_json()["completedapps"]}
    for cfg in configs:
        assert finished.get(f"als {cfg.label}") == "FINISHED", finished



def test_a_killed_worker_is_replaced_and_the_job_gives_the_same_result(cluster, cluster_env, small_split, monkeypatch):
    """Kill the only worker while an ALS job runs and start a new one: the job finishes with the same metrics."""
    import threading
    import time

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": cluster}))
    monkeypatch.setenv("PATH", cluster_env["PATH"])
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
        status = master_json()
        if status["activeapps"] and any(w["coresused"] > 0 for w in status["workers"] if w["state"] == "ALIVE"):
            break
        time.sleep(0.2)
    time.sleep(3)  # into the ALS iterations
    pid_file = Path(cluster_env["PIPELINE_HOME"]) / "services" / f"spark-worker-{PORTS['SPARK_MASTER_PORT']}-1.pid"
    os.kill(int(pid_file.read_text()), 9)
    assert master_json()["activeapps"], "the job ended before the worker was killed: nothing was tested"
    subprocess.run([str(SCRIPT), "start", "1"], env=cluster_env, check=True, timeout=180, capture_output=True)
    job.join(timeout=900)
    assert not job.is_alive() and not errors, errors
    before = json.loads((small_split / "undisturbed" / cfg.key / "result.json").read_text())
    after = json.loads((small_split / "faulted" / cfg.key / "result.json").read_text())
    assert after["status"] == "ok"
    assert after["metrics"] == pytest.approx(before["metrics"], rel=1e-6)
