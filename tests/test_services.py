"""The MLflow tracking server (scripts/mlflow-server.sh) as the one writer for concurrent sweep tasks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import als_grid

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    port = free_port()
    env = {**os.environ, "MLFLOW_PORT": str(port), "PIPELINE_HOME": str(tmp_path_factory.mktemp("mlflow-home")),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = REPO / "scripts" / "mlflow-server.sh"
    try:
        subprocess.run([str(script), "start"], env=env, check=True, timeout=180, capture_output=True)
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([str(script), "stop"], env=env, timeout=60, capture_output=True)


def test_parallel_sweep_tasks_all_log_complete_child_runs(mlflow_server, small_split, monkeypatch):
    from pipeline import tracking

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
