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

from pipeline import ingest, split, synth
from pipeline.config import IngestConfig, SplitConfig, als_grid

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[1]
PORTS = {"SPARK_MASTER_PORT": "7177", "SPARK_MASTER_WEBUI_PORT": "8181", "SPARK_WORKER_WEBUI_PORT": "8182"}


def master_json() -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['SPARK_MASTER_WEBUI_PORT']}/json/", timeout=5) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = {**os.environ, **PORTS, "PIPELINE_HOME": str(tmp_path_factory.mktemp("svc")), "SPARK_WORKER_CORES": "2",
           "SPARK_WORKER_MEMORY": "2g", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = REPO / "scripts" / "spark-cluster.sh"
    try:
        subprocess.run([str(script), "start", "1"], env=env, check=True, timeout=180, capture_output=True)
        status = master_json()
        assert status["status"] == "ALIVE" and status["aliveworkers"] == 1
        yield f"spark://127.0.0.1:{PORTS['SPARK_MASTER_PORT']}"
    finally:
        subprocess.run([str(script), "stop"], env=env, timeout=120, capture_output=True)


@pytest.fixture(scope="module")
def small_split(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster-data")
    synth.generate(tmp / "raw", n_listens=20_000, seed=3)
    s = ingest.ingest(IngestConfig(input_path=str(tmp / "raw")), tmp / "ingest", idmap_root=tmp / "idmap", spark=spark)
    split.split(tmp / "ingest" / "listens", tmp / "split", SplitConfig(), has_timestamps=True, spark=spark,
                shape=(s["n_users_mapped"], s["n_tracks_mapped"]), idmap_version=s["idmap_version"])
    return tmp


def test_als_sweep_runs_on_the_standalone_cluster(cluster, small_split, monkeypatch):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from pipeline.stages import JOB_FILE, spark_conf

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": cluster}))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    configs = als_grid(ranks=[8], reg_params=[0.1], alphas=[0.5, 2.0], max_iters=[4])
    for i, cfg in enumerate(configs):
        op = SparkSubmitOperator(
            task_id=f"als_sweep_{i}", conn_id="spark_default", application=str(JOB_FILE), name=cfg.label,
            deploy_mode="client", conf={**spark_conf(), "spark.driver.memory": "1g", "spark.executor.memory": "1g"},
            application_args=["--split", str(small_split / "split"), "--out", str(small_split / "sweep"),
                              "--config", json.dumps(cfg.params()), "--k", "50"],
        )
        op.execute(context={})
    for cfg in configs:
        result = json.loads((small_split / "sweep" / cfg.key / "result.json").read_text())
        assert result["status"] == "ok" and result["metrics"]["val_map_at_50"] > 0
    finished = {app["name"]: app["state"] for app in master_json()["completedapps"]}
    for cfg in configs:
        assert finished.get(f"als {cfg.label}") == "FINISHED", finished
