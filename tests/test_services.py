"""Real services on 127.0.0.1, started by scripts/: a Spark standalone master + worker that runs a
submitted application to FINISHED, and an MLflow tracking server that takes runs over HTTP (also
as the one writer for concurrent sweep tasks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# the session-scoped `spark_cluster` and `mlflow_server` fixtures: one instance per test session,
# shared with any other module that names the same plugin (importing them would start one per module)
pytest_plugins = ["cluster_fixtures"]
pytestmark = pytest.mark.spark
REPO = Path(__file__).resolve().parents[1]

APP = '''
import sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName(sys.argv[2]).getOrCreate()
sc = spark.sparkContext
total = sc.parallelize(range(1, 1001), 4).map(lambda x: x * x).sum()
with open(sys.argv[1], "w") as f:
    f.write(f"{total}\\n")
spark.stop()
'''


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every listening TCP socket of ``pid`` and its children."""
    import psutil

    root = psutil.Process(pid)
    out = set()
    for proc in [root, *root.children(recursive=True)]:
        for conn in proc.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                out.add((conn.laddr.ip.removeprefix("::ffff:"), conn.laddr.port))
    return out


def test_the_cluster_has_one_alive_worker_and_binds_loopback_only(spark_cluster):
    status = spark_cluster.status()
    assert status["status"] == "ALIVE" and status["url"] == spark_cluster.master_url
    assert status["aliveworkers"] == 1 and [w["state"] for w in status["workers"]] == ["ALIVE"]
    master_pid = int((spark_cluster.state_dir / f"spark-master-{spark_cluster.env['SPARK_MASTER_PORT']}.pid").read_text())
    for pid in (master_pid, spark_cluster.worker_pid(1)):
        addresses = listening_addresses(pid)
        assert addresses and {ip for ip, _ in addresses} == {"127.0.0.1"}, addresses
    assert ("127.0.0.1", int(spark_cluster.env["SPARK_MASTER_PORT"])) in listening_addresses(master_pid)


def test_a_submitted_python_app_runs_on_the_cluster_and_finishes(spark_cluster, tmp_path):
    app, out = tmp_path / "sum_of_squares.py", tmp_path / "result.txt"
    app.write_text(APP)
    name = f"services-smoke-{tmp_path.name}"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--master", spark_cluster.master_url,
         "--deploy-mode", "client", "--conf", "spark.ui.enabled=false", "--conf", "spark.executor.memory=1g",
         str(app), str(out), name],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_text() == f"{sum(x * x for x in range(1, 1001))}\n"
    apps = {a["name"]: a for a in spark_cluster.status()["completedapps"]}
    assert apps[name]["state"] == "FINISHED", apps
    assert apps[name]["cores"] > 0, "the application never got executors on the worker"


def test_the_mlflow_server_takes_a_run_over_http(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    sys.path.insert(0, str(REPO / "plugins"))
    import mlflow_links

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.create_experiment(f"services-{tmp_path.name}")
    run = client.create_run(exp, tags={"airflow.dag_run_id": "manual__1"})
    client.log_param(run.info.run_id, "rank", 8)
    client.log_metric(run.info.run_id, "val_map_at_100", 0.125)
    client.log_text(run.info.run_id, "served through the tracking server\n", "notes/hello.txt")
    client.set_terminated(run.info.run_id)

    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.data.metrics == {"val_map_at_100": 0.125}
    assert got.data.params == {"rank": "8"} and got.info.artifact_uri.startswith("mlflow-artifacts:/")
    local = client.download_artifacts(run.info.run_id, "notes/hello.txt", str(tmp_path))
    assert Path(local).read_text() == "served through the tracking server\n"
    # the Airflow plugin finds the experiment on the server with one read-only call
    assert mlflow_links.experiment_id(f"services-{tmp_path.name}", tracking_uri=mlflow_server) == exp
    port = int(mlflow_server.rsplit(":", 1)[1])
    import psutil

    listeners = {c.laddr.ip for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listeners == {"127.0.0.1"}, listeners


def test_parallel_sweep_tasks_all_log_complete_child_runs(mlflow_server, small_split, monkeypatch):
    from pipeline import tracking
    from pipeline.config import als_grid

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    parent = tracking.parent_run(dag_id="music_recs_nightly", dag_run_id="parallel-1")
    configs = als_grid(ranks=[8, 12], reg_params=[0.1], alphas=[0.5, 2.0], max_iters=[5], engine="implicit")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "OPENBLAS_NUM_THREADS": "1"}
    job = REPO / "src" / "pipeline" / "jobs" / "als_job.py"
    procs = [subprocess.Popen([sys.executable, str(job), "--split", str(small_split / "split"),
                               "--out", str(small_split / "parallel"), "--config", json.dumps(c.params()),
                               "--parent-run-id", parent,
                               "--tags", json.dumps({"airflow.task_id": "als_sweep", "airflow.map_index": str(i)})],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, c in enumerate(configs)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)
    kids = tracking.children(parent)
    assert sorted(r.data.tags["pipeline.config_key"] for r in kids) == sorted(c.key for c in configs)
    for r in kids:
        assert r.info.status == "FINISHED" and "val_map_at_100" in r.data.metrics and r.data.params["rank"] in {"8", "12"}
    # a retried task finds its child again instead of creating a second one
    tracking.child_run(parent, config_key=configs[0].key, name=configs[0].label, params=configs[0].params())
    assert len(tracking.children(parent)) == len(configs)
