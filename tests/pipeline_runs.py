"""Every stage of a DAG run, in order, in this process (ALS in-process instead of spark-submit): what the
DAG's tasks call, for tests that check the stages without Airflow."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline import stages
from pipeline.airflow_env import embedded_env, migrate


def airflow_env(home: Path, *, migrate_db: bool = True, **extra: str) -> dict[str, str]:
    """This process's environment with the embedded Airflow set-up under ``home``
    (:mod:`pipeline.airflow_env`) on ``local[2]`` with a 2 GB driver, and no MLflow URI, so the run
    uses its own embedded store; its metadata DB migrated unless ``migrate_db`` is false."""
    env = {**os.environ, **embedded_env(home, spark_master="local[2]"), "SPARK_DRIVER_MEMORY": "2g", **extra}
    env.pop("MLFLOW_TRACKING_URI", None)
    if migrate_db:
        migrate(env)
    return env


def run_pipeline(run_id: str, params: dict, *, force_selected: str | None = None,
                 as_of: dt.datetime | None = None) -> dict:
    """The whole run. ``force_selected`` (a config key prefix) makes that configuration the validation
    winner handed to test_eval, as if it had won: what a later stage does with a given winner.
    ``as_of`` is the run's date (a nightly-increments input is ingested up to it)."""
    ref = stages.RunRef(dag_id="music_recs_nightly", dag_run_id=run_id, run_key=run_id, as_of=as_of)
    stages.start(ref, params)
    splits = stages.split(ref, stages.dedup(ref, stages.validate(ref)))
    stages.popularity(ref, splits)
    stages.als_local(ref)
    for mapped in stages.engine_configs(ref):
        stages.engine_fit(ref, mapped["config"])
    best = stages.select(ref)
    if force_selected:
        from pipeline.results import leaderboard

        row = next(r for r in leaderboard(ref.layout.results, 100) if r["key"].startswith(force_selected))
        best = {k: row[k] for k in best}
    tested = stages.test_eval(ref, best)
    health = stages.health(ref, tested)
    indexed = stages.build_index(ref, tested)
    promotion = stages.promote(ref, indexed)
    return {"ref": ref, "record": ref.layout.read_record(), "indexed": indexed, "health": health,
            "promotion": promotion,
            "retention": stages.retain(ref)}


@contextlib.contextmanager
def isolated_home(home: Path, *, n_listens: int, seed: int) -> Iterator[Path]:
    """``home`` as $PIPELINE_HOME (its own embedded MLflow store) with a synthetic log in data/demo."""
    from pipeline import synth

    old = {k: os.environ.get(k) for k in ("PIPELINE_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["PIPELINE_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    synth.generate(home / "data" / "demo", n_listens=n_listens, seed=seed)
    try:
        yield home
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
