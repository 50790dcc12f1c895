"""Real services on 127.0.0.1 for tests, started and stopped by the repository's own scripts.

- ``spark_cluster``: a Spark standalone master and one worker (scripts/spark-cluster.sh) on free
  ports, yielding a :class:`SparkCluster` (``master_url``, ``json_url``, the env to restart workers).
- ``mlflow_server``: an MLflow tracking server (scripts/mlflow-server.sh) on a free port, yielding its URL.
  Authentication is on, as in the service set-up: for the session, the test process has the admin's
  ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` in its environment (``mlflow_credentials``),
  so MLflow's client, ``pipeline.tracking`` and every subprocess that inherits it log in.

Both are session scoped and stop their processes even when a test or the start-up fails. Use them
by naming this module in ``pytest_plugins = ["cluster_fixtures"]`` (in tests/conftest.py or in each
test module that needs them): pytest then registers it once, so the whole session shares one cluster.
Do not ``from cluster_fixtures import spark_cluster``: an imported fixture is a new fixture per
module, and each module would start a cluster of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["SparkCluster", "free_port", "run_script", "start_spark_cluster", "spark_cluster", "mlflow_server",
           "mlflow_credentials"]

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def free_port() -> int:
    """A TCP port nothing listens on at the moment (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(home: Path, **extra: str) -> dict[str, str]:
    """This interpreter's environment, its venv first on PATH, state under ``home``, plus ``extra``."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "PIPELINE_HOME": str(home), "BIND_HOST": "127.0.0.1", **extra}


def run_script(name: str, *args: str, env: Mapping[str, str], timeout: float = 240) -> str:
    """Run scripts/<name> and return its output; on failure, fail the test with that output."""
    proc = subprocess.run([str(SCRIPTS / name), *args], env=dict(env), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"scripts/{name} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@dataclass(frozen=True, kw_only=True)
class SparkCluster:
    """A running standalone cluster: where to submit, where its JSON status is, how to manage it."""

    master_url: str
    json_url: str
    env: Mapping[str, str]

    @property
    def state_dir(self) -> Path:
        """Where scripts/spark-cluster.sh keeps the pid and log files."""
        return Path(self.env["PIPELINE_HOME"]) / "services"

    def status(self) -> dict:
        """The master's JSON status page (``aliveworkers``, ``workers``, ``activeapps``, ``completedapps``...)."""
        with urllib.request.urlopen(self.json_url, timeout=5) as resp:
            return json.load(resp)

    def worker_pid(self, i: int = 1) -> int:
        """The pid of worker ``i`` (1-based), to kill it in a fault test."""
        return int((self.state_dir / f"spark-worker-{self.env['SPARK_MASTER_PORT']}-{i}.pid").read_text())

    def start_workers(self, n: int = 1) -> str:
        """Start workers 1..n that are not running (e.g. after one was killed); returns the script's output."""
        return run_script("spark-cluster.sh", "start", str(n), env=self.env)


@contextlib.contextmanager
def start_spark_cluster(home: Path) -> Iterator[SparkCluster]:
    """A real master + 1 worker (2 cores, 2g) on 127.0.0.1 and free ports, state under ``home``; stopped on exit."""
    master_port, ui_port, worker_ui_port = free_port(), free_port(), free_port()
    env = service_env(home, SPARK_MASTER_PORT=str(master_port), SPARK_MASTER_WEBUI_PORT=str(ui_port),
                      SPARK_WORKER_WEBUI_PORT=str(worker_ui_port), SPARK_WORKER_CORES="2", SPARK_WORKER_MEMORY="2g")
    try:
        run_script("spark-cluster.sh", "start", "1", env=env)
        yield SparkCluster(master_url=f"spark://127.0.0.1:{master_port}", json_url=f"http://127.0.0.1:{ui_port}/json/",
                           env=env)
    finally:
        subprocess.run([str(SCRIPTS / "spark-cluster.sh"), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory) -> Iterator[SparkCluster]:
    """The session's shared cluster (see :func:`start_spark_cluster`)."""
    with start_spark_cluster(tmp_path_factory.mktemp("spark-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def mlflow_credentials() -> dict[str, str]:
    """The session's MLflow admin: ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``."""
    return {"MLFLOW_TRACKING_USERNAME": "pipeline-admin", "MLFLOW_TRACKING_PASSWORD": secrets.token_urlsafe(18)}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, mlflow_credentials) -> Iterator[str]:
    """A real MLflow tracking server (SQLite backend, served artifacts, basic auth) on 127.0.0.1; yields its URL.

    Its admin is ``mlflow_credentials``, which stay in this process's environment until the session ends.
    """
    port = free_port()
    env = service_env(tmp_path_factory.mktemp("mlflow-server"), MLFLOW_PORT=str(port), **mlflow_credentials)
    try:
        run_script("mlflow-server.sh", "start", env=env)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in mlflow_credentials.items():
                mp.setenv(key, value)
            yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([str(SCRIPTS / "mlflow-server.sh"), "stop"], env=env, capture_output=True, timeout=60)
