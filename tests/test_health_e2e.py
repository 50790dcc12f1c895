"""Nightly health checks end to end: normal nights pass, a planted drift fails the DAG's health task,
the night is not promoted, and the alert reaches a webhook receiver on 127.0.0.1.

Two alike nights of a date-partitioned log run in this process (every stage, as the DAG calls them;
the second is checked against the first); the third, on which one listener plays ten times as
much as usual, runs under `airflow dags test` with the alert connection pointed at the receiver.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from pipeline_runs import airflow_env, isolated_home, run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

BIN = Path(sys.executable).parent
DAYS = 3
PARAMS = {"input_format": "listenbrainz", "engine": "implicit", "ranks": [8], "reg_params": [0.1], "alphas": [1.0],
          "max_iters": [3], "betas": [10], "index_kinds": [], "health_min_nights": 1}


@contextmanager
def webhook_receiver():
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()


def _nights(log: Path, first: dt.date, days: int) -> tuple[str, int]:
    """``log`` as ``days`` alike nights: its first day's listens again each day. On the last night its most
    active listener plays ten times as much (nine copies of each of their listens, a second apart).
    Returns that listener and their plays of a normal night."""
    inter = log / "interactions"
    df = pd.concat([pd.read_parquet(f) for f in sorted(inter.glob("*.parquet"))], ignore_index=True)
    day = df[df["timestamp"].dt.date == first]
    user = day["user_id"].value_counts().idxmax()
    nights = [day.assign(timestamp=day["timestamp"] + pd.Timedelta(days=i)) for i in range(days)]
    theirs = nights[-1][nights[-1]["user_id"] == user]
    for i in range(1, 10):
        shifted = theirs["timestamp"] + pd.Timedelta(seconds=i)
        same_day = shifted.dt.date == theirs["timestamp"].dt.date
        nights.append(theirs.assign(timestamp=shifted.where(same_day, theirs["timestamp"] - pd.Timedelta(seconds=i))))
    for f in inter.glob("*.parquet"):
        f.unlink()
    pd.concat(nights, ignore_index=True).to_parquet(inter / "part-00000.parquet", coerce_timestamps="us")
    return user, len(theirs)


def test_a_planted_drift_fails_the_night_and_the_alert_reaches_the_webhook(spark, tmp_path, monkeypatch):
    from pipeline import increments, synth, tracking
    from pipeline.serving import MODEL_NAME

    first = dt.date(2026, 1, 1)
    log = tmp_path / "log"
    synth.generate(log, n_listens=3_000, n_users=100, n_tracks=500, start=first.isoformat(), days=1, seed=5)
    last = first + dt.timedelta(days=DAYS - 1)
    _, plays = _nights(log, first, DAYS)
    with webhook_receiver() as (url, received), isolated_home(tmp_path / "home", n_listens=100, seed=1) as home:
        raw = home / "data" / "nightly"
        increments.partition_log(spark, "listenbrainz", log, raw)
        monkeypatch.setenv("AIRFLOW_CONN_PIPELINE_ALERTS", url)
        params = {**PARAMS, "input_path": str(raw)}
        for i in range(DAYS - 1):  # the normal nights: no check fails, nothing is sent
            day = first + dt.timedelta(days=i)
            out = run_pipeline(f"night-{i + 1}", params, as_of=dt.datetime.combine(day, dt.time(), dt.timezone.utc))
            assert not out["health"]["failed"], out["health"]["summary"]
        checked = [c for c in out["health"]["checks"] if c["baseline"] is not None]
        assert len(checked) == 8 and received == [], out["health"]
        versions = len(tracking.client().search_model_versions(f"name = '{MODEL_NAME}'"))
        assert versions == DAYS - 1

        env = airflow_env(home, AIRFLOW_CONN_PIPELINE_ALERTS=url)
        conf = json.dumps(params)
        run = subprocess.run([str(BIN / "airflow"), "dags", "test", "music_recs_nightly", last.isoformat(), "-c", conf],
                             env=env, capture_output=True, text=True, timeout=1200)
        log_text = run.stdout + run.stderr
        with sqlite3.connect(home / "airflow" / "airflow.db") as db:
            states = dict(db.execute("select task_id, state from task_instance").fetchall())
            (dag_state,) = db.execute("select state from dag_run").fetchone()
        assert states["health"] == "failed" and states["promote"] == "upstream_failed", (states, log_text[-4000:])
        assert dag_state == "failed"
        # the alert: one message, from the failed health task, naming the figure that drifted
        alerts = [a for a in received if a["task_id"] == "health"]
        assert len(alerts) == 1, received
        alert = alerts[0]
        assert alert["kind"] == "health" and alert["dag_id"] == "music_recs_nightly"
        assert "top_user_listens" in alert["text"] and "FAILED" in alert["text"] and last.isoformat() in alert["text"]
        assert "the night is not promoted" in alert["text"]
        # nothing was registered for the night; its figures and checks are kept for the next nights
        assert len(tracking.client().search_model_versions(f"name = '{MODEL_NAME}'")) == versions
        report = json.loads(next(home.glob(f"runs/{last.isoformat()}*/health/health.json")).read_text())
        assert "top_user_listens" in report["failed"]
        assert report["night"]["figures"]["top_user_listens"] >= 9 * plays
        assert next(home.glob(f"runs/{last.isoformat()}*/health/trend.png")).stat().st_size > 10_000


def test_the_alert_connection_names_the_target_and_delivery_never_raises(monkeypatch):
    from pipeline import alerts

    monkeypatch.delenv("AIRFLOW_CONN_PIPELINE_ALERTS", raising=False)
    assert alerts.target() is None and alerts.send("nobody listens", kind="test") is False
    with webhook_receiver() as (url, received):
        port = int(url.split(":")[2].split("/")[0])
        monkeypatch.setenv("AIRFLOW_CONN_PIPELINE_ALERTS", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "alerts", "login": "ops",
             "password": "s3cret"}))
        where, auth = alerts.target()
        assert where == url and auth == "Basic b3BzOnMzY3JldA=="
        assert alerts.send("the night drifted", kind="health", details={"failed": ["listens"]}) is True
        assert received == [{"text": "the night drifted", "kind": "health", "dag_id": None, "run_id": None,
                             "task_id": None, "details": {"failed": ["listens"]}}]
    monkeypatch.setenv("AIRFLOW_CONN_PIPELINE_ALERTS", "http://127.0.0.1:9/nothing-listens-here")
    assert alerts.send("lost", kind="test") is False  # logged, not raised
