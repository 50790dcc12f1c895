"""Index benchmark: annoy (dot, angular on augmented vectors), HNSW (raw and augmented), IVF with exact
re-rank, norm ranges and exact single-user scoring on a
catalogue of >= 1M tracks with factors from a real ALS fit (implicit, on a synthetic log with planted
taste clusters), at recall@100 targets 0.9 / 0.95 / 0.99, measured in one run.

    .venv/bin/python benchmarks/ann.py [--listens 8000000] [--tracks 2500000] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, table  # noqa: E402

from pipeline import ann, synth  # noqa: E402
from pipeline.config import AlsConfig  # noqa: E402
from pipeline.models import als_implicit  # noqa: E402
from models import load_matrix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listens", type=int, default=8_000_000)
    ap.add_argument("--tracks", type=int, default=2_500_000)
    ap.add_argument("--users", type=int, default=8000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rank", type=int, default=25)
    ap.add_argument("--kinds", default=",".join(ann.KINDS), help="index kinds to measure (comma-separated)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synth.generate(Path(tmp) / "raw", n_listens=a.listens, n_tracks=a.tracks, n_users=a.users, seed=0)
        train = load_matrix(Path(tmp) / "raw")
        with measure() as fit:
            model = als_implicit.fit(train, AlsConfig(rank=a.rank, reg_param=0.1, alpha=1.0, max_iter=10, engine="implicit"))
        items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        rng = np.random.default_rng(0)
        queries = model.user_factors[rng.choice(train.shape[0], a.queries, replace=False)]
        with measure() as tuning:
            choice = ann.tune(items, queries, k=100, recall_target=0.95, out_dir=Path(tmp) / "tune",
                              annoy_trees=(50,), annoy_search_k=(50_000, 200_000, 500_000),
                              hnsw_M=(16, 32), hnsw_ef=(100, 200, 400), kinds=tuple(a.kinds.split(",")),
                              sample=10**12)  # every kind at full size: this table compares them
    print(f"\n{items.shape[0]:,} tracks x rank {a.rank} (implicit ALS fit {fit.seconds:.0f} s on {train.nnz:,} "
          f"user-track pairs); {a.queries} query users; top-100; tuning took {tuning.seconds:.0f} s, "
          f"peak {tuning.peak_mb:,.0f} MB; {os.cpu_count()} cores\n")
    rows = [{**r, "params": " ".join(f"{k}={v}" for k, v in r["params"].items()), "MB": r["bytes"] / 2**20}
            for r in choice.table]
    print(table(rows, ["kind", "params", "recall", "p50_ms", "p99_ms", "speedup_vs_exact", "build_s", "MB"]))
    print("\nfastest setting per recall target:")
    best = []
    for target in (0.9, 0.95, 0.99):
        for kind in ann.KINDS:
            ok = [r for r in choice.table if r["kind"] == kind and r["recall"] >= target]
            if ok:
                r = min(ok, key=lambda r: r["p50_ms"])
                best.append({"target": target, "kind": kind, "params": " ".join(f"{k}={v}" for k, v in r["params"].items()),
                             "recall": r["recall"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                             "speedup_vs_exact": r["speedup_vs_exact"]})
            else:
                best.append({"target": target, "kind": kind, "params": "not reached"})
    print(table(best, ["target", "kind", "params", "recall", "p50_ms", "p99_ms", "speedup_vs_exact"]))
    print(f"\nchosen for serving at recall >= 0.95: {choice.chosen['kind']} {choice.chosen['params']}")


if __name__ == "__main__":
    main()
