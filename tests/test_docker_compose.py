"""docker/: the compose file against the Compose Specification's JSON schema (fetched from PyPI at test time),
lint rules (pinned images, loopback-only ports, no secrets in the repository), and the scripts the
compose file and the Dockerfile call. No Docker engine runs here: this is what can be checked without one."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
IMAGE_ROOT = "/opt/music-recs/"  # WORKDIR of docker/Dockerfile: the repository's files in the image
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$|SQL_ALCHEMY_CONN|STORE_URI")
SERVICES = {"postgres", "mlflow", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
            "spark-master", "spark-worker-1", "spark-worker-2"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # YAML merge keys (<<: *app) resolved


@pytest.fixture(scope="module")
def validator(tmp_path_factory):
    """A Draft-07 validator for the Compose Specification, as shipped in the docker-compose 1.29.2 wheel."""
    import jsonschema

    tmp = tmp_path_factory.mktemp("schema")
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "docker-compose==1.29.2",
                          "-d", str(tmp)], capture_output=True, text=True, timeout=120)
    wheels = list(tmp.glob("*.whl"))
    if got.returncode != 0 or not wheels:
        pytest.skip(f"could not fetch the compose schema from PyPI: {got.stderr[-300:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        schema = json.loads(z.read("compose/config/compose_spec.json"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_follows_the_compose_specification(compose, validator):
    spec = {k: v for k, v in compose.items() if k != "name"}  # top-level `name` postdates this schema version
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(spec)]
    assert not errors, "\n".join(errors)


def test_the_schema_check_rejects_what_compose_would_reject(compose, validator):
    for path, value in [(("services", "mlflow", "portz"), ["127.0.0.1:5000:5000"]),
                        (("services", "spark-master", "depends_on"), {"mlflow": {"condition": "healthy"}}),
                        (("volumes",), ["not-a-mapping"])]:
        bad = copy.deepcopy(compose)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert not validator.is_valid(bad), f"{'.'.join(path)} = {value!r} should be invalid"


def test_every_service_is_present_pinned_and_published_on_loopback_only(compose):
    services = compose["services"]
    assert SERVICES <= set(services), f"missing services: {SERVICES - set(services)}"
    for name, svc in services.items():
        image = svc.get("image", "")
        assert "build" in svc or re.fullmatch(r"[\w./-]+:\d[\w.-]*", image), f"{name}: image {image!r} is not pinned"
        assert not image.endswith(":latest"), f"{name}: image {image!r} is not pinned"
        for port in svc.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), \
                f"{name} publishes {port!r} beyond loopback: write it as \"127.0.0.1:HOST:CONTAINER\""
        assert svc.get("network_mode") != "host" and not svc.get("privileged"), name
    built = {svc["image"] for svc in services.values() if "build" in svc}
    assert built == {"music-recs:0.1.0"}, f"one image for every role, got {built}"
    version = re.search(r'^version = "([\d.]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert built == {f"music-recs:{version}"}, "the image tag follows pyproject.toml's version"


def test_no_secret_is_written_in_the_repository(compose):
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.partition("=")[::2] for e in env)
        for key, value in items:
            if SECRET_KEY.search(key):
                assert re.fullmatch(r"\$\{\w+(:?\?[^}]*)?\}", str(value)), \
                    f"{name}.{key} must come from .env (env_file) or ${{VAR}}, not be written in compose.yaml"
    assert not re.search(r"://[^/\s:]+:[^@\s$]+@", COMPOSE.read_text()), "a URI with a password in compose.yaml"
    assert ".env" in (REPO / ".gitignore").read_text().split()
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert ".env" not in tracked, ".env holds the secrets: it must stay untracked"
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    for key, value in example.items():
        if SECRET_KEY.search(key) and value:
            assert "change-me" in value, f".env.example {key} must be a placeholder (change-me), not a real secret"


def test_every_variable_the_containers_need_is_in_the_env_template(compose):
    example = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    needed = {"POSTGRES_USER", "POSTGRES_PASSWORD", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "MLFLOW_BACKEND_STORE_URI",
              "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW_CONN_SPARK_DEFAULT",
              "SPARK_MASTER_HOST", "MLFLOW_TRACKING_URI", "MLFLOW_UI_URL", "MLFLOW_ALLOWED_HOSTS", "PIPELINE_DATA_ROOTS",
              # MLflow's basic auth: the admin the server creates is the user every task logs in as
              "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY",
              "MLFLOW_AUTH_DATABASE_URI"}
    assert needed <= example, f"missing from .env.example: {sorted(needed - example)}"
    for name, svc in compose["services"].items():
        if name != "postgres":
            assert svc.get("env_file") == "../.env", f"{name} must read ../.env"
    # variables interpolated into the compose file itself need a default (.env sits beside the repo, not docker/)
    for var in re.findall(r"(?<!\$)\$\{(\w+)([^}]*)\}", COMPOSE.read_text()):
        assert var[1].startswith((":-", "-")), f"${{{var[0]}}} in compose.yaml has no default"
    hosts = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                 if line.startswith("MLFLOW_ALLOWED_HOSTS="))["MLFLOW_ALLOWED_HOSTS"].split(",")
    assert "mlflow:5000" in hosts, "tasks reach the server as mlflow:5000; MLflow rejects Host headers not allowed"


def test_mlflow_runs_with_authentication_and_its_databases_exist(compose):
    script = (REPO / "scripts" / "mlflow-server.sh").read_text()
    assert "exec mlflow server --app-name basic-auth" in script, "the tracking server must authenticate"
    assert compose["services"]["mlflow"]["command"][1:] == ["run"]
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    # MLflow refuses an admin password under 12 characters: the placeholder cannot reach production
    assert len(example["MLFLOW_TRACKING_PASSWORD"]) < 12
    created = set(re.findall(r"CREATE DATABASE (\w+);", (DOCKER / "postgres-init.sql").read_text()))
    databases = {uri.rsplit("/", 1)[1] for key, uri in example.items() if key.endswith(("_URI", "_CONN"))
                 and uri.startswith("postgresql")}
    created.add(compose["services"]["postgres"]["environment"]["POSTGRES_DB"])  # made by the image itself
    assert databases == {"airflow", "mlflow", "mlflow_auth"} and databases <= created, (databases, created)


def script_calls(compose: dict) -> list[tuple[str, list[str]]]:
    """(service, argv) of every command and healthcheck that runs one of the image's scripts."""
    calls = []
    for name, svc in compose["services"].items():
        for argv in (svc.get("command"), (svc.get("healthcheck") or {}).get("test")):
            if isinstance(argv, list):
                argv = argv[1:] if argv[0] in ("CMD", "CMD-SHELL") else argv
                if argv and argv[0].startswith(IMAGE_ROOT):
                    calls.append((name, argv))
    return calls


