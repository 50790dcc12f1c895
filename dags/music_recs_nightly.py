"""
### music_recs_nightly

Nightly training of the music recommender on implicit feedback (listens).

`start` (the params checked as one run config) → `validate` (Great Expectations, bad rows
quarantined) → `dedup_and_map` (canonical tracks, exact duplicates dropped, persistent ID map) →
`split` (temporal, later test window) → `popularity_sweep`, `als_sweep` (Spark ALS, one mapped
`SparkSubmitOperator` per grid point, or per share of the grid with `als_applications`, submitted
to the connection `spark_default`; with
`halving_rate` ≥ 2 for a few iterations, then `halve_1` → `als_rung_1` → `halve_2` → `als_rung_2`
fit the best share for longer; without it those map over nothing and are skipped) and
`engine_sweep` (one mapped task per configuration of the other families in the `families` param:
item-kNN, BPR, logistic MF, LightFM, explicit-rating ALS, neural MF) → `select_best` (validation
MAP@K) → `test_eval` → `build_index` (every known user's exact list; the serving index, tuned
against exact search) and, beside it, `health` (tonight's listens, users, new users and tracks,
top listener, quarantine and cold shares and test MAP@K against the previous nights; with
`health_checks` fail a failed check stops the night before `promote`) → `promote` (MLflow Model
Registry `music-recs`, alias `champion`) → `retain` (a teardown: the newest `keep_runs` run folders
and registered versions stay, older ones and dead Spark spill go; versions with an alias keep their
bundles).

Scheduled at 03:00 UTC, or, with `MUSIC_RECS_SCHEDULE=asset` (or `cron_or_asset`) where the DAG
processor runs, whenever `music_recs_landing` lands a night (the asset `music_recs_landed_listens`);
`promote` updates the asset `music_recs_model`.

A failed task, and a health check that only flags, sends an alert to the webhook of the Airflow
connection `pipeline_alerts` when it is defined (`pipeline.alerts`).

A failing configuration of any sweep fails only itself: `select_best` chooses among the ones
that finished.

A date-partitioned `input_path` (`date=YYYY-MM-DD` folders) is ingested as nightly increments:
`validate` and `dedup_and_map` take the partitions up to the logical date that are not yet in the
curated table (each exactly once, in date order), and `split` trains on the curated history or
its last `train_window_days`.

Every task calls one function of `pipeline.stages`; this file only wires them. Each param is
defined once, in `pipeline.runconfig.RunConfig`. Trigger with other data from the UI
("Trigger" → params) or:
`airflow dags test music_recs_nightly -c '{"input_path": "/data/lb", "input_format": "listenbrainz"}'`.
"""

from __future__ import annotations

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, dag, task, teardown

from pipeline.alerts import WebhookNotifier
from pipeline.assets import MODEL, nightly_schedule
from pipeline.runconfig import RunConfig
from pipeline.spark import submit_conf
from pipeline.stages import ALS_TASKS, JOB_FILE


