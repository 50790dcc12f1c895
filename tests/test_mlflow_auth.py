"""MLflow with authentication, as scripts/mlflow-server.sh starts it for `make up` and docker/compose.yaml:
an anonymous write gets 401 while /health stays open, the admin's credentials get in, and the
pipeline's tracking helpers log in from MLFLOW_TRACKING_USERNAME/PASSWORD or fail with one line
that names them. A real `mlflow server --app-name basic-auth` on 127.0.0.1, no mocks."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from cluster_fixtures import SCRIPTS, free_port, run_script, service_env

pytest_plugins = ["cluster_fixtures"]
pytestmark = pytest.mark.spark
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def call(url: str, path: str, body: dict | None = None,
         auth: tuple[str, str] | None = None) -> tuple[int, str, Message]:
    """(HTTP status, body, headers) of one request (a POST with ``body``), HTTP Basic credentials if ``auth``."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode(), resp.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def admin(credentials: dict[str, str]) -> tuple[str, str]:
    return credentials["MLFLOW_TRACKING_USERNAME"], credentials["MLFLOW_TRACKING_PASSWORD"]


def test_an_anonymous_write_gets_401_and_the_admin_gets_in(mlflow_server, mlflow_credentials, tmp_path):
    name = f"auth-{tmp_path.name}"
    create = "/api/2.0/mlflow/experiments/create"
    status, _, headers = call(mlflow_server, create, {"name": name})
    assert status == 401 and (headers["WWW-Authenticate"] or "").startswith("Basic"), (status, dict(headers))
    user, password = admin(mlflow_credentials)
    assert call(mlflow_server, create, {"name": name}, auth=(user, password + "-wrong"))[0] == 401
    assert call(mlflow_server, create, {"name": name}, auth=("nobody", password))[0] == 401
    lookup = f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"
    assert call(mlflow_server, lookup)[0] == 401, "anonymous reads are refused too"
    assert call(mlflow_server, lookup, auth=(user, password))[0] == 404, "the refused writes created nothing"

    status, body, _ = call(mlflow_server, create, {"name": name}, auth=(user, password))
    assert status == 200 and json.loads(body)["experiment_id"], body
    assert call(mlflow_server, lookup, auth=(user, password))[0] == 200
    # /health stays open: `scripts/mlflow-server.sh status` and the compose healthcheck ask it
    assert call(mlflow_server, "/health")[0] == 200
    port = mlflow_server.rsplit(":", 1)[1]
    env = {k: v for k, v in service_env(tmp_path / "home", MLFLOW_PORT=port).items() if k not in CREDENTIALS}
    assert "MLflow up at" in run_script("mlflow-server.sh", "status", env=env)


