"""End to end: the nightly DAG on ListenBrainz's dumps as published, three consecutive logical dates.

The input folder holds what a user downloads from ListenBrainz: a full listens dump (with that day's
incremental beside it, as on the 1st and 15th) and one incremental dump per later night, each a
``.tar.zst``. `airflow dags test` for each date ingests only the dump that night published, keeps every
id the map gave before, and trains on the whole history; every listen is ingested once.
(The date=YYYY-MM-DD layout through the DAG: tests/test_scheduler_e2e.py's landing run.)
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pipeline_runs import airflow_env
from releases import dumps_from_log

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# the test is about ingest: the cheapest training (implicit on the driver, exact search only) keeps three nights short
CONF = {"input_format": "auto", "ranks": [8], "reg_params": [0.1], "alphas": [0.5], "max_iters": [3],
        "betas": [10], "train_window_days": 0, "engine": "implicit", "index_kinds": []}


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


def test_three_nights_of_listenbrainz_dumps_each_run_ingests_only_its_new_dump(tmp_path):
    from pipeline import synth

    home = tmp_path / "home"
    env = airflow_env(home)
    synth.generate(tmp_path / "log", n_listens=9000, n_users=120, n_tracks=600, start="2026-01-01", days=3, seed=5)
    raw = home / "data" / "listenbrainz"
    nights = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(3)]
    full, same_day, *incrementals = dumps_from_log(tmp_path / "log", raw, nights)
    dags_test = [str(BIN / "airflow"), "dags", "test", "music_recs_nightly"]
    conf = json.dumps({**CONF, "input_path": str(raw)})
    curated = home / "curated" / "listenbrainz"
    summaries, maps = [], []
    for night in nights:
        published = (night + dt.timedelta(days=1)).isoformat()  # a night's dump is named by its end, after midnight
        _, log = _run([*dags_test, published, "-c", conf], env)
        summaries.append(json.loads(next(home.glob(f"runs/{published}*/ingest/summary.json")).read_text()))
        maps.append(_idmap(home))
    assert "ListenBrainz dumps" in log and "listenbrainz_dump" in log
    assert [s["ingested"] for s in summaries] == [["date=2026-01-02"], ["date=2026-01-03"], ["date=2026-01-04"]]
    assert summaries[-1]["partitions"] == ["date=2026-01-02", "date=2026-01-03", "date=2026-01-04"]
    records = [json.loads((curated / "listens" / p / "_partition.json").read_text()) for p in summaries[-1]["partitions"]]
    assert [Path(r["source"]).name for r in records] == [full.name] + [f.name for f in incrementals]  # not same_day
    assert all(r["format"] == "listenbrainz_dump" and r["quarantined"] == 0 for r in records)
    for s in summaries:
        assert s["rows_in"] == s["rows_out"] + s["duplicates"] + s["quarantined"]
    for before, after in zip(maps, maps[1:]):
        for kind in ("users", "tracks"):
            assert {k: after[kind][k] for k in before[kind]} == before[kind]  # every old id keeps its meaning

    # every listen of the log once: the curated history is the log's distinct listens, nothing twice
    history = pd.read_parquet(curated / "listens")
    assert not history.duplicated(["user_idx", "track_idx", "timestamp"]).any()
    log_rows = pd.read_parquet(tmp_path / "log" / "interactions")
    assert sum(r["rows_in"] for r in records) == len(log_rows)
    assert len(history) == sum(r["rows_out"] for r in records) == summaries[-1]["history_rows"]
    # the last night trains on the whole history, mapped with the newest map version
    stats = json.loads(next(home.glob("runs/2026-01-04*/split/stats.json")).read_text())
    assert stats["rows_in"] == summaries[-1]["history_rows"]
    assert stats["idmap_version"] == summaries[-1]["idmap_version"]
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        states = db.execute("select logical_date, state from dag_run order by logical_date").fetchall()
    assert [s for _, s in states] == ["success"] * 3
