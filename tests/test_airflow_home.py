"""The embedded Airflow's generated config pins no path of the checkout: a copied or moved checkout
uses its own metadata DB, never the original's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]


def test_make_airflow_db_leaves_no_absolute_path_in_airflow_cfg(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(PIPELINE_HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    out = subprocess.run(["make", "-s", "-o", ".venv/.installed", "airflow-db"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    cfg = (home / "airflow" / "airflow.cfg").read_text()
    assert str(REPO) not in cfg and str(home) not in cfg and "sql_alchemy_conn" not in cfg, cfg
    assert (home / "airflow" / "airflow.db").exists()  # the DB lands under this home's AIRFLOW_HOME
    # the paths Airflow uses come from the environment, so they follow the home
    value = subprocess.run([str(Path(sys.executable).parent / "airflow"), "config", "get-value", "database",
                            "sql_alchemy_conn"], env={**env, "AIRFLOW_HOME": str(home / "airflow")},
                           capture_output=True, text=True, timeout=300)
    assert value.stdout.strip() == f"sqlite:///{home / 'airflow' / 'airflow.db'}", value.stdout + value.stderr
