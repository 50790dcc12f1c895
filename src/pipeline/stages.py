"""The DAG's task bodies: each takes the run context (plain dict of paths/ids) and the DAG params.

Tasks pass paths, not data. Every output lands under the run folder
``<home>/runs/<dag run id>/``, so a retried task or a re-run of the same DAG run rewrites
the same places (atomically) and finds its MLflow runs again by their tags.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline import progress, tracking
from pipeline.config import (
    AlsConfig, EvalConfig, IndexConfig, IngestConfig, SplitConfig, als_grid, from_params, popularity_grid,
)
from pipeline.paths import atomic_write_text, pipeline_home, run_dir

__all__ = [
    "DEFAULT_PARAMS", "start", "validate", "dedup", "split", "popularity", "als_grid_from", "als_submit_kwargs",
    "als_local", "select", "test_eval", "build_index", "promote", "fingerprint",
]

log = logging.getLogger(__name__)

JOB_FILE = Path(__file__).resolve().parent / "jobs" / "als_job.py"

DEFAULT_PARAMS: dict[str, Any] = {
    "input_path": "data/demo",
    "input_format": "listenbrainz",
    "k": 100,
    "exclude_seen": False,
    "split_strategy": "temporal_user",
    "split_fraction": 0.8,
    "test_quantile": 0.9,
    "ranks": [10, 20],
    "reg_params": [0.01, 0.1],
    "alphas": [0.5],
    "max_iters": [10],
    "confidence": "linear",
    "engine": "spark",
    "betas": [1, 10, 50, 200, 500, 1000, 10000],
    "max_quarantine_share": 0.01,
    "recall_target": 0.95,
    "index_kinds": ["annoy_dot", "annoy_angular_aug", "hnsw_ip"],
    "annoy_trees": [10, 50],
    "hnsw_M": [16, 32],
    "hnsw_ef_construction": 200,
    "train_window_days": 0,
}


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**DEFAULT_PARAMS, **{k: v for k, v in (params or {}).items() if v is not None}}


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


def fingerprint(path: Path) -> str:
    """A short hash of the input's files (relative names, sizes, modification times)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path.parent if path.is_file() else path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _eval_cfg(p: Mapping[str, Any]) -> EvalConfig:
    return EvalConfig(k=int(p["k"]), exclude_seen=bool(p["exclude_seen"]))


def start(params: Mapping[str, Any] | None, *, dag_id: str, dag_run_id: str, run_key: str | None = None,
          as_of: dt.datetime | None = None) -> dict[str, Any]:
    """Create (or find) the run folder and the MLflow parent run; return the run context.

    ``run_key`` (the DAG run's logical date; default its run id) names both, so running the
    same logical date again rewrites the same outputs and reuses the same MLflow runs.
    ``as_of`` (the logical date; default now) is the run's date: a date-partitioned input
    (``date=YYYY-MM-DD`` folders) is ingested up to that day (nightly increments).
    """
    p = _params(params)
    src = resolve_input(p["input_path"])
    if not src.exists():
        raise FileNotFoundError(f"input_path {src} does not exist; point the 'input_path' param at your listens")
    run_key = run_key or dag_run_id
    rdir = run_dir(run_key)
    rdir.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(src)
    parent = tracking.parent_run(
        dag_id=dag_id, dag_run_id=dag_run_id, run_key=run_key,
        tags={"pipeline.input_fingerprint": fp, "pipeline.input_path": str(src),
              "pipeline.protocol": "exclude_seen" if p["exclude_seen"] else "keep_seen"},
        params={k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in p.items()},
    )
    ctx = {"run_dir": str(rdir), "parent_run_id": parent, "dag_id": dag_id, "dag_run_id": dag_run_id, "run_key": run_key,
           "input_path": str(src), "fingerprint": fp, "idmap_root": str(pipeline_home() / "state" / "idmap")}
    ctx.update(_increments_ctx(src, as_of, parent))
    if p["train_window_days"] and not ctx.get("increments"):
        raise ValueError(f"train_window_days={p['train_window_days']} applies to a date-partitioned input "
                         f"(date=YYYY-MM-DD folders), but {src} is a snapshot; set it to 0 or partition the input "
                         "(`pipeline partition`)")
    atomic_write_text(rdir / "context.json", json.dumps(ctx, indent=1))
    return ctx


