"""A month of nightly partitions backfilled through the real scheduler (scripts/airflow.sh's services,
Spark local, the embedded MLflow store; the backfill created through the REST API as the UI's
"Backfill" does): every night ingested exactly once, by its own date's run, in date order; retention
keeps the newest three run folders; no process is left behind.

About a minute per night on 2 cores, so `make test` leaves it out (marker ``faults``);
scripts/fault-drills.sh runs it. DRILL_NIGHTS sets the nights (default 30).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
from pathlib import Path

import pytest
from airflow_api import DAG, services, wait_for_dag, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.spark]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    home = tmp_path_factory.mktemp("backfill") / "home"
    with services(home) as api:
        wait_for_dag(api)
        yield api, home


def test_a_month_of_nights_backfilled_ingests_each_once_keeps_three_runs_and_leaks_no_process(airflow, tmp_path):
    from pipeline import increments, synth
    from pipeline.spark import get_session, release_session

    api, home = airflow

    nights = int(os.environ.get("DRILL_NIGHTS", "30"))
    log = tmp_path / "log"
    synth.generate(log, n_listens=300 * nights, n_users=150, n_tracks=800, start="2026-03-01", days=nights, seed=7)
    increments.partition_log(get_session("drill partition", master="local[1]"), "listenbrainz", log,
                             home / "data" / "nightly")
    release_session()
    conf = {"input_path": str(home / "data" / "nightly"), "families": ["popularity"], "index_kinds": [],
            "keep_runs": 3, "health_checks": "flag"}
    last = f"2026-03-{nights:02d}"
    body = {"dag_id": DAG, "from_date": "2026-03-01T00:00:00Z", "to_date": f"{last}T23:59:59Z",
            "dag_run_conf": conf, "max_active_runs": 1, "reprocess_behavior": "none", "run_backwards": False}
    for attempt in range(20):
        try:
            backfill = api.post("/api/v2/backfills", body)
            break
        except urllib.error.HTTPError as e:
            # Airflow refuses a backfill while SQLite is busy ("Database is locked ... not supported on SQLite
            # under concurrent access"): on the embedded set-up, ask again; Postgres (docker/compose.yaml) does not
            if e.code != 503 or attempt == 19:
                raise
            time.sleep(3)
    runs_path = f"/api/v2/dags/{DAG}/dagRuns?limit=100&run_type=backfill"
    wait_until("all backfilled", lambda: api.get(f"/api/v2/backfills/{backfill['id']}").get("completed_at"),
               minutes=5 * nights, every=5)
    runs = api.get(runs_path)["dag_runs"]
    assert len(runs) == nights and {r["state"] for r in runs} == {"success"}, [(r["logical_date"], r["state"])
                                                                          for r in runs]
    # every night in the curated table exactly once, each committed by the run of its own date
    records = [json.loads(p.read_text()) for p in sorted((home / "curated").glob("*/listens/date=*/_partition.json"))]
    assert [r["date"] for r in records] == [f"2026-03-{d:02d}" for d in range(1, nights + 1)], records
    night_of = {r["dag_run_id"]: r["logical_date"][:10] for r in runs}
    assert [night_of.get(r["ingested_by"]) for r in records] == [r["date"] for r in records]
    # retention: the newest three run folders remain, each of which ingested only its own night; of an
    # older run whose version still carries an alias, only its bundle and the record of why
    folders = sorted(p for p in (home / "runs").iterdir() if p.is_dir())
    kept = [p for p in folders if (p / "ingest").exists()]
    aliased = [p for p in folders if p not in kept]
    assert [p.name[:10] for p in kept] == [f"2026-03-{d:02d}" for d in range(nights - 2, nights + 1)], folders
    assert len(aliased) <= 2 and all({c.name for c in p.iterdir()} == {"bundle", "context.json", "promotion.json"}
                                     for p in aliased), [(p, list(p.iterdir())) for p in aliased]
    for folder in kept:
        summary = json.loads((folder / "ingest" / "summary.json").read_text())
        assert summary["ingested"] == [f"date={folder.name[:10]}"], (folder.name, summary["ingested"])
    du = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
    restarts = (home / "services" / "airflow-scheduler.log").read_text().count("starting it again")
    print(f"{nights} nights backfilled; {len(kept)} run folders kept, and the bundles of {len(aliased)} older "
          f"aliased version(s); {du / 2**20:.1f} MiB under the home; "
          f"the scheduler restarted {restarts} time(s) by scripts/airflow.sh")
    # no leaked processes: nothing but the services' own process groups runs under this home
    time.sleep(10)
    service_groups = {int(p.read_text()) for p in (home / "services").glob("*.pid")}
    leaked = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            pgid = os.getpgid(int(proc.name))
        except (OSError, ProcessLookupError):
            continue
        mine = f"PIPELINE_HOME={home}".encode() in environ and int(proc.name) != os.getpid()
        if mine and pgid not in service_groups:
            leaked.append((proc.name, (proc / "cmdline").read_bytes().replace(b"\0", b" ")[:200]))
    assert not leaked, leaked
