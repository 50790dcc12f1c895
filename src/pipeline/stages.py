"""The DAG's task bodies: one function per task, each a few calls into the modules that do the work.

A task knows its run by a :class:`RunRef` (the DAG run's ids, taken from the Airflow context,
not handed down by another task). ``start`` validates the params into a :class:`RunConfig`,
creates the MLflow parent run and writes the run's record; every later stage reads the
config and the record back from the run folder, whose every path :class:`RunLayout` names.
Between tasks travel only small summaries of what the upstream stage wrote, so the Airflow
graph draws the data's way: validate → dedup → split → sweeps → select → test → index → promote.

Every output lands under ``<home>/runs/<run key>/``, keyed by the logical date, so a retried
task or a re-run of the same date rewrites the same places (atomically) and finds its MLflow
runs again by their tags.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, wraps
from pathlib import Path
from typing import Any, Callable, TypeVar

from pipeline import progress, tracking
from pipeline.data import SplitData
from pipeline.paths import IngestLayout, RunLayout, atomic_write_text, fingerprint, naming_a_full_disk, pipeline_home
from pipeline.runconfig import RunConfig

__all__ = [
    "JOB_FILE", "ALS_TASKS", "RunRef", "Run", "start", "validate", "dedup", "split", "popularity",
    "als_submit_kwargs", "als_local",
    "engine_configs", "engine_fit",
    "select", "test_eval", "health", "build_index", "promote", "retain", "land", "resolve_input", "input_fingerprint",
]

log = logging.getLogger(__name__)
_Stage = TypeVar("_Stage", bound=Callable[..., Any])


def _stage(fn: _Stage) -> _Stage:
    """A DAG task's stage: a full disk fails it with one line naming the disk and the fix (``DiskFull``).

    Whatever it freed goes back to the system when it returns: where tasks share one process
    (``airflow dags test``, a long-lived worker), the next task does not start beside the heap
    this one grew.
    """

    @wraps(fn)
    def stage(ref: RunRef, *args: Any, **kwargs: Any) -> Any:
        try:
            with naming_a_full_disk(f"task {fn.__name__}", ref.layout.root):
                return fn(ref, *args, **kwargs)
        finally:
            release_memory()

    return stage  # type: ignore[return-value]


def release_memory() -> None:
    """Hand freed memory back to the system: Python's garbage, Arrow's pool, glibc's heap.

    Without it a process keeps near the peak of its last stage: at 179M listens the Airflow process
    of ``airflow dags test`` held 1.9 GB through the ALS sweep after the popularity sweep. At 10M the
    popularity sweep's process goes from 388 MB after it to 159 MB with this (333 with ``gc`` alone).
    """
    import gc
    import sys

    gc.collect()
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc: nothing to trim
        pass


JOB_FILE = Path(__file__).resolve().parent / "jobs" / "als_job.py"


@dataclass(frozen=True)
class RunRef:
    """Which run a task belongs to. ``run_key`` (the logical date) names its folder and MLflow runs."""

    dag_id: str
    dag_run_id: str
    run_key: str
    as_of: dt.datetime | None = None  # the run's date: nightly partitions are ingested up to it
    run_after: dt.datetime | None = None  # when it was triggered: validation's "in the future" bound

    @classmethod
    def from_airflow(cls, context: Mapping[str, Any]) -> RunRef:
        """From a task's Airflow context (``logical_date``, ``run_id``, ``dag``, ``dag_run``)."""
        logical = context.get("logical_date")
        run_after = getattr(context.get("dag_run"), "run_after", None)
        return cls(dag_id=context["dag"].dag_id, dag_run_id=context["run_id"],
                   run_key=logical.isoformat() if logical else context["run_id"],
                   as_of=logical or run_after, run_after=run_after)

    @property
    def layout(self) -> RunLayout:
        return RunLayout.for_run(self.run_key)


@dataclass(frozen=True)
class Run:
    """A started run, read back from its record: the config, the layout, the MLflow parent run."""

    ref: RunRef
    cfg: RunConfig
    layout: RunLayout
    record: Mapping[str, Any]

    @classmethod
    def open(cls, ref: RunRef) -> Run:
        """The run as started; an ``exclude_seen`` left empty reads as what ``split`` decided once it has."""
        record = ref.layout.read_record()
        cfg = RunConfig.from_params(record["config"])
        stats = SplitData(ref.layout.split).stats_path
        if cfg.exclude_seen is None and stats.exists():
            decided = json.loads(stats.read_text()).get("exclude_seen")
            if decided:
                cfg = replace(cfg, exclude_seen=decided["value"])
        return cls(ref, cfg, ref.layout, record)

    @property
    def parent(self) -> str:
        return self.record["parent_run_id"]

    @property
    def increments(self) -> Mapping[str, Any] | None:
        return self.record.get("increments")

    @property
    def idmap_root(self) -> Path:
        return Path(self.record["idmap_root"])

    @cached_property
    def split_data(self) -> SplitData:
        return SplitData(self.layout.split)


def _spark():
    from pipeline.spark import get_session

    return get_session("music-recs")


# ---------------------------------------------------------------- start


