"""Fit, evaluate and record each configuration of a sweep.

Each configuration writes ``<sweep_dir>/<config key>/`` with its model folder and a
``result.json`` (params, validation metrics, fit and evaluation seconds, status, MLflow run
id) and logs a nested MLflow child run. A configuration that fails is marked FAILED in
MLflow and in its ``result.json``; the others go on (:mod:`pipeline.results` reads them all).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import tracking
from pipeline.config import AlsConfig, EvalConfig, PopularityConfig
from pipeline.data import SplitData
from pipeline.evaluate import score
from pipeline.models import Recommender
from pipeline.paths import atomic_write_text

__all__ = ["run_config", "popularity_sweep", "als_config_run", "SweepFailed"]

log = logging.getLogger(__name__)


def run_config(
    *, key: str, label: str, params: Mapping[str, Any], out_dir: Path, data: SplitData, eval_cfg: EvalConfig,
    fit: Callable[[], Recommender], parent_run_id: str | None, tags: Mapping[str, str] | None = None,
    spark: Any = None, extra_metrics: Callable[[Recommender], Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """Fit with ``fit()``, evaluate on validation, save the model, log a child run; never half-written.

    ``extra_metrics(model)`` adds validation metrics beside the ranking ones (explicit ALS: RMSE, MAE).
    """
    out = Path(out_dir) / key
    run_id = None
    if parent_run_id:
        run_id = tracking.child_run(parent_run_id, config_key=key, name=label, params=params,
                                    tags={"pipeline.protocol": _protocol(eval_cfg), **(tags or {})})
    result: dict[str, Any] = {"key": key, "label": label, "params": dict(params), "mlflow_run_id": run_id,
                              "k": eval_cfg.k, "exclude_seen": eval_cfg.exclude_seen}
    try:
        t0 = time.perf_counter()
        model = fit()
        t1 = time.perf_counter()
        scores = score(model, data, "val", eval_cfg, spark=spark)
        extra = dict(extra_metrics(model)) if extra_metrics else {}
        t2 = time.perf_counter()
        model.save(out / "model")
        scores.save(out / "val_per_user.npz")
    except Exception as exc:
        from pipeline.spark import master_lost

        lost = master_lost()  # Spark's own message would only say the job was cancelled
        result.update(status="failed", error=f"MasterLost: {lost}" if lost else f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
        atomic_write_text(out / "result.json", json.dumps(result, indent=1))
        if run_id:
            tracking.client().set_tag(run_id, "pipeline.error", result["error"][:5000])
            tracking.finish(run_id, "FAILED")
        raise
    result.update(
        status="ok", metrics={f"val_{k}": v for k, v in {**scores.metrics, **extra}.items()},
        fit_seconds=round(t1 - t0, 3), eval_seconds=round(t2 - t1, 3), model_dir=str(out / "model"),
        per_user=str(out / "val_per_user.npz"),
        idmap_version=data.stats.get("idmap_version"),
    )
    if run_id:
        shown, intervals = tracking.compact(result["metrics"])
        tracking.log_metrics(run_id, {**shown, "fit_seconds": round(result["fit_seconds"], 1),
                                      "eval_seconds": round(result["eval_seconds"], 1)})
        tracking.set_tags(run_id, intervals)
        tracking.client().set_tag(run_id, "pipeline.idmap_version", str(result["idmap_version"]))
        tracking.finish(run_id)
    atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    log.info("%s: val MAP@%d %.5f (fit %.1fs, eval %.1fs)", label, eval_cfg.k,
             result["metrics"][f"val_map_at_{eval_cfg.k}"], result["fit_seconds"], result["eval_seconds"])
    return result


def _protocol(cfg: EvalConfig) -> str:
    return "exclude_seen" if cfg.exclude_seen else "keep_seen"


class SweepFailed(RuntimeError):
    """Some configurations of a sweep failed (each is marked FAILED); raised after all of them ran."""


def popularity_sweep(
    data: SplitData, out_dir: Path, configs: Sequence[PopularityConfig], eval_cfg: EvalConfig, *,
    parent_run_id: str | None, stats: tuple[np.ndarray, np.ndarray] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every popularity configuration; the per-track aggregates are computed once.

    A configuration that fails is marked FAILED and the others still run; :class:`SweepFailed`
    then names the failed ones (their results stay on disk for selection).
    """
    from pipeline.models import popularity

    plays, listeners = stats if stats is not None else popularity.track_stats_matrix(data.train)
    results, failed = [], []
    for c in configs:
        try:
            results.append(run_config(key=c.key, label=c.label, params=c.params(), out_dir=out_dir, data=data,
                                      eval_cfg=eval_cfg, fit=lambda c=c: popularity.fit(plays, listeners, c),
                                      parent_run_id=parent_run_id, tags=tags))
        except Exception as exc:  # noqa: BLE001 - recorded as FAILED by run_config; the sweep goes on
            log.error("%s failed: %s: %s", c.label, type(exc).__name__, exc)
            failed.append(f"{c.label} ({type(exc).__name__}: {exc})")
    if failed:
        raise SweepFailed(f"{len(failed)} of {len(configs)} popularity configurations failed (each marked FAILED "
                          f"in MLflow, the others kept): {'; '.join(failed)}")
    return results


def als_config_run(
    data: SplitData, out_dir: Path, cfg: AlsConfig, eval_cfg: EvalConfig, *, parent_run_id: str | None,
    spark: Any = None, tags: Mapping[str, str] | None = None, ratings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ALS configuration on the engine it names (Spark needs ``spark``).

    ``ratings``: Spark's cached rating frames by confidence, shared by the fits of one application
    (filled here; the caller unpersists them).
    """
    n_users, n_tracks = data.shape
    if cfg.engine == "spark":
        from pipeline.models import als_spark

        if spark is None:
            raise ValueError("engine 'spark' needs a SparkSession; pass spark=")
        fit = lambda: als_spark.fit(spark, Path(data.split_dir) / "train", cfg, n_users=n_users,  # noqa: E731
                                    n_tracks=n_tracks, scratch=Path(out_dir) / f".factors-{cfg.key}",
                                    cache=ratings)
    else:
        from pipeline.models import als_implicit

        fit = lambda: als_implicit.fit(data.train, cfg)  # noqa: E731
    return run_config(key=cfg.key, label=cfg.label, params=cfg.params(), out_dir=out_dir, data=data,
                      eval_cfg=eval_cfg, fit=fit, parent_run_id=parent_run_id, tags=tags, spark=spark)


