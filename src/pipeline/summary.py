"""What ``make demo`` prints at the end: the leaderboard, the promoted model's test metrics, the MLflow UI command."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.paths import RunLayout, pipeline_home
from pipeline.tracking import tracking_uri

__all__ = ["latest_run", "print_run_report"]


def latest_run(home: Path | None = None) -> Path:
    """The run folder whose record was written last (the latest started run)."""
    runs = [RunLayout(p) for p in ((home or pipeline_home()) / "runs").glob("*")]
    runs = [r for r in runs if r.record.exists()]
    if not runs:
        raise FileNotFoundError(f"no runs under {(home or pipeline_home()) / 'runs'}: run the DAG first (make demo)")
    return max(runs, key=lambda r: r.record.stat().st_mtime).root


def print_run_report(run_dir: Path | None = None) -> None:
    lay = RunLayout(run_dir or latest_run())
    ctx = lay.read_record()
    print(f"\nRun {ctx['dag_run_id']}  (input {ctx['input_path']}, fingerprint {ctx['fingerprint']})")
    if lay.split_table.exists():
        print("\nData (Table 1):\n" + lay.split_table.read_text())
    board = lay.leaderboard_table
    if board.exists():
        print("Leaderboard (validation):\n" + board.read_text())
    test = lay.test_metrics
    if test.exists():
        t = json.loads(test.read_text())
        print(f"Test window, best model {t['best']}:")
        for name, value in t["metrics"].items():
            if name.endswith(("_ci_low", "_ci_high")):
                continue
            base = t["baseline_metrics"].get(name)
            extra = f"   (popularity {t['baseline']}: {base:.5f})" if isinstance(base, float) else ""
            ci = (t["metrics"].get(f"{name}_ci_low"), t["metrics"].get(f"{name}_ci_high"))
            shown = f"{value:.5f}" + (f" [{ci[0]:.5f}, {ci[1]:.5f}]" if None not in ci else "")
            print(f"  {name:<24} {shown}{extra}" if isinstance(value, float) else f"  {name:<24} {value}")
        if t.get("versus_popularity"):
            v = t["versus_popularity"]
            diff = next(x for key, x in v.items() if key.startswith("diff_"))
            print(f"  vs popularity: MAP difference {diff:+.5f} [{v['ci_low']:+.5f}, {v['ci_high']:+.5f}], "
                  f"{'beyond' if v['beyond_noise'] else 'within'} noise; served: {t['served_because']}")
        if t.get("warning"):
            print(f"  Warning: {t['warning']}")
    promo = lay.promotion
    if promo.exists():
        p = json.loads(promo.read_text())
        print(f"\nRegistered music-recs v{p['version']} -> @{p['alias']} ({p['reason']})")
    bundle = lay.bundle / "bundle.json"
    if bundle.exists():
        idx = json.loads(bundle.read_text()).get("index") or {}
        if idx:
            recall = idx.get("recall")
            shown = f"{recall:.5f}" if isinstance(recall, (int, float)) else recall  # not 0.9712000000000001
            print(f"Serving index: {idx.get('kind')} {idx.get('params')}  recall@K {shown}")
    uri = tracking_uri()
    if uri.startswith("sqlite:"):
        print(f"\nOpen the MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000")
    else:
        print(f"\nMLflow tracking server: {uri}")
