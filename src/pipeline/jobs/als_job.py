"""One ALS configuration as a Spark application: fit, validate, save, log to MLflow.

    spark-submit --master spark://host:7077 src/pipeline/jobs/als_job.py \\
        --split runs/<run>/split --out runs/<run>/sweep --config '{"rank": 20, ...}' [--k 100]

The DAG submits it once per grid point through ``SparkSubmitOperator`` and the connection
``spark_default``; it builds and stops its own session, so the same file runs on a cluster
and in a test on ``local[2]``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", required=True, type=Path, help="split folder (train/, val/, stats.json)")
    p.add_argument("--out", required=True, type=Path, help="sweep folder; the config writes <out>/<key>/")
    p.add_argument("--config", required=True, help="AlsConfig fields as JSON")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--exclude-seen", action="store_true")
    p.add_argument("--parent-run-id", default=None, help="MLflow parent run; the config logs a nested child")
    p.add_argument("--tags", default="{}", help="extra MLflow tags as JSON (airflow task id, map index)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from pipeline import progress
    from pipeline.config import AlsConfig, EvalConfig, from_params
    from pipeline.spark import get_session, master_lost
    from pipeline.data import SplitData
    from pipeline.sweep import als_config_run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    cfg = from_params(AlsConfig, {k: v for k, v in json.loads(args.config).items() if k != "model"})
    spark = get_session(f"als {cfg.label}") if cfg.engine == "spark" else None
    try:
        result = als_config_run(
            SplitData(args.split), args.out, cfg, EvalConfig(k=args.k, exclude_seen=args.exclude_seen),
            parent_run_id=args.parent_run_id, spark=spark, tags=json.loads(args.tags),
        )
    except Exception:
        if lost := master_lost():  # one line that names the master, not a cancelled job's trace
            progress.note(f"{cfg.label}: {lost}", ok=False)
            raise SystemExit(f"{cfg.label} failed: {lost}") from None
        raise
    finally:
        if spark is not None:
            spark.stop()
    print(json.dumps({k: result[k] for k in ("key", "status", "metrics", "fit_seconds")}))
    val_map = (result.get("metrics") or {}).get(f"val_map_at_{args.k}")
    figure = f"val MAP@{args.k} {val_map:.4f}" if val_map is not None else result.get("error", result["status"])
    progress.note(f"{cfg.label}: {figure}", ok=result["status"] == "ok")
    return result


if __name__ == "__main__":
    main()
