"""
### music_recs_nightly

Nightly training of the music recommender on implicit feedback (listens).

`validate` (Great Expectations, bad rows quarantined) → `dedup_and_map` (canonical tracks,
exact duplicates dropped, persistent ID map) → `split` (temporal, later test window) →
`popularity_sweep` and `als_sweep` (Spark ALS, one mapped `SparkSubmitOperator` per grid
point, submitted to the connection `spark_default`) → `select_best` (validation MAP@K) →
`test_eval` → `build_index` (annoy and HNSW, tuned against exact search) → `promote`
(MLflow Model Registry `music-recs`, alias `champion`).

A date-partitioned `input_path` (`date=YYYY-MM-DD` folders) is ingested as nightly increments:
`validate` and `dedup_and_map` take the partitions up to the logical date that are not yet in the
curated table (each exactly once, in date order), and `split` trains on the curated history or
its last `train_window_days`.

Every task calls one function of `pipeline.stages`; this file only wires them. Trigger
with other data from the UI ("Trigger" → params) or:
`airflow dags test music_recs_nightly -c '{"input_path": "/data/lb", "input_format": "listenbrainz"}'`.
"""

from __future__ import annotations

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, dag, task

from pipeline.config import INPUT_FORMATS, SPLIT_STRATEGIES
from pipeline.stages import DEFAULT_PARAMS as D
from pipeline.stages import JOB_FILE, spark_conf


def _numbers(default: list, kind: str, description: str) -> Param:
    return Param(default, type="array", items={"type": kind}, minItems=1, description=description)


