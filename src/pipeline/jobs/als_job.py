"""ALS configurations as one Spark application: fit, validate, save, log each to MLflow.

    spark-submit --master spark://host:7077 src/pipeline/jobs/als_job.py \\
        --split runs/<run>/split --out runs/<run>/sweep --config '{"rank": 20, ...}' [--k 100]

``--config`` is one configuration (a JSON object) or several (a JSON list). The DAG submits the
job once per configuration, or, with the param ``als_applications``, once per share of a rung's
configurations: the application then reads ``train`` once and fits its configurations one after
another, which saves each fit Spark's start. It builds and stops its own session, so the same
file runs on a cluster and in a test on ``local[2]`` (where a session the caller already runs is
used and left running).

A configuration that fails is marked FAILED (its ``result.json`` and MLflow child run) and the
others still run; the application then exits non-zero naming the failed ones. On a retry, a
configuration that already finished in this sweep folder, on this split, is not fitted again.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", required=True, type=Path, help="split folder (train/, val/, stats.json)")
    p.add_argument("--out", required=True, type=Path, help="sweep folder; each config writes <out>/<key>/")
    p.add_argument("--config", required=True, help="AlsConfig fields as JSON: one object, or a list of them")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--exclude-seen", action="store_true")
    p.add_argument("--parent-run-id", default=None, help="MLflow parent run; each config logs a nested child")
    p.add_argument("--tags", default="{}", help="extra MLflow tags as JSON (airflow task id, map index)")
    return p.parse_args(argv)


def share_name(labels: list[str]) -> str:
    """An application's name from its configurations' labels: the first, and how many more."""
    return labels[0] + (f" +{len(labels) - 1} more" if len(labels) > 1 else "")


def _finished(out: Path, key: str, split: Path) -> dict[str, Any] | None:
    """The result of ``key`` when an earlier attempt of this application already fitted it on this split.

    A result older than the split's ``stats.json`` was fitted on an earlier split of the run (a
    re-run that split again) and is fitted again.
    """
    f = out / key / "result.json"
    if not f.exists() or f.stat().st_mtime < (split / "stats.json").stat().st_mtime:
        return None
    result = json.loads(f.read_text())
    return result if result.get("status") == "ok" else None


def main(argv: list[str] | None = None) -> dict | list[dict]:
    """Fit every configuration of ``--config``; one result dict (one object given) or a list of them."""
    from pipeline import progress
    from pipeline.config import AlsConfig, EvalConfig, from_params
    from pipeline.data import SplitData
    from pipeline.spark import get_session, jobs, master_lost
    from pipeline.sweep import als_config_run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    given = json.loads(args.config)
    cfgs = [from_params(AlsConfig, {k: v for k, v in c.items() if k != "model"})
            for c in (given if isinstance(given, list) else [given])]
    name, tags = share_name([c.label for c in cfgs]), json.loads(args.tags)
    spark = owned = None
    if any(c.engine == "spark" for c in cfgs):
        from pyspark.sql import SparkSession

        owned = SparkSession.getActiveSession() is None  # in a caller's process (a test) its session is its own
        spark = get_session(f"als {name}")
    data, eval_cfg, ratings = SplitData(args.split), EvalConfig(k=args.k, exclude_seen=args.exclude_seen), {}
    results, failed = [], []
    try:
        for cfg in cfgs:
            if done := _finished(args.out, cfg.key, args.split):
                progress.note(f"{cfg.label}: already fitted by an earlier attempt")
                results.append(done)
                continue
            try:
                with jobs(spark, f"als: {cfg.label}"):
                    result = als_config_run(data, args.out, cfg, eval_cfg, parent_run_id=args.parent_run_id,
                                            spark=spark, tags=tags, ratings=ratings)
            except Exception as exc:  # noqa: BLE001 - marked FAILED by run_config; the others go on
                if lost := master_lost():  # one line that names the master, not a cancelled job's trace
                    progress.note(f"{cfg.label}: {lost}", ok=False)
                    raise SystemExit(f"{cfg.label} failed: {lost}") from None
                if len(cfgs) == 1:
                    raise
                logging.exception("%s failed", cfg.label)
                progress.note(f"{cfg.label}: {type(exc).__name__}: {exc}", ok=False)
                failed.append(cfg.label)
                continue
            print(json.dumps({k: result[k] for k in ("key", "status", "metrics", "fit_seconds")}))
            val_map = (result.get("metrics") or {}).get(f"val_map_at_{args.k}")
            progress.note(f"{cfg.label}: val MAP@{args.k} {val_map:.4f} (fit {result['fit_seconds']:.0f} s)")
            results.append(result)
    finally:
        for frame in ratings.values():
            frame.unpersist()
        if spark is not None and owned:
            spark.stop()
    if failed:
        raise SystemExit(f"{len(failed)} of {len(cfgs)} ALS configurations failed (each marked FAILED in MLflow, "
                         f"the others kept): {'; '.join(failed)}")
    return results if isinstance(given, list) else results[0]


if __name__ == "__main__":
    main()