def test_every_script_the_images_run_exists_is_executable_and_knows_the_command(compose):
    calls = script_calls(compose)
    dockerfile = DOCKERFILE.read_text()
    calls += [("Dockerfile CMD", json.loads(m)) for m in re.findall(r"^CMD (\[.*\])$", dockerfile, re.M)]
    assert {name for name, _ in calls} >= SERVICES - {"postgres"}, "every app service runs a script of scripts/"
    for name, argv in calls:
        script = REPO / argv[0].removeprefix(IMAGE_ROOT)
        assert script.parent == REPO / "scripts" and script.is_file(), f"{name}: {argv[0]} is not in scripts/"
        assert os.access(script, os.X_OK), f"{name}: {script} is not executable"
        labels = set(re.findall(r"^\s+([\w|-]+)\)", script.read_text(), re.M))  # case labels: a|b)
        known = {v for alt in labels for v in alt.split("|")}
        for word in argv[1:]:  # the command and its sub-command (airflow.sh run api-server)
            assert word in known, f"{name}: {script.name} has no '{word}' command (it has {sorted(known)})"


def test_the_dockerfile_is_pinned_and_copies_what_exists():
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), f"base image {base} must pin Python 3.11.x"
    assert "openjdk-17-jre-headless" in text and "-r requirements.txt" in text
    ignore = DOCKER.joinpath("Dockerfile.dockerignore").read_text().split()
    for src in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in src.split():
            assert (REPO / path).exists(), f"COPY {path}: no such file in the repository"
            assert f"!{path}" in ignore, f"COPY {path}: excluded from the build context by Dockerfile.dockerignore"


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "scripts").glob("*.sh") if not p.name.startswith("_")))
def test_service_scripts_are_strict_documented_and_reject_unknown_commands(script, tmp_path):
    path = REPO / "scripts" / script
    text = path.read_text()
    assert os.access(path, os.X_OK), f"{path} is not executable"
    assert text.startswith("#!/usr/bin/env bash\n# Usage: "), f"{script} needs a shebang and a usage comment"
    assert "set -euo pipefail" in text or script == "down.sh", f"{script} must run with set -euo pipefail"
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0, f"{script} has a syntax error"
    if "-h|--help|help)" in text:
        env = {**os.environ, "PIPELINE_HOME": str(tmp_path)}
        shown = subprocess.run([str(path), "--help"], env=env, capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0 and shown.stdout.startswith(f"Usage: scripts/{script}")
        assert not any(tmp_path.iterdir()), "--help must not create state folders"
        bad = subprocess.run([str(path), "no-such-command"], env=env, capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2 and "usage:" in bad.stderr