@dag(
    dag_id="music_recs_nightly",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["music-recs"],
    default_args={"retries": 0},
    params={
        "input_path": Param(D["input_path"], type="string", minLength=1,
                            description="Raw listens: a file or folder (relative paths are under $PIPELINE_HOME). "
                                        "A folder of date=YYYY-MM-DD sub-folders is ingested as nightly increments: "
                                        "the partitions up to the logical date not yet in the curated table."),
        "input_format": Param(D["input_format"], type="string", enum=list(INPUT_FORMATS),
                              description="Which loader reads input_path."),
        "k": Param(D["k"], type="integer", minimum=1, maximum=1000, description="K of P/MAP/NDCG@K."),
        "exclude_seen": Param(D["exclude_seen"], type="boolean",
                              description="Drop tracks seen in train from the rankings (right for one-row-per-pair data)."),
        "split_strategy": Param(D["split_strategy"], type="string", enum=list(SPLIT_STRATEGIES),
                                description="How validation is split from train."),
        "split_fraction": Param(D["split_fraction"], type="number", exclusiveMinimum=0, maximum=1,
                                description="Train share per user (temporal_user, random_user)."),
        "test_quantile": Param(D["test_quantile"], type="number", exclusiveMinimum=0, maximum=1,
                               description="Listens at or after this quantile of time are the test window."),
        "ranks": _numbers(D["ranks"], "integer", "ALS grid: rank."),
        "reg_params": _numbers(D["reg_params"], "number", "ALS grid: regParam."),
        "alphas": _numbers(D["alphas"], "number", "ALS grid: alpha (confidence = 1 + alpha * plays)."),
        "max_iters": _numbers(D["max_iters"], "integer", "ALS grid: maxIter."),
        "confidence": Param(D["confidence"], type="string", enum=["linear", "log"],
                            description="Play counts as ALS ratings: linear or log1p."),
        "engine": Param(D["engine"], type="string", enum=["spark", "implicit"],
                        description="ALS engine: Spark (submitted to spark_default) or implicit (single machine)."),
        "betas": _numbers(D["betas"], "number", "Damping values for the plays-per-listener baseline."),
        "max_quarantine_share": Param(D["max_quarantine_share"], type="number", minimum=0, maximum=1,
                                      description="The run fails when more rows than this share are quarantined."),
        "train_window_days": Param(D["train_window_days"], type=["integer", "null"], minimum=0,
                                   description="Date-partitioned input only: train on the listens of the last N days "
                                               "ending with the logical date (0 or empty: the full curated history)."),
        "recall_target": Param(D["recall_target"], type="number", exclusiveMinimum=0, maximum=1,
                               description="Recall@K the served index must reach against exact search."),
        "index_kinds": Param(D["index_kinds"], type="array", minItems=0,
                             items={"type": "string", "enum": ["annoy_dot", "annoy_angular_aug", "hnsw_ip"]},
                             description="Indexes build_index builds and measures beside exact search (always measured)."),
        "annoy_trees": _numbers(D["annoy_trees"], "integer", "annoy: n_trees to build (search_k: 1, 10 and 50 x n_trees x K)."),
        "hnsw_M": _numbers(D["hnsw_M"], "integer", "HNSW: M (graph degree) to build."),
        "hnsw_ef_construction": Param(D["hnsw_ef_construction"], type="integer", minimum=1,
                                      description="HNSW: ef_construction (build effort; build time grows with it)."),
    },
)
def music_recs_nightly():
    @task
    def start(params=None, dag=None, run_id=None, logical_date=None, dag_run=None) -> dict:
        from pipeline import stages

        # outputs and MLflow runs are keyed by the logical date, so re-running a date reuses them
        key = logical_date.isoformat() if logical_date else run_id
        # a date-partitioned input is ingested up to the logical date (the trigger time without one)
        as_of = logical_date or getattr(dag_run, "run_after", None)
        return stages.start(params, dag_id=dag.dag_id, dag_run_id=run_id, run_key=key, as_of=as_of)

    @task
    def validate(ctx: dict, params=None, dag_run=None) -> dict:
        from pipeline import stages

        return stages.validate(ctx, params, as_of=getattr(dag_run, "run_after", None))

    @task
    def dedup_and_map(ctx: dict, validated: dict) -> dict:
        from pipeline import stages

        return stages.dedup(ctx, validated)

    @task
    def split(ctx: dict, ingested: dict, params=None) -> dict:
        from pipeline import stages

        return stages.split(ctx, ingested, params)

    @task
    def popularity_sweep(ctx: dict, _split: dict, params=None) -> list:
        from pipeline import stages

        return stages.popularity(ctx, params)

    @task
    def als_configs(ctx: dict, _split: dict, params=None) -> list:
        from airflow.sdk import BaseHook

        from pipeline import stages

        # fail here, clearly, when spark_default is missing or unreadable: the Spark provider would
        # otherwise fall back to master "yarn" for every mapped task
        BaseHook.get_connection("spark_default")
        return stages.als_submit_kwargs(ctx, params)

    @task(trigger_rule="all_done")
    def select_best(ctx: dict, params=None) -> dict:
        from pipeline import stages

        return stages.select(ctx, params)

    @task
    def test_eval(ctx: dict, best: dict, params=None) -> dict:
        from pipeline import stages

        return stages.test_eval(ctx, best, params)

    @task
    def build_index(ctx: dict, best: dict, _test: dict, params=None) -> dict:
        from pipeline import stages

        return stages.build_index(ctx, best, params)

    @task
    def promote(ctx: dict, best: dict, test: dict, index: dict, params=None) -> dict:
        from pipeline import stages

        return stages.promote(ctx, best, test, index, params)

    ctx = start()
    validated = validate(ctx)
    ingested = dedup_and_map(ctx, validated)
    splits = split(ctx, ingested)
    baselines = popularity_sweep(ctx, splits)
    configs = als_configs(ctx, splits)
    baselines >> configs  # the baselines are logged first, so every ALS child can be read against them
    als = SparkSubmitOperator.partial(
        task_id="als_sweep",
        conn_id="spark_default",
        application=str(JOB_FILE),
        conf=spark_conf(),
        deploy_mode="client",
        map_index_template="{{ task.name }}",
        retries=1,
    ).expand_kwargs(configs)
    best = select_best(ctx)
    [baselines, als] >> best
    test = test_eval(ctx, best)
    index = build_index(ctx, best, test)
    promote(ctx, best, test, index)


music_recs_nightly()
