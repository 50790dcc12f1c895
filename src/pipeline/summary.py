"""What ``make demo`` prints at the end: the leaderboard, the promoted model's test metrics, the MLflow UI command."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.paths import pipeline_home
from pipeline.tracking import tracking_uri

__all__ = ["latest_run", "print_run_report"]


def latest_run(home: Path | None = None) -> Path:
    runs = [p for p in ((home or pipeline_home()) / "runs").glob("*") if (p / "context.json").exists()]
    if not runs:
        raise FileNotFoundError(f"no runs under {(home or pipeline_home()) / 'runs'}: run the DAG first (make demo)")
    return max(runs, key=lambda p: (p / "context.json").stat().st_mtime)


def print_run_report(run_dir: Path | None = None) -> None:
    run_dir = run_dir or latest_run()
    ctx = json.loads((run_dir / "context.json").read_text())
    print(f"\nRun {ctx['dag_run_id']}  (input {ctx['input_path']}, fingerprint {ctx['fingerprint']})")
    split_md = run_dir / "split" / "stats.md"
    if split_md.exists():
        print("\nData (Table 1):\n" + split_md.read_text())
    board = run_dir / "select" / "leaderboard.md"
    if board.exists():
        print("Leaderboard (validation):\n" + board.read_text())
    test = run_dir / "test" / "metrics.json"
    if test.exists():
        t = json.loads(test.read_text())
        print(f"Test window, best model {t['best']}:")
        for name, value in t["metrics"].items():
            base = t["baseline_metrics"].get(name)
            extra = f"   (popularity {t['baseline']}: {base:.5f})" if isinstance(base, float) else ""
            print(f"  {name:<24} {value:.5f}{extra}" if isinstance(value, float) else f"  {name:<24} {value}")
    promo = run_dir / "promotion.json"
    if promo.exists():
        p = json.loads(promo.read_text())
        print(f"\nRegistered music-recs v{p['version']} -> @{p['alias']} ({p['reason']})")
    bundle = run_dir / "bundle" / "bundle.json"
    if bundle.exists():
        idx = json.loads(bundle.read_text()).get("index") or {}
        if idx:
            print(f"Serving index: {idx.get('kind')} {idx.get('params')}  recall@K {idx.get('recall')}")
    uri = tracking_uri()
    if uri.startswith("sqlite:"):
        print(f"\nOpen the MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000")
    else:
        print(f"\nMLflow tracking server: {uri}")