def data_roots() -> list[Path]:
    """Folders a DAG param may point into: ``$PIPELINE_DATA_ROOTS`` (``:``-separated) or ``<home>/data``."""
    raw = os.environ.get("PIPELINE_DATA_ROOTS")
    roots = [Path(r) for r in raw.split(os.pathsep) if r] if raw else [pipeline_home() / "data"]
    return [r.expanduser().resolve() for r in roots]


def resolve_input(path: str) -> Path:
    """An input path (absolute, or relative to the pipeline home), which must lie under a data root.

    A param typed into the UI is untrusted: ``../../etc`` or a path outside the configured
    roots is refused with the roots it may use.
    """
    p = Path(path).expanduser()
    p = (p if p.is_absolute() else pipeline_home() / p).resolve()
    roots = data_roots()
    if not any(p == r or r in p.parents for r in roots):
        raise ValueError(f"input_path {p} is outside the data roots {[str(r) for r in roots]}; move the data under "
                         "one of them or add its folder to PIPELINE_DATA_ROOTS (separated by ':')")
    return p


def input_fingerprint(path: Path) -> str:
    """A short hash of the input's files (relative names, sizes, modification times)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    base = path.parent if path.is_file() else path
    return fingerprint((f.relative_to(base), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


@_stage
def start(ref: RunRef, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check the params (:class:`RunConfig`), find the input, open the MLflow parent run, write the record.

    Any invalid param fails here, before any Spark job, with a message that names it.
    """
    cfg = RunConfig.from_params(params)
    _check_extras(cfg)
    src = resolve_input(cfg.input_path)
    if not src.exists():
        raise FileNotFoundError(f"input_path {src} does not exist; point the 'input_path' param at your listens")
    increments = _increments(src, ref.as_of)
    if cfg.train_window_days and not increments:
        raise ValueError(f"train_window_days={cfg.train_window_days} applies to a date-partitioned input "
                         f"(date=YYYY-MM-DD folders), but {src} is a snapshot; set it to 0 or partition the input "
                         "(`pipeline partition`)")
    fp = input_fingerprint(src)
    parent = tracking.parent_run(
        dag_id=ref.dag_id, dag_run_id=ref.dag_run_id, run_key=ref.run_key,
        tags={"pipeline.input_fingerprint": fp, "pipeline.input_path": str(src), "pipeline.protocol": cfg.protocol},
        params={k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in cfg.to_params().items()},
    )
    if increments:
        tracking.client().set_tag(parent, "pipeline.increments",
                                  f"up to {increments['up_to']}, curated {increments['curated']}")
    record = {"parent_run_id": parent, "dag_id": ref.dag_id, "dag_run_id": ref.dag_run_id, "run_key": ref.run_key,
              "run_dir": str(ref.layout.root), "input_path": str(src), "fingerprint": fp,
              "idmap_root": str(pipeline_home() / "state" / "idmap"), "config": cfg.to_params()}
    if increments:
        record["increments"] = increments
    ref.layout.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ref.layout.record, json.dumps(record, indent=1))
    engines = cfg.engine_configs()
    progress.note(f"{len(cfg.als_configs())} ALS and {len(cfg.popularity_configs())} popularity configurations"
                  + (f", {len(engines)} of {', '.join(f for f in cfg.families if f not in ('popularity', 'als'))}"
                     if engines else ""))
    return {"run_dir": record["run_dir"], "input_path": str(src), "parent_run_id": parent}


def _check_extras(cfg: RunConfig) -> None:
    """A family whose library is an optional extra fails the run at once when it is not installed."""
    import importlib.util

    if "neural_mf" in cfg.families and importlib.util.find_spec("torch") is None:
        raise ValueError("param families includes 'neural_mf', which needs torch, an optional extra: "
                         "pip install torch==2.13.0, or leave neural_mf out of families")


def _increments(src: Path, as_of: dt.datetime | None) -> dict[str, str] | None:
    """For a date-partitioned input: the curated table and the run's date (None for a snapshot)."""
    from pipeline import increments

    if not increments.is_partitioned(src):
        return None
    day = (as_of or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).date()
    curated = increments.default_curated_dir(src)
    log.info("input %s is partitioned (date=YYYY-MM-DD folders or ListenBrainz dumps): nightly increments up to %s into %s",
             src, day, curated)
    return {"curated": str(curated), "up_to": day.isoformat()}


# ---------------------------------------------------------------- ingest