@dag(
    dag_id="music_recs_nightly",
    schedule=nightly_schedule(),  # MUSIC_RECS_SCHEDULE: cron (default), asset or cron_or_asset
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["music-recs"],
    default_args={"retries": 0, "on_failure_callback": WebhookNotifier()},
    params={name: Param(**spec) for name, spec in RunConfig.param_specs().items()},
)
def music_recs_nightly():
    @task
    def start(params=None, **context) -> dict:
        from pipeline import assets, stages

        # a run the landing asset started, without a conf of its own, trains on what landed
        params = assets.run_params(params, context["dag_run"].conf, context.get("triggering_asset_events"))
        return stages.start(stages.RunRef.from_airflow(context), params)

    @task
    def validate(_started: dict, **context) -> dict:
        from pipeline import stages

        return stages.validate(stages.RunRef.from_airflow(context))

    @task
    def dedup_and_map(validated: dict, **context) -> dict:
        from pipeline import stages

        return stages.dedup(stages.RunRef.from_airflow(context), validated)

    @task
    def split(ingested: dict, **context) -> dict:
        from pipeline import stages

        return stages.split(stages.RunRef.from_airflow(context), ingested)

    @task
    def popularity_sweep(splits: dict, **context) -> list:
        from pipeline import stages

        return stages.popularity(stages.RunRef.from_airflow(context), splits)

    @task
    def als_configs(splits: dict, **context) -> list:
        from airflow.sdk import BaseHook

        from pipeline import stages

        # fail here, clearly, when spark_default is missing or unreadable: the Spark provider would
        # otherwise fall back to master "yarn" for every mapped task
        BaseHook.get_connection("spark_default")
        return stages.als_submit_kwargs(stages.RunRef.from_airflow(context), splits)

    @teardown  # runs whatever became of the night; its own state never decides the run's
    def retain(**context) -> dict:
        from pipeline import stages

        return stages.retain(stages.RunRef.from_airflow(context))

    @task(trigger_rule="all_done_min_one_success")  # a failed configuration only stays behind
    def halve(rung: int, **context) -> list:
        from pipeline import stages

        return stages.als_submit_kwargs(stages.RunRef.from_airflow(context), rung=rung)

    def als_rung(task_id: str, configs):
        return SparkSubmitOperator.partial(
            task_id=task_id,
            conn_id="spark_default",
            application=str(JOB_FILE),
            conf=submit_conf(),
            deploy_mode="client",
            map_index_template="{{ task.name }}",
            retries=1,
        ).expand_kwargs(configs)

    @task
    def engine_configs(splits: dict, **context) -> list:
        from pipeline import stages

        return stages.engine_configs(stages.RunRef.from_airflow(context), splits)

    @task(map_index_template="{{ label }}")
    def engine_sweep(config: dict, label: str) -> dict:
        from airflow.sdk import get_current_context

        from pipeline import stages

        context = get_current_context()
        context["label"] = label  # the mapped task's readable index, e.g. "bpr factors=128 lr=0.01 ..."
        return stages.engine_fit(stages.RunRef.from_airflow(context), config, map_index=context["ti"].map_index)

    @task(trigger_rule="all_done")  # a failed configuration only drops out of the leaderboard
    def select_best(**context) -> dict:
        from pipeline import stages

        return stages.select(stages.RunRef.from_airflow(context))

    @task
    def test_eval(best: dict, **context) -> dict:
        from pipeline import stages

        return stages.test_eval(stages.RunRef.from_airflow(context), best)

    @task
    def health(tested: dict, **context) -> dict:
        from pipeline import stages

        return stages.health(stages.RunRef.from_airflow(context), tested)

    @task
    def build_index(tested: dict, **context) -> dict:
        from pipeline import stages

        return stages.build_index(stages.RunRef.from_airflow(context), tested)

    @task(outlets=[MODEL])
    def promote(indexed: dict, **context) -> dict:
        from pipeline import stages

        decision = stages.promote(stages.RunRef.from_airflow(context), indexed)
        context["outlet_events"][MODEL].extra = {k: decision.get(k) for k in ("version", "alias", "reason")}
        return decision

    splits = split(dedup_and_map(validate(start())))
    baselines = popularity_sweep(splits)
    als = [als_rung("als_sweep", als_configs(splits))]
    for rung, task_id in enumerate(ALS_TASKS[1:], start=1):  # successive halving's later rungs (halving_rate)
        survivors = halve.override(task_id=f"halve_{rung}")(rung)
        als[-1] >> survivors
        als.append(als_rung(task_id, survivors))
    engines = engine_sweep.expand_kwargs(engine_configs(splits))
    best = select_best()
    [baselines, *als, engines] >> best
    tested = test_eval(best)
    promoted = promote(build_index(tested))
    health(tested) >> promoted  # a night that fails its checks is not promoted
    promoted >> retain()


music_recs_nightly()
