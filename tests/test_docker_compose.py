"""docker/: the compose file against the Compose specification's JSON schema, lint rules, and the
scripts it calls. No Docker engine runs here, so this is what can be checked without one."""

from __future__ import annotations

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
COMPOSE = REPO / "docker" / "compose.yaml"
ENTRYPOINT = REPO / "scripts" / "container-entrypoint.sh"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose_schema(tmp_path_factory) -> dict:
    """The Compose specification schema, as shipped in the docker-compose 1.29.2 wheel on PyPI."""
    tmp = tmp_path_factory.mktemp("schema")
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "docker-compose==1.29.2",
                          "-d", str(tmp)], capture_output=True, text=True, timeout=120)
    wheels = list(tmp.glob("*.whl"))
    if got.returncode != 0 or not wheels:
        pytest.skip(f"could not fetch the compose schema from PyPI: {got.stderr[-300:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        return json.loads(z.read("compose/config/compose_spec.json"))


def test_compose_file_follows_the_compose_specification(compose, compose_schema):
    import jsonschema

    spec = {k: v for k, v in compose.items() if k != "name"}  # `name` postdates this schema version
    jsonschema.validate(spec, compose_schema)


def test_every_service_is_pinned_and_binds_loopback(compose):
    services = compose["services"]
    assert {"postgres", "mlflow", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
            "spark-master", "spark-worker-1", "spark-worker-2"} <= set(services)
    for name, svc in services.items():
        image = svc.get("image", "")
        assert svc.get("build") or re.search(r":[\w.-]+$", image), f"{name}: image {image!r} is not pinned"
        assert "latest" not in image, name
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_no_secret_is_written_in_the_repository(compose):
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{\w+\}", str(value)), f"{name}.{key} must come from .env, not the file"
    assert ".env" in (REPO / ".gitignore").read_text().split()
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert ".env" not in tracked and (REPO / ".env.example").is_file()


def test_every_role_and_script_exists_and_is_executable(compose):
    roles = set(re.findall(r"^\s+([\w-]+)\)", ENTRYPOINT.read_text(), flags=re.M))
    for name, svc in compose["services"].items():
        if "build" in svc:
            assert svc["command"][0] in roles, f"{name}: role {svc['command'][0]} unknown to {ENTRYPOINT.name}"
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "/opt/music-recs/scripts/container-entrypoint.sh" in dockerfile
    for script in (REPO / "scripts").glob("*.sh"):
        if script.name.startswith("_"):
            continue
        assert os.access(script, os.X_OK), f"{script} is not executable"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, f"{script} has a syntax error"
