"""The served index at the seed's catalogue sizes: what build_index does, on seed-shaped factors.

    flock /tmp/bench.lock .venv/bin/python benchmarks/ann_scale.py [--tracks 1310083 6300000 21800000]
        [--queries 200] [--kinds annoy_dot,hnsw_ip,hnsw_aug,ivf_sq8_rerank] [--norms flat]

For each catalogue size, in one run: item factors shaped like an ALS fit on listening data
(``topk_scale.factors``: taste clusters, norms growing with popularity, so the long tail of rarely
played tracks has short vectors; rank 25), query vectors drawn from the same taste clusters (they
stand for fold-in vectors of new listeners: no training vector is a query), then ``ann.tune``
exactly as ``build_index`` calls it with the DAG's default index grid (every setting measured on
a 200,000-track sample, the winner built at full size and its query-time effort raised until
recall@100 against exact search is at least 0.95). Exact search is measured on the same queries
in the same run. The table goes to stdout and to ``benchmarks/results/ann-scale.md``; each size is
a line in ``benchmarks/results/history.jsonl`` (``"bench": "ann_scale"``).

``--norms flat`` gives every track a norm within a few percent of 1 (the same directions): the case
where ``norm_ranges`` cannot stop early and the choice has to fall to a graph or an inverted file.
Its table goes to ``benchmarks/results/ann-scale-flat.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, table  # noqa: E402
from topk_scale import factors  # noqa: E402

from pipeline import ann  # noqa: E402
from pipeline.runconfig import RunConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def flatten(items: np.ndarray, seed: int = 1, chunk: int = 1 << 20) -> np.ndarray:
    """The same directions with norms 1 +- 5%: no long tail of short vectors (in place)."""
    rng = np.random.default_rng(seed)
    for lo in range(0, len(items), chunk):
        part = items[lo : lo + chunk]
        part *= ((1.0 + 0.05 * rng.standard_normal(len(part))) / np.linalg.norm(part, axis=1)).astype(np.float32)[:, None]
    return items


def one_size(n: int, n_queries: int, kinds: tuple[str, ...] | None, norms: str = "seed") -> dict:
    cfg = RunConfig(index_kinds=kinds) if kinds else RunConfig()
    grid = cfg.index()
    users, items = factors(n, n_queries, seed=0)
    if norms == "flat":
        flatten(items)
    with tempfile.TemporaryDirectory() as tmp, measure() as m:
        t0 = time.perf_counter()
        choice = ann.tune(items, users, k=100, recall_target=grid.recall_target, out_dir=Path(tmp), kinds=grid.kinds,
                          annoy_trees=grid.annoy_trees, hnsw_M=grid.hnsw_M, hnsw_ef=grid.hnsw_ef,
                          hnsw_ef_construction=grid.hnsw_ef_construction, ivf_nprobe=grid.ivf_nprobe,
                          ivf_rerank=grid.ivf_rerank, sample=grid.sample)
        seconds = time.perf_counter() - t0
    exact = next(r for r in choice.table if r["kind"] == "exact" and r["stage"] == "full")
    c = choice.chosen
    return {"bench": "ann_scale", "norms": norms, "tracks": n, "queries": n_queries, "kinds": list(grid.kinds),
            "tune_s": seconds, "peak_mb": m.peak_mb, "kind": c["kind"], "params": c["params"],
            "recall": c["recall"], "p50_ms": c["p50_ms"], "p99_ms": c["p99_ms"], "exact_p50_ms": exact["p50_ms"],
            "exact_p99_ms": exact["p99_ms"], "speedup_p50": exact["p50_ms"] / c["p50_ms"], "build_s": c["build_s"],
            "bytes_per_track": c["bytes"] / n, "table": choice.table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, nargs="+", default=[1_310_083, 6_300_000, 21_800_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--kinds", help="index kinds (comma-separated) instead of the DAG's default")
    ap.add_argument("--norms", choices=("seed", "flat"), default="seed",
                    help="seed: norms grow with popularity (ALS on listening data); flat: every norm 1 +- 5%%")
    a = ap.parse_args()
    kinds = tuple(a.kinds.split(",")) if a.kinds else None
    started = dt.datetime.now(dt.timezone.utc)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = (f"Measured by `benchmarks/ann_scale.py` on {started:%Y-%m-%d %H:%M} UTC at {commit or 'an uncommitted tree'}; "
            f"{os.cpu_count()} cores, {platform.platform()}; load average at start {os.getloadavg()[0]:.2f}. "
            + ("Seed-shaped factors (rank 25)" if a.norms == "seed" else
               "Seed-shaped directions (rank 25) with flat norms (1 +- 5%)") + ", queries from the same taste clusters, recall@100 against exact search "
            "on the same queries; single-query p50/p99; build and bytes are the served index's at full size; "
            "tune s is the whole choice (sample grid, full-size build, verification) as build_index spends it.")
    rows, details = [], []
    for n in a.tracks:
        r = one_size(n, a.queries, kinds, a.norms)
        print(f"{n:,} tracks: {r['kind']} {r['params']} recall {r['recall']:.4f}, p50 {r['p50_ms']:.3f} ms "
              f"(exact {r['exact_p50_ms']:.1f} ms, {r['speedup_p50']:.0f}x), build {r['build_s']:.0f} s, "
              f"{r['bytes_per_track']:.0f} B/track, tune {r['tune_s']:.0f} s", flush=True)
        with (RESULTS / "history.jsonl").open("a") as f:
            f.write(json.dumps({k: v for k, v in r.items() if k != "table"} | {"started": f"{started:%Y-%m-%d %H:%M}",
                                "commit": commit or None, "host": platform.platform()}, default=str) + "\n")
        rows.append({"tracks": f"{n:,}", "served": f"{r['kind']} " + " ".join(f"{k}={v}" for k, v in r["params"].items()),
                     "recall@100": r["recall"], "p50 ms": r["p50_ms"], "p99 ms": r["p99_ms"],
                     "exact p50 ms": r["exact_p50_ms"], "x exact": r["speedup_p50"], "build s": r["build_s"],
                     "B/track": r["bytes_per_track"], "tune s": r["tune_s"], "peak MB": r["peak_mb"]})
        details.append((n, r["table"]))
    cols = list(rows[0])
    out = [head, "", table(rows, cols), ""]
    for n, t in details:
        out.append(f"Every measured setting at {n:,} tracks (stage: sample = on 200,000 tracks, full = whole catalogue):\n")
        out.append(table([{"stage": x["stage"], "kind": x["kind"],
                           "params": " ".join(f"{k}={v}" for k, v in x["params"].items()), "recall": x["recall"],
                           "p50_ms": x["p50_ms"], "build_s": x["build_s"], "MB": x["bytes"] / 2**20} for x in t],
                         ["stage", "kind", "params", "recall", "p50_ms", "build_s", "MB"]))
        out.append("")
    text = "\n".join(out)
    print("\n" + text)
    (RESULTS / ("ann-scale.md" if a.norms == "seed" else "ann-scale-flat.md")).write_text(text + "\n")


if __name__ == "__main__":
    main()
