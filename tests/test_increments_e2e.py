"""End to end: the nightly DAG on a date-partitioned input, two consecutive logical dates.

Night 1 lands (`pipeline partition --until`), `airflow dags test` for that date ingests it; night 2
lands, the next date's run ingests only night 2, keeps every id the map gave before, and trains
on both nights.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pipeline_runs import airflow_env

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONF = {"input_format": "listenbrainz", "ranks": [8], "reg_params": [0.1], "alphas": [0.5], "max_iters": [3],
        "betas": [10], "train_window_days": 0}




def _run(args: list[str], env: dict[str, str], timeout: int = 1200) -> tuple[str, str]:
    """(stdout, stdout + stderr) of a command that must succeed."""
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    return out.stdout, log


def _idmap(home: Path) -> dict[str, dict[str, int]]:
    root = home / "state" / "idmap"
    version = (root / "CURRENT").read_text().strip()
    return {k: dict(pd.read_parquet(root / version / k)[["key", "id"]].values) for k in ("users", "tracks")}


def test_two_nights_each_run_ingests_only_its_new_night(tmp_path):
    from pipeline import synth

    home = tmp_path / "home"
    env = airflow_env(home)
    synth.generate(tmp_path / "log", n_listens=8000, n_users=120, n_tracks=600, start="2026-01-01", days=2, seed=5)
    raw = home / "data" / "nightly"
    landed = json.loads(_run([str(BIN / "pipeline"), "partition", "--input", str(tmp_path / "log"), "--out", str(raw),
                              "--until", "2026-01-01"], env, 600)[0])
    assert landed["written"] == ["date=2026-01-01"] and landed["after_until"] == 1
    conf = json.dumps({**CONF, "input_path": str(raw)})
    dags_test = [str(BIN / "airflow"), "dags", "test", "music_recs_nightly"]

    _, log1 = _run([*dags_test, "2026-01-01", "-c", conf], env)
    assert "is date-partitioned" in log1
    curated = home / "curated" / "nightly"
    first = json.loads(next(home.glob("runs/2026-01-01*/ingest/summary.json")).read_text())
    assert first["ingested"] == ["date=2026-01-01"] and first["partitions"] == ["date=2026-01-01"]
    map1 = _idmap(home)
    record1 = (curated / "listens" / "date=2026-01-01" / "_partition.json").read_text()

    landed = json.loads(_run([str(BIN / "pipeline"), "partition", "--input", str(tmp_path / "log"), "--out", str(raw),
                              "--until", "2026-01-02"], env, 600)[0])
    assert landed["written"] == ["date=2026-01-02"] and landed["already_there"] == ["date=2026-01-01"]
    _run([*dags_test, "2026-01-02", "-c", conf], env)
    second = json.loads(next(home.glob("runs/2026-01-02*/ingest/summary.json")).read_text())
    assert second["ingested"] == ["date=2026-01-02"] and second["partitions"] == ["date=2026-01-01", "date=2026-01-02"]
    assert second["rows_in"] == second["rows_out"] + second["duplicates"] + second["quarantined"]
    assert (curated / "listens" / "date=2026-01-01" / "_partition.json").read_text() == record1  # night 1 untouched

    map2 = _idmap(home)
    for kind in ("users", "tracks"):
        assert {k: map2[kind][k] for k in map1[kind]} == map1[kind]  # every old id keeps its meaning
        assert len(map2[kind]) >= len(map1[kind])
    assert len(map2["users"]) > len(map1["users"]) or len(map2["tracks"]) > len(map1["tracks"])
    # the second run trains on the whole curated history (both nights), mapped with the newest map version
    stats = json.loads(next(home.glob("runs/2026-01-02*/split/stats.json")).read_text())
    assert stats["rows_in"] == second["history_rows"] == first["history_rows"] + second["rows_out"]
    assert stats["idmap_version"] == second["idmap_version"] and stats["shape"] == [len(map2["users"]), len(map2["tracks"])]
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        states = db.execute("select logical_date, state from dag_run order by logical_date").fetchall()
    assert [s for _, s in states] == ["success", "success"]
