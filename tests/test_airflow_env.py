"""The embedded Airflow set-up has one owner, ``pipeline.airflow_env``: the Makefile, the scripts,
the benchmarks and the tests all take it from there."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.airflow_env import checkout, embedded_env, prepare, user_env

REPO = Path(__file__).resolve().parents[1]


def test_everything_lives_under_the_home_and_the_dags_come_from_the_checkout(tmp_path):
    env = embedded_env(tmp_path / "h", spark_master="local[2]")
    assert env["PIPELINE_HOME"] == str(tmp_path / "h")
    assert env["AIRFLOW_HOME"] == str(tmp_path / "h" / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO / "plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"]) == {"conn_type": "spark", "host": "local[2]"}
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)  # the venv's airflow first


def test_a_persons_own_airflow_home_and_spark_master_are_kept_but_not_their_dag_folder(tmp_path):
    base = {"PIPELINE_HOME": str(tmp_path / "h"), "AIRFLOW_HOME": str(tmp_path / "mine"), "PATH": "/usr/bin",
            "AIRFLOW_CONN_SPARK_DEFAULT": "spark://10.0.0.5:7077", "AIRFLOW__CORE__DAGS_FOLDER": "/elsewhere"}
    env = user_env(base)
    assert env["AIRFLOW_HOME"] == str(tmp_path / "mine")
    assert env["AIRFLOW_CONN_SPARK_DEFAULT"] == "spark://10.0.0.5:7077"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
    assert user_env({"PATH": "/usr/bin"})["PIPELINE_HOME"] == str(REPO / "var")  # the default home


def test_a_shell_gets_the_same_values_from_the_exports(tmp_path):
    env = {"PATH": os.environ["PATH"], "PIPELINE_HOME": str(tmp_path / "home with space")}
    script = (f'eval "$("{sys.executable}" -m pipeline.airflow_env --repo "{REPO}" exports)"; '
              'printf "%s\\n" "$AIRFLOW_HOME" "$AIRFLOW__CORE__DAGS_FOLDER" "$AIRFLOW_CONN_SPARK_DEFAULT"')
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    expected = user_env(env)
    assert out.stdout.splitlines() == [expected["AIRFLOW_HOME"], expected["AIRFLOW__CORE__DAGS_FOLDER"],
                                       expected["AIRFLOW_CONN_SPARK_DEFAULT"]]


def read(cfg):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(cfg)
    return parser


def test_prepare_writes_the_minimal_config_with_this_homes_shared_secrets_once(tmp_path):

    env = embedded_env(tmp_path / "a")
    cfg = prepare(env) / "airflow.cfg"
    parser = read(cfg)
    assert cfg.read_text().startswith((REPO / "scripts" / "airflow.cfg").read_text().split("[core]")[0])
    assert parser["core"]["load_examples"] == "False"
    shared = {(s, o): parser[s][o] for s, o in [("core", "fernet_key"), ("api", "secret_key"), ("api_auth", "jwt_secret")]}
    assert all(len(v) >= 16 for v in shared.values()) and cfg.stat().st_mode & 0o077 == 0
    with cfg.open("a") as f:
        f.write("# edited by its owner\n")
    prepare(env)
    assert "edited by its owner" in cfg.read_text()  # kept as it is: every process reads the same secrets
    other = read(prepare(embedded_env(tmp_path / "b")) / "airflow.cfg")
    assert other["api_auth"]["jwt_secret"] != shared["api_auth", "jwt_secret"]  # drawn per home


def test_a_secret_the_environment_sets_is_not_written(tmp_path):
    env = {**embedded_env(tmp_path), "AIRFLOW__API_AUTH__JWT_SECRET": "from-compose"}
    parser = read(prepare(env) / "airflow.cfg")
    assert not parser.has_option("api_auth", "jwt_secret") and parser.has_option("core", "fernet_key")


def test_outside_a_checkout_the_error_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass --repo"):
        checkout(tmp_path)
    out = subprocess.run([sys.executable, "-m", "pipeline.airflow_env", "--repo", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_no_other_file_sets_up_airflow():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: cannot list the repository's files")
    mine = {"src/pipeline/airflow_env.py", str(Path(__file__).resolve().relative_to(REPO))}
    setting = [name for name in tracked.stdout.splitlines()
               if name not in mine and not name.startswith("docker/") and (REPO / name).is_file()
               and "AIRFLOW__CORE__DAGS_FOLDER" in (REPO / name).read_text(errors="replace")]
    assert setting == [], f"set the Airflow environment through pipeline.airflow_env, not in {setting}"


def test_prepare_writes_the_admins_password_before_any_api_server_and_keeps_it(tmp_path):
    """The README names the password file to read after `make demo`; Airflow would write it only on its first start."""
    import json

    from pipeline.airflow_env import passwords_file

    env = embedded_env(tmp_path)
    prepare(env)
    path = passwords_file(env)
    first = json.loads(path.read_text())
    assert list(first) == ["admin"] and len(first["admin"]) >= 12 and path.stat().st_mode & 0o077 == 0
    prepare(env)
    assert json.loads(path.read_text()) == first