def _increments_ctx(src: Path, as_of: dt.datetime | None, parent_run_id: str) -> dict[str, Any]:
    """For a date-partitioned input: the curated table and the run's date (``{}`` for a snapshot)."""
    from pipeline import increments

    if not increments.is_partitioned(src):
        return {}
    day = (as_of or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).date()
    curated = increments.default_curated_dir(src)
    log.info("input %s is date-partitioned (date=YYYY-MM-DD folders): nightly increments up to %s into %s",
             src, day, curated)
    tracking.client().set_tag(parent_run_id, "pipeline.increments", f"up to {day}, curated {curated}")
    return {"increments": {"curated": str(curated), "up_to": day.isoformat()}}


def _spark():
    from pipeline.spark import get_session

    return get_session("music-recs")


def validate(ctx: Mapping[str, Any], params: Mapping[str, Any] | None, *, as_of: dt.datetime | None = None) -> dict[str, Any]:
    """Load + Great Expectations; quarantine bad rows; fail the run on a bad batch."""
    from pipeline import ingest

    p = _params(params)
    cfg = from_params(IngestConfig, p, input_path=ctx["input_path"])
    out = Path(ctx["run_dir"]) / "ingest"
    if ctx.get("increments"):
        return _validate_increments(ctx, cfg, out)
    try:
        summary = ingest.validate_stage(cfg, out, spark=_spark(), as_of=as_of)
    finally:
        _log_validation(ctx, out)
    progress.note(f"{summary['rows_out']:,} rows kept, {summary['quarantined']:,} quarantined")
    return summary


def _validate_increments(ctx: Mapping[str, Any], cfg: IngestConfig, out: Path) -> dict[str, Any]:
    """Validate each pending partition (date <= the run's date) into ``ingest/partitions/date=D/``."""
    from pipeline import increments

    inc = ctx["increments"]
    work = out / "partitions"
    try:
        v = increments.validate_pending(cfg, Path(inc["curated"]), work, up_to=dt.date.fromisoformat(inc["up_to"]),
                                        spark=_spark())
    finally:
        c = tracking.client()
        for part in sorted(work.glob("date=*")) if work.exists() else []:
            for f in ("validate_summary.json", "validation.json"):
                if (part / f).exists():
                    c.log_artifact(ctx["parent_run_id"], str(part / f), f"validation/{part.name}")
    atomic_write_text(out / "validate_summary.json", json.dumps(v, indent=1))
    tracking.log_metrics(ctx["parent_run_id"], {"rows_in": v["rows_in"], "quarantined": v["quarantined"],
                                                "partitions_pending": len(v["pending"])})
    progress.note(f"{v['rows_in'] - v['quarantined']:,} rows kept, {v['quarantined']:,} quarantined")
    return v


def _log_validation(ctx: Mapping[str, Any], out: Path) -> None:
    c = tracking.client()
    for f in ("validate_summary.json", "validation.json"):
        if (out / f).exists():
            c.log_artifact(ctx["parent_run_id"], str(out / f), "validation")
    if (out / "data_docs").exists():
        c.log_artifacts(ctx["parent_run_id"], str(out / "data_docs"), "validation/data_docs")
    if (out / "validate_summary.json").exists():
        s = json.loads((out / "validate_summary.json").read_text())
        tracking.log_metrics(ctx["parent_run_id"], {"rows_in": s["rows_in"], "quarantined": s["quarantined"]})