def test_the_pipeline_logs_in_from_the_environment_and_names_what_is_missing(mlflow_server, mlflow_credentials,
                                                                              monkeypatch, tmp_path):
    from mlflow import MlflowClient

    from pipeline import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    dag_run_id = f"auth-{tmp_path.name}"
    parent = tracking.parent_run(dag_id="music_recs_nightly", dag_run_id=dag_run_id)
    tracking.log_metrics(parent, {"val_map_at_100": 0.25})
    assert MlflowClient(mlflow_server).get_run(parent).data.metrics == {"val_map_at_100": 0.25}

    def refused(fn, *args, **kwargs) -> str:
        with pytest.raises(tracking.TrackingAuthError) as err:
            fn(*args, **kwargs)
        message = str(err.value)
        assert "\n" not in message and mlflow_server in message and err.value.__cause__ is None, message
        return message

    for key in CREDENTIALS:
        monkeypatch.delenv(key)
    for message in (refused(tracking.parent_run, dag_id="music_recs_nightly", dag_run_id=dag_run_id),
                    refused(tracking.log_metrics, parent, {"val_map_at_100": 0.5}),
                    refused(tracking.children, parent)):
        assert "requires authentication (HTTP 401)" in message
        assert "MLFLOW_TRACKING_USERNAME" in message and "MLFLOW_TRACKING_PASSWORD" in message

    user, password = admin(mlflow_credentials)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password + "-wrong")
    message = refused(tracking.finish, parent)
    assert f"rejected the credentials of MLFLOW_TRACKING_USERNAME='{user}' (HTTP 401)" in message

    # a signed-in user without a grant on the experiment reads (default_permission READ) but cannot write
    reader = (f"reader-{tmp_path.name}"[-40:], "reader-password-0123")
    status, body, _ = call(mlflow_server, "/api/2.0/mlflow/users/create",
                           {"username": reader[0], "password": reader[1]}, auth=(user, password))
    assert status == 200, body
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", reader[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", reader[1])
    assert tracking.client().get_run(parent).info.run_id == parent
    message = refused(tracking.log_metrics, parent, {"val_map_at_100": 0.75})
    assert f"refused user '{reader[0]}' (HTTP 403" in message
    run = MlflowClient(mlflow_server).get_run(parent)
    assert run.data.metrics == {"val_map_at_100": 0.25} and run.info.status == "RUNNING", "a refused call wrote"
    # until the admin grants it EDIT on the experiment (MLflow's permissions API, as the README says)
    grant = {"username": reader[0], "resource_type": "experiment", "resource_id": run.info.experiment_id,
             "permission": "EDIT"}
    status, body, _ = call(mlflow_server, "/api/3.0/mlflow/users/permissions/grant", grant, auth=(user, password))
    assert status == 200, body
    tracking.log_metrics(parent, {"val_map_at_100": 0.75})
    assert MlflowClient(mlflow_server).get_run(parent).data.metrics == {"val_map_at_100": 0.75}

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    assert tracking.parent_run(dag_id="music_recs_nightly", dag_run_id=dag_run_id) == parent


def test_without_a_password_one_is_generated_once_and_a_changed_one_fails_the_start(tmp_path):
    port = free_port()
    env = {k: v for k, v in service_env(tmp_path, MLFLOW_PORT=str(port), MLFLOW_WORKERS="1").items()
           if k not in CREDENTIALS}
    url = f"http://127.0.0.1:{port}"
    server_dir = tmp_path / "mlflow-server"
    try:
        run_script("mlflow-server.sh", "start", env=env)
        generated = server_dir / "admin_password.generated"
        password = generated.read_text().strip()
        assert len(password) >= 12 and stat.S_IMODE(generated.stat().st_mode) == 0o600
        assert stat.S_IMODE((server_dir / "flask_secret_key").stat().st_mode) == 0o600
        assert password not in (server_dir / "basic_auth.ini").read_text(), "the ini holds no secret"

        exports = run_script("mlflow-server.sh", "env", env=env)
        assert password not in exports, "`env` names the file, it does not print the password"
        shell = subprocess.run(["bash", "-c", 'eval "$1" && env', "_", exports], env=env, capture_output=True,
                               text=True, check=True).stdout
        got = dict(line.split("=", 1) for line in shell.splitlines() if line.startswith("MLFLOW_TRACKING_"))
        assert got == {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin",
                       "MLFLOW_TRACKING_PASSWORD": password}
        create = "/api/2.0/mlflow/experiments/create"
        assert call(url, create, {"name": "generated"})[0] == 401
        assert call(url, create, {"name": "generated"}, auth=("admin", password))[0] == 200

        # MLflow sets the admin's password only when it creates the user: a different one in the
        # environment later is not silently ignored, the start fails and says what to do
        run_script("mlflow-server.sh", "stop", env=env)
        proc = subprocess.run([str(SCRIPTS / "mlflow-server.sh"), "start"],
                              env={**env, "MLFLOW_TRACKING_PASSWORD": "another-password-0"},
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "answers 401 to user 'admin' with the password from MLFLOW_TRACKING_PASSWORD" in proc.stderr
        assert "users/update-password" in proc.stderr and "another-password-0" not in proc.stderr + proc.stdout
    finally:
        subprocess.run([str(SCRIPTS / "mlflow-server.sh"), "stop"], env=env, capture_output=True, timeout=60)
    assert not Path(env["PIPELINE_HOME"], "services", f"mlflow-{port}.pid").exists()