@_stage
def validate(ref: RunRef) -> dict[str, Any]:
    """Load + Great Expectations; quarantine bad rows; fail the run on a bad batch."""
    from pipeline import ingest, increments

    run = Run.open(ref)
    cfg = run.cfg.ingest(run.record["input_path"])
    lay = run.layout
    if run.increments:
        try:
            v = increments.validate_pending(cfg, Path(run.increments["curated"]), lay.partitions,
                                            up_to=dt.date.fromisoformat(run.increments["up_to"]), spark=_spark())
        finally:
            for part in sorted(lay.partitions.glob("date=*")) if lay.partitions.exists() else []:
                staged = IngestLayout(part)
                tracking.log_files(run.parent, [staged.validate_summary, staged.validation_report],
                                   f"validation/{part.name}")
        atomic_write_text(lay.ingest.validate_summary, json.dumps(v, indent=1))
        tracking.log_metrics(run.parent, {"rows_in": v["rows_in"], "quarantined": v["quarantined"],
                                          "partitions_pending": len(v["pending"])})
        progress.note(f"{len(v['pending'])} partitions pending, {v['rows_in']:,} rows, {v['quarantined']:,} quarantined")
        return v
    try:
        summary = ingest.validate_stage(cfg, lay.ingest.root, spark=_spark(), as_of=ref.run_after)
    finally:
        tracking.log_files(run.parent, [lay.ingest.validate_summary, lay.ingest.validation_report], "validation")
        tracking.log_files(run.parent, [lay.ingest.data_docs], "validation/data_docs")
        if lay.ingest.validate_summary.exists():
            s = json.loads(lay.ingest.validate_summary.read_text())
            tracking.log_metrics(run.parent, {"rows_in": s["rows_in"], "quarantined": s["quarantined"]})
    progress.note(f"{summary['rows_out']:,} rows kept, {summary['quarantined']:,} quarantined")
    return summary