def dedup(ctx: Mapping[str, Any], validated: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical tracks, duplicates dropped, ID map extended."""
    from pipeline import ingest

    out = Path(ctx["run_dir"]) / "ingest"
    if validated.get("increments"):
        return _dedup_increments(ctx, validated, out)
    d = ingest.dedup_stage(out / "validated", out, idmap_root=Path(ctx["idmap_root"]),
                           has_timestamps=validated["has_timestamps"], spark=_spark())
    summary = ingest.write_summary(out, validated, d)
    tracking.log_metrics(ctx["parent_run_id"], {k: summary[k] for k in ("rows_out", "duplicates", "tracks_merged_by_name")})
    c = tracking.client()
    c.set_tag(ctx["parent_run_id"], "pipeline.idmap_version", summary["idmap_version"])
    c.log_artifact(ctx["parent_run_id"], str(out / "summary.json"), "ingest")
    progress.note(f"{summary['rows_out']:,} rows out, {summary['duplicates']:,} duplicates dropped")
    return summary


def _dedup_increments(ctx: Mapping[str, Any], validated: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Commit the validated partitions to the curated table (each exactly once); the run's view of it."""
    from pipeline import increments

    spark = _spark()
    summary = increments.commit_pending(validated, idmap_root=Path(ctx["idmap_root"]), spark=spark,
                                        ingested_by=ctx["dag_run_id"])
    increments.write_tracks(spark, Path(summary["curated"]), summary["partitions"], out / "tracks")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    tracking.log_metrics(ctx["parent_run_id"], {
        "rows_out": summary["rows_out"], "duplicates": summary["duplicates"],
        "tracks_merged_by_name": summary["tracks_merged_by_name"], "partitions_ingested": len(summary["ingested"]),
        "history_rows": summary["history_rows"]})
    c = tracking.client()
    c.set_tag(ctx["parent_run_id"], "pipeline.idmap_version", summary["idmap_version"])
    c.set_tag(ctx["parent_run_id"], "pipeline.partitions", f"{summary['partitions'][0]} .. {summary['partitions'][-1]} "
              f"({len(summary['partitions'])}; ingested now: {', '.join(summary['ingested']) or 'none'})")
    c.log_artifact(ctx["parent_run_id"], str(out / "summary.json"), "ingest")
    progress.note(f"{summary['rows_out']:,} rows out, {summary['duplicates']:,} duplicates dropped")
    return summary


def split(ctx: Mapping[str, Any], ingested: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The temporal split with a later test window; the stats table goes to MLflow."""
    from pipeline import split as split_mod

    p = _params(params)
    cfg = from_params(SplitConfig, {"strategy": p["split_strategy"], "fraction": p["split_fraction"],
                                    "test_quantile": p["test_quantile"], "seed": p.get("seed", 0)})
    out = Path(ctx["run_dir"]) / "split"
    listens: Any = Path(ctx["run_dir"]) / "ingest" / "listens"
    if ingested.get("increments"):
        from pipeline import increments

        window = int(p["train_window_days"] or 0)
        up_to = dt.date.fromisoformat(ingested["up_to"])
        listens = increments.training_listens(_spark(), Path(ingested["curated"]), ingested["partitions"],
                                              up_to=up_to, window_days=window)
        log.info("training on %s of the curated listens (%d partitions up to %s)",
                 f"the {window} days from {increments.window_start(up_to, window)}" if window else "the full history",
                 len(ingested["partitions"]), up_to)
        if window and not listens.limit(1).count():
            raise ValueError(f"no curated listen has a timestamp in the {window} days from "
                             f"{increments.window_start(up_to, window)}; widen train_window_days or set it to 0")
    stats = split_mod.split(listens, out, cfg,
                            has_timestamps=ingested["has_timestamps"], spark=_spark(),
                            shape=(ingested["n_users_mapped"], ingested["n_tracks_mapped"]),
                            idmap_version=ingested["idmap_version"])
    atomic_write_text(out / "stats.md", split_mod.format_table(stats) + "\n")
    c = tracking.client()
    c.log_artifact(ctx["parent_run_id"], str(out / "stats.md"), "split")
    c.log_artifact(ctx["parent_run_id"], str(out / "stats.json"), "split")
    for name, row in stats["table"].items():
        tracking.log_metrics(ctx["parent_run_id"], row, prefix=f"{name}_")
    progress.note(" / ".join(f"{name} {row['interactions']:,}" for name, row in stats["table"].items()) + " rows")
    return {"split_dir": str(out), "table": stats["table"]}


def popularity(ctx: Mapping[str, Any], params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The three popularity variants (plays_per_listener at every beta), logged as children first."""
    from pipeline.models.popularity import track_stats_spark
    from pipeline.spark import release_session
    from pipeline.sweep import SplitData, popularity_sweep

    p = _params(params)
    data = SplitData(Path(ctx["run_dir"]) / "split")
    stats = track_stats_spark(_spark(), Path(data.split_dir) / "train", data.shape[1])
    release_session()  # the last stage that needs Spark in this process; ALS runs in its own application
    results = popularity_sweep(data, Path(ctx["run_dir"]) / "popularity", popularity_grid(p["betas"]),
                               _eval_cfg(p), parent_run_id=ctx["parent_run_id"], stats=stats,
                               tags={"airflow.task_id": "popularity_sweep"})
    progress.note(f"{(n := sum(r['status'] == 'ok' for r in results))} configurations done, {len(results) - n} failed")
    return [{k: r[k] for k in ("key", "label", "status", "metrics")} for r in results]


def als_grid_from(params: Mapping[str, Any] | None) -> list[AlsConfig]:
    p = _params(params)
    return als_grid(ranks=p["ranks"], reg_params=p["reg_params"], alphas=p["alphas"], max_iters=p["max_iters"],
                    seed=int(p.get("seed", 0)), confidence=p["confidence"], engine=p["engine"])


def als_submit_kwargs(ctx: Mapping[str, Any], params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One ``SparkSubmitOperator`` kwargs dict per grid point (``name`` is the readable map index)."""
    p = _params(params)
    out = []
    for i, cfg in enumerate(als_grid_from(p)):
        args = ["--split", str(Path(ctx["run_dir"]) / "split"), "--out", str(Path(ctx["run_dir"]) / "sweep"),
                "--config", json.dumps(cfg.params()), "--k", str(p["k"]),
                "--parent-run-id", ctx["parent_run_id"],
                "--tags", json.dumps({"airflow.task_id": "als_sweep", "airflow.map_index": str(i)})]
        if p["exclude_seen"]:
            args.append("--exclude-seen")
        out.append({"application_args": args, "name": cfg.label})
    progress.note(f"{len(out)} ALS configurations to submit")
    return out


def als_local(ctx: Mapping[str, Any], params: Mapping[str, Any] | None, config: Mapping[str, Any]) -> dict[str, Any]:
    """Run one grid point in this process (the CLI's path; the DAG submits the same job with spark-submit)."""
    from pipeline.jobs import als_job

    p = _params(params)
    argv = ["--split", str(Path(ctx["run_dir"]) / "split"), "--out", str(Path(ctx["run_dir"]) / "sweep"),
            "--config", json.dumps(dict(config)), "--k", str(p["k"]), "--parent-run-id", ctx["parent_run_id"]]
    return als_job.main(argv + (["--exclude-seen"] if p["exclude_seen"] else []))


def spark_conf() -> dict[str, str]:
    """Spark conf for submitted jobs: the same Python as this process on driver and executors.

    The driver (client deploy mode: on this machine) gets the same memory as an in-process
    session, ``$SPARK_DRIVER_MEMORY`` or a quarter of RAM.
    """
    from pipeline.spark import default_driver_memory

    return {"spark.pyspark.python": sys.executable, "spark.pyspark.driver.python": sys.executable,
            "spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false",
            "spark.driver.memory": os.environ.get("SPARK_DRIVER_MEMORY") or default_driver_memory()}


def select(ctx: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Leaderboard of every configuration by validation MAP@K; the winner is tagged in MLflow."""
    from pipeline import report
    from pipeline.sweep import leaderboard, select_best

    p = _params(params)
    k = int(p["k"])
    rdir = Path(ctx["run_dir"])
    board = leaderboard([rdir / "popularity", rdir / "sweep"], k)
    best = select_best(board, k)
    out = rdir / "select"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "leaderboard.json", json.dumps(board, indent=1, default=str))
    atomic_write_text(out / "leaderboard.md", report.leaderboard_markdown(board, k) + "\n")
    plots = report.sweep_plots(board, k, out)
    c = tracking.client()
    for f in [out / "leaderboard.md", out / "leaderboard.json", *plots]:
        c.log_artifact(ctx["parent_run_id"], str(f), "leaderboard")
    if best.get("mlflow_run_id"):
        c.set_tag(best["mlflow_run_id"], "pipeline.winner", "true")
    c.set_tag(ctx["parent_run_id"], "pipeline.best_config", best["key"])
    tracking.log_metrics(ctx["parent_run_id"], {f"best_{m}": v for m, v in best["metrics"].items()})
    progress.note(f"best {best['label']}: val MAP@{k} {best['metrics'][f'val_map_at_{k}']:.4f}")
    return {k_: best[k_] for k_ in ("key", "label", "params", "metrics", "model_dir", "mlflow_run_id")}


def test_eval(ctx: Mapping[str, Any], best: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The selected model and the best popularity baseline on the held-out test window."""
    from pipeline import models
    from pipeline.sweep import SplitData, evaluate, leaderboard

    p = _params(params)
    cfg = _eval_cfg(p)
    rdir = Path(ctx["run_dir"])
    data = SplitData(rdir / "split")
    metrics = {f"test_{k}": v for k, v in evaluate(models.load(Path(best["model_dir"])), data, "test", cfg).items()}
    pops = [r for r in leaderboard([rdir / "popularity"], cfg.k) if r["status"] == "ok"]
    baseline = {}
    if pops:
        baseline = {f"test_{k}": v for k, v in evaluate(models.load(Path(pops[0]["model_dir"])), data, "test", cfg).items()}
    result = {"best": best["key"], "metrics": metrics, "baseline": pops[0]["key"] if pops else None,
              "baseline_metrics": baseline}
    atomic_write_text(rdir / "test" / "metrics.json", json.dumps(result, indent=1))
    tracking.log_metrics(ctx["parent_run_id"], metrics)
    tracking.log_metrics(ctx["parent_run_id"], baseline, prefix="baseline_")
    if best.get("mlflow_run_id"):
        tracking.log_metrics(best["mlflow_run_id"], metrics)
    progress.note(f"test MAP@{cfg.k} {metrics[f'test_map_at_{cfg.k}']:.4f}")
    return result


def build_index(ctx: Mapping[str, Any], best: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """annoy and HNSW over the best model's item factors, tuned against exact search on validation users."""
    from pipeline import serving

    p = _params(params)
    cfg = from_params(IndexConfig, p)
    result = serving.build_index_stage(ctx, best, cfg, k=int(p["k"]))
    progress.note(f"{i['kind']} {i['params']} recall@{p['k']} {i['recall']:.3f}" if (i := result["index"]) else "no index")
    return result


def promote(ctx: Mapping[str, Any], best: Mapping[str, Any], test: Mapping[str, Any],
            index: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Register the model as a new version of ``music-recs``; move ``champion`` only if it is at least as good."""
    from pipeline import serving

    p = _params(params)
    decision = serving.promote_stage(ctx, best, test, index, _eval_cfg(p))
    progress.note(f"music-recs v{decision['version']} -> @{decision['alias']}")
    return decision