@_stage
def dedup(ref: RunRef, validated: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical tracks, duplicates dropped, ID map extended (each pending partition committed once)."""
    from pipeline import increments, ingest

    run = Run.open(ref)
    lay = run.layout
    if validated.get("increments"):
        spark = _spark()
        summary = increments.commit_pending(validated, idmap_root=run.idmap_root, spark=spark,
                                            ingested_by=ref.dag_run_id)
        increments.write_tracks(spark, Path(summary["curated"]), summary["partitions"], lay.ingest.tracks)
        atomic_write_text(lay.ingest.summary, json.dumps(summary, indent=1))
        tracking.log_metrics(run.parent, {"partitions_ingested": len(summary["ingested"]),
                                          "history_rows": summary["history_rows"]})
        tracking.set_tags(run.parent, {"pipeline.partitions": (
            f"{summary['partitions'][0]} .. {summary['partitions'][-1]} ({len(summary['partitions'])}; "
            f"ingested now: {', '.join(summary['ingested']) or 'none'})")})
    else:
        d = ingest.dedup_stage(lay.ingest.validated, lay.ingest.root, idmap_root=run.idmap_root,
                               has_timestamps=validated["has_timestamps"], spark=_spark())
        summary = ingest.write_summary(lay.ingest.root, validated, d)
    tracking.log_metrics(run.parent, {k: summary[k] for k in ("rows_out", "duplicates", "tracks_merged_by_name")})
    tracking.set_tags(run.parent, {"pipeline.idmap_version": summary["idmap_version"]})
    tracking.log_files(run.parent, [lay.ingest.summary], "ingest")
    progress.note(f"{summary['rows_out']:,} listens, {summary['duplicates']:,} duplicates dropped")
    return {k: v for k, v in summary.items() if k not in ("raw_files", "validated")}


@_stage
def split(ref: RunRef, ingested: Mapping[str, Any]) -> dict[str, Any]:
    """The temporal split with a later test window; the stats table goes to MLflow."""
    from pipeline import split as split_mod

    run = Run.open(ref)
    lay = run.layout
    listens: Any = lay.ingest.listens
    if ingested.get("increments"):
        listens = _window(ingested, run.cfg.train_window_days or 0)
    extra = {}
    if RunConfig.from_params(run.record["config"]).exclude_seen is None:  # decided here (a re-run decides again)
        value, why = split_mod.seen_protocol(has_timestamps=ingested["has_timestamps"], fmt=ingested.get("format"))
        extra["exclude_seen"] = {"value": value, "why": why}
        log.info("exclude_seen left empty: %s, as %s", str(value).lower(), why)
        progress.note(f"exclude_seen {str(value).lower()}: {why}")
        tracking.set_tags(run.parent, {"pipeline.protocol": "exclude_seen" if value else "keep_seen",
                                       "pipeline.protocol_why": why})
    stats = split_mod.split(listens, lay.split, run.cfg.split(), has_timestamps=ingested["has_timestamps"],
                            spark=_spark(), shape=(ingested["n_users_mapped"], ingested["n_tracks_mapped"]),
                            idmap_version=ingested["idmap_version"], extra=extra)
    atomic_write_text(lay.split_table, split_mod.format_table(stats) + "\n")
    tracking.log_files(run.parent, [lay.split_table, run.split_data.stats_path], "split")
    for name, row in stats["table"].items():
        tracking.log_metrics(run.parent, row, prefix=f"{name}_")
    progress.note(", ".join(f"{name} {row['interactions']:,}" for name, row in stats["table"].items()))
    return {"split_dir": str(lay.split), "table": stats["table"]}


def _window(ingested: Mapping[str, Any], window: int) -> Any:
    """The curated listens a nightly run trains on: the full history or its last ``window`` days."""
    from pipeline import increments

    up_to = dt.date.fromisoformat(ingested["up_to"])
    listens = increments.training_listens(_spark(), Path(ingested["curated"]), ingested["partitions"],
                                          up_to=up_to, window_days=window)
    start_day = increments.window_start(up_to, window)
    log.info("training on %s of the curated listens (%d partitions up to %s)",
             f"the {window} days from {start_day}" if window else "the full history", len(ingested["partitions"]),
             up_to)
    if window and not listens.limit(1).count():
        raise ValueError(f"no curated listen has a timestamp in the {window} days from {start_day}; "
                         "widen train_window_days or set it to 0")
    return listens


# ---------------------------------------------------------------- the sweeps


@_stage
def popularity(ref: RunRef, _split: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every popularity variant (plays_per_listener at every beta); a failing one never stops the others."""
    from pipeline.models.popularity import track_stats_spark
    from pipeline.spark import jobs, release_session
    from pipeline.sweep import popularity_sweep

    run = Run.open(ref)
    with jobs(spark := _spark(), "popularity: plays and listeners per track"):
        stats = track_stats_spark(spark, run.split_data.train_path, run.split_data.shape[1])
    release_session()  # the last stage that needs Spark in this process; ALS runs in its own application
    results = popularity_sweep(run.split_data, run.layout.popularity, run.cfg.popularity_configs(), run.cfg.eval(),
                               parent_run_id=run.parent, stats=stats, tags={"airflow.task_id": "popularity_sweep"})
    best = max(results, key=lambda r: r["metrics"][f"val_map_at_{run.cfg.k}"])
    progress.note(f"{len(results)} configurations, best {best['label']} val MAP@{run.cfg.k} "
              f"{best['metrics'][f'val_map_at_{run.cfg.k}']:.4f}")
    return [{k: r[k] for k in ("key", "label", "status", "metrics")} for r in results]


def _als_args(run: Run, params: Mapping[str, Any] | list[Mapping[str, Any]],
              tags: Mapping[str, str] | None = None) -> list[str]:
    config = [dict(p) for p in params] if isinstance(params, list) else dict(params)
    args = ["--split", str(run.layout.split), "--out", str(run.layout.sweep), "--config", json.dumps(config),
            "--k", str(run.cfg.k), "--parent-run-id", run.parent]
    if tags:
        args += ["--tags", json.dumps(dict(tags))]
    return args + (["--exclude-seen"] if run.cfg.exclude_seen else [])


ALS_TASKS = ("als_sweep", "als_rung_1", "als_rung_2")  # the mapped Spark task of each halving rung


def als_submit_kwargs(ref: RunRef, _split: Mapping[str, Any] | None = None, *, rung: int = 0) -> list[dict[str, Any]]:
    """One ``SparkSubmitOperator`` kwargs dict per Spark application of ``rung`` (``name``: the readable map index).

    Rung 0 is the whole grid (for the plan's first iterations with successive halving); a later
    rung is the best share of the rung before it, which is decided here (:func:`_continuing`).
    Each application fits one configuration, or with ``als_applications`` a share of the rung's
    (:func:`shares`).
    """
    from pipeline.jobs.als_job import share_name

    run = Run.open(ref)
    configs = _continuing(run, rung) if rung and run.cfg.als_rung(rung) else run.cfg.als_rung(rung)
    out = []
    for i, share in enumerate(shares(configs, run.cfg.als_applications)):
        given = [c.params() for c in share]
        out.append({"application_args": _als_args(run, given[0] if len(share) == 1 else given,
                                                  {"airflow.task_id": ALS_TASKS[rung], "airflow.map_index": str(i),
                                                   "pipeline.halving.rung": str(rung)}),
                    "name": share_name([c.label for c in share])})
    p = run.cfg.als_plan()
    if rung == 0:
        progress.note(f"{len(configs)} ALS configurations to submit"
                      + (f" in {len(out)} Spark applications" if len(out) < len(configs) else "")
                      + (f"; {p}" if p.rate > 1 else ""))
    elif rung >= len(p.iterations) and "als" in run.cfg.families:
        progress.note("no later rung: every configuration ran its max_iters in als_sweep" if p.rate == 1
                      else f"no rung {rung}: the plan ends at {p.iterations[-1]} iterations")
    return out


def shares(configs: Sequence[Any], applications: int) -> list[list[Any]]:
    """``configs`` in order, shared among at most ``applications`` applications (0: one each) as evenly as can be."""
    n = len(configs)
    parts = n if applications <= 0 else min(n, applications)
    bounds = [n * i // parts for i in range(parts + 1)] if parts else [0]
    return [list(configs[a:b]) for a, b in zip(bounds, bounds[1:])]


def _continuing(run: Run, rung: int) -> list[Any]:
    """The configurations ``rung`` fits: those whose fit in the rung before it is among the best share.

    Every configuration fitted in the rung before is tagged in MLflow: continued, or stopped at
    the iterations it reached. One that failed (or never wrote its result) does not continue.
    """
    plan = run.cfg.als_plan()
    results, kept = _survivors(run, rung)
    for r in results:
        if r.get("mlflow_run_id"):
            tracking.set_tags(r["mlflow_run_id"], {"pipeline.halving": (
                f"continued to {plan.iterations[rung]} iterations" if r["key"] in kept
                else f"stopped at {plan.iterations[rung - 1]} iterations (rung {rung - 1})")})
    finished = sum(r.get("status") == "ok" for r in results)
    progress.note(f"rung {rung}: {len(kept)} of {finished} finished configurations go on to {plan.iterations[rung]} "
                  f"iterations" + (f" ({len(results) - finished} failed)" if finished < len(results) else ""))
    return _kept(run, rung, kept)


def _fitted_in(run: Run, rung: int) -> list[Any]:
    """The configurations ``rung`` fits: the whole grid in rung 0, then the best share of the rung before."""
    if rung == 0 or not run.cfg.als_rung(rung):
        return run.cfg.als_rung(rung)
    return _kept(run, rung, _survivors(run, rung)[1])


def _kept(run: Run, rung: int, kept: set[str]) -> list[Any]:
    """Rung ``rung``'s configurations whose fit in the rung before has its key in ``kept``."""
    return [c for c, before in zip(run.cfg.als_rung(rung), run.cfg.als_rung(rung - 1)) if before.key in kept]


def _survivors(run: Run, rung: int) -> tuple[list[dict[str, Any]], set[str]]:
    """The results of the configurations fitted in the rung before ``rung``, and the keys of those that go on."""
    from pipeline.halving import survivors
    from pipeline.results import SELECT_METRIC

    results = _results(run, _fitted_in(run, rung - 1))
    n = run.cfg.als_plan().configs[rung]
    return results, {r["key"] for r in survivors(results, n, SELECT_METRIC.format(k=run.cfg.k))}


def _results(run: Run, configs: list[Any]) -> list[dict[str, Any]]:
    """Each configuration's ``result.json`` in the sweep folder (``status`` "missing" where it wrote none)."""
    out = []
    for c in configs:
        f = run.layout.sweep / c.key / "result.json"
        out.append(json.loads(f.read_text()) if f.exists() else {"key": c.key, "status": "missing"})
    return out


def als_local(ref: RunRef) -> list[dict[str, Any]]:
    """Every rung of the ALS sweep in this process (the tests' path; the DAG submits the same job per application)."""
    from pipeline.jobs import als_job

    run = Run.open(ref)
    out: list[dict[str, Any]] = []
    for rung in range(len(run.cfg.als_plan().iterations)):
        for submit in als_submit_kwargs(ref, rung=rung):
            result = als_job.main(submit["application_args"])
            out += result if isinstance(result, list) else [result]
    return out


def engine_configs(ref: RunRef, _split: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One mapped ``engine_sweep`` task per configuration of the other families (``label`` is its map index)."""
    run = Run.open(ref)
    out = [{"config": {"family": c.family, **{k: v for k, v in c.params().items() if k not in ("model", "objective")}},
            "label": c.label} for c in run.cfg.engine_configs()]
    if out:
        progress.note(f"{len(out)} engine configurations to fit")
    return out


@_stage
def engine_fit(ref: RunRef, config: Mapping[str, Any], *, map_index: int | None = None) -> dict[str, Any]:
    """Fit and score one configuration of an engine family (``pipeline.models.engines``) on the driver.

    Families that run on Spark (explicit-rating ALS) use this task's local Spark session.
    """
    from pipeline.models import engines
    from pipeline.models.configs import CONFIGS
    from pipeline.sweep import run_config

    run = Run.open(ref)
    values = dict(config)
    cfg = CONFIGS[values.pop("family")](**values)
    spark = _spark() if cfg.family in engines.SPARK_FAMILIES else None
    tags = {"airflow.task_id": "engine_sweep", **({"airflow.map_index": str(map_index)} if map_index is not None
                                                   else {})}
    threads = max(1, os.cpu_count() or 1) if cfg.family == "item_knn" else 1  # SGD: 1 thread is reproducible
    data = run.split_data
    extra = None
    if cfg.objective == "rating":  # its own objective beside the ranking metrics: held-out RMSE and MAE
        from pipeline.models.als_explicit import rating_metrics

        extra = lambda model: rating_metrics(model, data.train, data.truth("val"), cfg)  # noqa: E731
    result = run_config(key=cfg.key, label=cfg.label, params=cfg.params(), out_dir=run.layout.sweep, data=data,
                        eval_cfg=run.cfg.eval(), parent_run_id=run.parent, tags=tags, extra_metrics=extra,
                        fit=lambda: engines.fit(data.train, cfg, spark=spark, threads=threads))
    progress.note(f"{cfg.label}: val MAP@{run.cfg.k} {result['metrics'][f'val_map_at_{run.cfg.k}']:.4f} "
                  f"(fit {result['fit_seconds']:.0f} s)")
    return {k: result[k] for k in ("key", "label", "status", "metrics")}


# ---------------------------------------------------------------- select, test, index, promote


@_stage
def select(ref: RunRef) -> dict[str, Any]:
    """Leaderboard of every configuration by validation MAP@K; the winner is tagged in MLflow.

    Runs once both sweeps are done, whatever became of them: a failed configuration only
    drops out. When no configuration ran because an upstream task failed, it says which.
    """
    from pipeline import report
    from pipeline.results import few_users, grid_axes, grid_edges, leaderboard, paired_comparisons, select_best

    lay = ref.layout
    _check_upstream(lay)
    run = Run.open(ref)
    k = run.cfg.k
    board = leaderboard(lay.results, k)
    best = select_best(board, k)
    best["paired"] = paired_comparisons(board, k, seed=run.cfg.seed, resamples=run.cfg.bootstrap_resamples)
    notes = [f"{best['label']} vs {role.replace('_', ' ')} {c['label']}: validation MAP@{k} difference "
             f"{c[f'diff_map_at_{k}']:+.5f} [{c['ci_low']:+.5f}, {c['ci_high']:+.5f}], "
             f"{'beyond' if c['beyond_noise'] else 'within'} noise" for role, c in best["paired"].items()]
    halving = run.cfg.als_plan() if "als" in run.cfg.families else None
    if halving and halving.rate > 1:
        notes.append(f"The ALS sweep ran by {halving}; a configuration stopped early is listed at the iterations "
                     "it reached.")
    edges = grid_edges(board, grid_axes(run.cfg), [best["params"].get("model"), "als"])
    for edge in edges:
        log.warning("grid edge: %s", edge)
    notes += [f"Grid edge: {edge}." for edge in edges]
    if edges:
        tracking.set_tags(run.parent, {"pipeline.warning.grid_edge": "; ".join(edges)})
    warning = few_users(int(best["metrics"]["val_n_users"]), int(best["metrics"]["val_n_cold_users"]), "validation",
                        run.cfg.min_eval_users)
    if warning:
        log.warning("%s", warning)
        notes.append(f"Warning: {warning}.")
        tracking.set_tags(run.parent, {"pipeline.warning.validation_users": warning})
    lay.select.mkdir(parents=True, exist_ok=True)
    atomic_write_text(lay.leaderboard, json.dumps(board, indent=1, default=str))
    atomic_write_text(lay.leaderboard_table, report.leaderboard_markdown(board, k, notes) + "\n")
    plots = report.sweep_plots(board, k, lay.select)
    tracking.log_files(run.parent, [lay.leaderboard_table, lay.leaderboard, *plots], "leaderboard")
    if best.get("mlflow_run_id"):
        tracking.set_tags(best["mlflow_run_id"], {"pipeline.winner": "true"})
    tracking.set_tags(run.parent, {"pipeline.best_config": best["key"]})
    tracking.log_metrics(run.parent, {f"best_{m}": v for m, v in best["metrics"].items()})
    for role, c in best["paired"].items():
        tracking.log_metrics(run.parent, {f"val_map_at_{k}_diff_{role}": c[f"diff_map_at_{k}"],
                                          f"val_map_at_{k}_diff_{role}_ci_low": c["ci_low"],
                                          f"val_map_at_{k}_diff_{role}_ci_high": c["ci_high"]})
    failed = sum(r["status"] != "ok" for r in board)
    progress.note(f"best of {len(board)} ({failed} failed): {best['label']} val MAP@{k} "
              f"{best['metrics'][f'val_map_at_{k}']:.4f}")
    return {k_: best[k_] for k_ in ("key", "label", "params", "metrics", "model_dir", "mlflow_run_id")}


def _check_upstream(lay: RunLayout) -> None:
    """Raise naming the first upstream task whose output is missing (the sweeps never ran)."""
    checks = [("start", lay.record), ("validate", lay.ingest.validate_summary), ("dedup_and_map", lay.ingest.summary),
              ("split", SplitData(lay.split).stats_path)]
    for task, output in checks:
        failed = not output.exists()
        if task == "validate" and not failed:
            s = json.loads(output.read_text())
            failed = s.get("success") is False
        if failed:
            raise RuntimeError(f"no configuration was trained: upstream task '{task}' failed "
                               f"({output} {'says the batch failed' if output.exists() else 'is missing'}); "
                               f"see the '{task}' task's log for the cause")


@_stage
def test_eval(ref: RunRef, best: Mapping[str, Any]) -> dict[str, Any]:
    """The selected model and the best popularity baseline on the held-out test window, paired.

    The selected model is served only if it beats the best popularity model beyond noise (the
    95% interval of their paired difference in test MAP@K lies above zero); otherwise the
    popularity model is, and the run says so.
    """
    from pipeline import models
    from pipeline.evaluate import score
    from pipeline.intervals import paired_difference
    from pipeline.results import best_popularity, few_users

    run = Run.open(ref)
    cfg = run.cfg.eval()
    k = cfg.k
    mine = score(models.load(Path(best["model_dir"])), run.split_data, "test", cfg)
    pop = best_popularity(run.layout.popularity, k)
    served, why, versus, baseline = dict(best), "the validation winner", None, None
    if pop and pop["key"] != best["key"]:
        baseline = score(models.load(Path(pop["model_dir"])), run.split_data, "test", cfg)
        d = paired_difference(mine.per_user["map"], baseline.per_user["map"], seed=cfg.seed, resamples=cfg.resamples)
        versus = {"key": pop["key"], f"diff_map_at_{k}": d.mean, "ci_low": d.low, "ci_high": d.high,
                  "beyond_noise": d.above_zero}
    served_scores = mine
    if versus and not versus["beyond_noise"]:
        served, served_scores = {k_: pop[k_] for k_ in ("key", "label", "params", "metrics", "model_dir",
                                                        "mlflow_run_id")}, baseline
        why = (f"{best['label']} does not beat {pop['label']} beyond noise on the test window (test MAP@{k} "
               f"difference {versus[f'diff_map_at_{k}']:+.5f} [{versus['ci_low']:+.5f}, {versus['ci_high']:+.5f}]): "
               "the popularity model is served")
        log.warning("%s", why)
    metrics = {f"test_{m}": v for m, v in served_scores.metrics.items()}
    result = {"best": served["key"], "validation_winner": best["key"], "served_because": why, "metrics": metrics,
              "validation_winner_metrics": {f"test_{m}": v for m, v in mine.metrics.items()},
              "baseline": pop["key"] if pop else None,
              "baseline_metrics": {f"test_{m}": v for m, v in baseline.metrics.items()} if baseline else {},
              "versus_popularity": versus}
    warning = few_users(int(served_scores.metrics["n_users"]), int(served_scores.metrics["n_cold_users"]), "test",
                        run.cfg.min_eval_users)
    if warning:
        log.warning("%s", warning)
        result["warning"] = warning
        tracking.set_tags(run.parent, {"pipeline.warning.test_users": warning})
    served_scores.save(run.layout.test_per_user)
    atomic_write_text(run.layout.test_metrics, json.dumps(result, indent=1))
    tracking.log_metrics(run.parent, metrics)
    tracking.log_metrics(run.parent, result["baseline_metrics"], prefix="baseline_")
    if versus:
        tracking.log_metrics(run.parent, {f"test_map_at_{k}_diff_popularity": versus[f"diff_map_at_{k}"],
                                          f"test_map_at_{k}_diff_popularity_ci_low": versus["ci_low"],
                                          f"test_map_at_{k}_diff_popularity_ci_high": versus["ci_high"]})
    tracking.set_tags(run.parent, {"pipeline.served_config": served["key"], "pipeline.served_because": why[:5000]})
    m = f"test_map_at_{k}"
    if served.get("mlflow_run_id"):  # a tag, not test_* metrics the other configurations lack (NaN when compared)
        shown, ci = tracking.compact({n: metrics[n] for n in (m, f"{m}_ci_low", f"{m}_ci_high") if n in metrics})
        served_tag = f"test MAP@{k} {shown[m]:.5f} {ci.get(m + '_ci', '')}".strip()
        tracking.set_tags(served["mlflow_run_id"], {"pipeline.served": served_tag})
    base = result["baseline_metrics"]
    progress.note(f"{served['label']}: test MAP@{k} {metrics[m]:.4f}"
                  + (f" (popularity {base[m]:.4f})" if base else ""))
    return {**result, "selected": served}


@_stage
def health(ref: RunRef, tested: Mapping[str, Any]) -> dict[str, Any]:
    """Tonight against the previous nights of the same input (:mod:`pipeline.health`); fail or flag on drift.

    With ``health_checks`` ``fail`` a failed check raises, so ``promote`` does not run and the DAG's
    ``on_failure_callback`` sends the alert; with ``flag`` this task sends it and the night goes on.
    """
    from pipeline import health as h

    run = Run.open(ref)
    th = run.cfg.health()
    if th.mode == "off":
        progress.note("health checks off (health_checks=off)")
        return {"mode": "off"}
    k = run.cfg.k
    night = h.night_from_ingest(ref.run_key, json.loads(run.layout.ingest.summary.read_text()),
                                run.layout.ingest.listens)
    h.add_model_figures(night, tested["metrics"], k)
    history = h.History(ref.dag_id, run.record["input_path"])
    previous = history.before(ref.run_key)
    report = h.Report(night, h.evaluate(night, previous, th))
    night.failed = [c.figure for c in report.failed]
    history.record(night)
    summary = report.to_json()
    out = run.layout.health
    atomic_write_text(out / "health.json", json.dumps(summary, indent=1))
    plot = h.trend_plot(previous + [night], k, out / "trend.png")
    tracking.log_files(run.parent, [out / "health.json", plot], "health")
    tracking.log_metrics(run.parent, night.figures, prefix="health_")
    verdict = "ok" if not report.failed else ("failed" if th.mode == "fail" else "flagged")
    tracking.set_tags(run.parent, {"pipeline.health": f"{verdict}: {report.summary()}"[:5000]})
    if report.failed:
        text = f"{ref.dag_id} {ref.run_key}: health checks {verdict} for {night.label}: {report.summary()}"
        progress.note(f"{len(report.failed)} check(s) {verdict}: {', '.join(c.figure for c in report.failed)}",
                      ok=False)
        if th.mode == "fail":
            raise h.HealthCheckFailed(text + " (the night is not promoted; set health_checks=flag to promote anyway)")
        from pipeline import alerts

        alerts.send(text, kind="health", context=_airflow_context(), details=summary)
    else:
        progress.note(report.summary())
    return summary


def _airflow_context() -> Mapping[str, Any]:
    """The running task's Airflow context, or an empty one outside a task (stages run in-process)."""
    try:
        from airflow.sdk import get_current_context

        return get_current_context()
    except Exception:  # noqa: BLE001 - no task is running
        return {}


@_stage
def build_index(ref: RunRef, tested: Mapping[str, Any]) -> dict[str, Any]:
    """annoy and HNSW over the selected model's item factors, tuned against exact search; the bundle."""
    from pipeline.indexing import build_bundle
    from pipeline.results import best_popularity

    run = Run.open(ref)
    lay = run.layout
    best = tested["selected"]
    pop = best_popularity(lay.popularity, run.cfg.k)
    if pop is None:
        raise RuntimeError("no popularity baseline finished: the served model needs one for unknown users; "
                           f"see the results under {lay.popularity}")
    meta = build_bundle(model_dir=Path(best["model_dir"]), data=run.split_data, tracks=lay.ingest.tracks,
                        idmap_root=run.idmap_root, fallback_model_dir=Path(pop["model_dir"]), out=lay.bundle,
                        tuning_dir=lay.index_tuning, cfg=run.cfg.index(), k=run.cfg.k, exclude_seen=run.cfg.exclude_seen,
                        info={"model_key": best["key"], "params": best["params"], "dag_run_id": ref.dag_run_id})
    idx = meta["index"]
    if idx:
        atomic_write_text(lay.index_tuning / "tuning.json", json.dumps(meta.get("tuning"), indent=1, default=str))
        tracking.log_files(run.parent, [lay.index_tuning / "tuning.json", lay.index_tuning / "tradeoffs.png"], "index")
        tracking.set_tags(run.parent, {"pipeline.index_kind": str(idx.get("kind"))})
        tracking.log_metrics(run.parent, {f"index_{m}": v for m, v in idx.items()
                                          if isinstance(v, (int, float)) and not isinstance(v, bool)})
        progress.note(f"{idx.get('kind')} {idx.get('params')}: recall@{run.cfg.k} {idx.get('recall'):.3f}")
    else:
        progress.note("no index: the model is not a factor model")
    return {"bundle_dir": str(lay.bundle), "index": idx, "tested": dict(tested)}


@_stage
def promote(ref: RunRef, indexed: Mapping[str, Any]) -> dict[str, Any]:
    """Register the bundle as a new ``music-recs`` version; ``champion`` only if it beats the incumbent beyond noise."""
    from pipeline.evaluate import Scores
    from pipeline.promotion import promote as register_and_decide

    run = Run.open(ref)
    tested = indexed["tested"]
    cfg = run.cfg.eval()
    users, per_user = Scores.load_per_user(run.layout.test_per_user)
    decision = register_and_decide(
        bundle_dir=Path(indexed["bundle_dir"]), split=run.split_data, cfg=cfg,
        candidate=float(tested["metrics"][f"test_map_at_{cfg.k}"]), candidate_per_user=(users, per_user["map"]),
        config_key=tested["best"], parent_run_id=run.parent, run_key=ref.run_key, dag_run_id=ref.dag_run_id,
        out=run.layout.promotion)
    _record_promotion(ref, run, decision, cfg.k)
    progress.note(f"music-recs v{decision['version']} -> @{decision['alias']}")
    return decision


def _record_promotion(ref: RunRef, run: Run, decision: Mapping[str, Any], k: int) -> None:
    """The champion's test MAP@K on tonight's window, for the health history's trend."""
    from pipeline.health import History

    m = f"test_map_at_{k}"
    theirs = decision.get(f"candidate_{m}") if decision["alias"] == "champion" else decision.get(f"incumbent_{m}")
    History(ref.dag_id, run.record["input_path"]).record_promotion(ref.run_key, decision["alias"], theirs)


@_stage
def retain(ref: RunRef) -> dict[str, Any]:
    """Retention (:mod:`pipeline.retention`): the newest ``keep_runs`` runs stay, older outputs go; what was freed."""
    from pipeline.retention import prune
    from pipeline.spark import spill_dir

    lay = ref.layout
    if not lay.record.exists():  # start failed: the run's keep_runs is unknown, and nothing of it was written
        progress.note("nothing pruned: the run has no record (its start task failed)")
        return {}
    run = Run.open(ref)
    freed = prune(runs_root=lay.root.parent, keep=run.cfg.keep_runs, current=lay.root, spill_dir=spill_dir())
    atomic_write_text(lay.root / "retention.json", json.dumps(freed.to_dict(), indent=1))
    tracking.set_tags(run.parent, {"pipeline.retention": freed.summary()})
    progress.note(freed.summary())
    return freed.to_dict()


# ---------------------------------------------------------------- landing (the music_recs_landing DAG)


def land(source: str, landing: str, input_format: str, until: dt.date) -> dict[str, Any]:
    """The nights of ``source`` up to ``until`` not yet under ``landing``, as ``date=`` folders
    (:func:`pipeline.increments.partition_log`); each lands in one atomic rename."""
    from pipeline import increments
    from pipeline.spark import get_session

    src, out = resolve_input(source), resolve_input(landing)
    if not src.exists():
        raise FileNotFoundError(f"source {src} does not exist; point the landing DAG's 'source' param at the raw log")
    landed = increments.partition_log(get_session("music_recs_landing"), input_format, src, out, until=until)
    progress.note(f"{len(landed['written'])} night(s) landed up to {until}"
                  + (f": {', '.join(landed['written'])}" if landed["written"] else ", nothing new"))
    return landed
