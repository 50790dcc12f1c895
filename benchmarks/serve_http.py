"""Serving latency over HTTP: `mlflow models serve` on a bundle of seed-shaped size, p50/p99 per source.

    flock /tmp/bench.lock .venv/bin/python benchmarks/serve_http.py [--tracks 21800000] [--users 8000]
        [--requests 300] [--listens 200]

One run: seed-shaped factors (``topk_scale.factors``, rank 25) for ``--users`` known users and
``--tracks`` tracks become a bundle in the layout ``build_index`` writes (the model, every known
user's exact top-100, the track table and its key hashes, the popularity fallback, YᵀY, and the
served index chosen by ``ann.tune`` on the DAG's default grid); it is logged as the pipeline's
pyfunc to a throw-away MLflow store and served by ``mlflow models serve --env-manager local`` on
127.0.0.1. Each request is one user, sent one at a time as a client would, timed from request to
parsed answer:

- ``precomputed``: a known user by id (the answer is tonight's exact list);
- ``folded_in``: a new user sending ``--listens`` track keys (fold-in, then the served index);
- ``popularity``: an unknown user without listens.

The in-process answer time of the same requests is measured beside it (``Bundle.recommend``), so
the HTTP and JSON overhead reads off the difference. Writes ``benchmarks/results/serve-http.md``
and one line per run to ``benchmarks/results/history.jsonl`` (``"bench": "serve_http"``).
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
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _measure import table  # noqa: E402
from topk_scale import factors  # noqa: E402

from pipeline import ann  # noqa: E402
from pipeline.runconfig import RunConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
PARAMS = {"alpha": 1.0, "reg_param": 0.1, "confidence": "linear", "engine": "implicit", "rank": 25}


def write_bundle(out: Path, n_tracks: int, n_users: int, *, depth: int = 100, kinds: tuple[str, ...] | None = None) -> dict:
    """A bundle folder as build_index writes it, from seed-shaped factors; returns its bundle.json."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline import models
    from pipeline.foldin import gram
    from pipeline.indexing import FALLBACK_DEPTH, pd_hash

    users, items = factors(n_tracks, n_users, seed=0)
    out.mkdir(parents=True)
    model = models.FactorModel(user_factors=users, item_factors=items, item_mask=np.ones(n_tracks, dtype=bool),
                               params=dict(PARAMS))
    model.save(out / "model")
    t0 = time.perf_counter()
    lists = model.recommend(np.arange(n_users), depth)
    precompute_s = time.perf_counter() - t0
    pq.write_table(pa.table({"user_idx": pa.array(np.arange(n_users, dtype=np.int32)),
                             "items": pa.array(list(lists.astype(np.int32)))}), out / "precomputed.parquet")
    pq.write_table(pa.table({"user_id": [f"user-{i}" for i in range(n_users)],
                             "user_idx": pa.array(np.arange(n_users, dtype=np.int32))}), out / "users.parquet")
    ids = pa.array(np.arange(n_tracks, dtype=np.int32))
    keys = pc.binary_join_element_wise("track-", pc.cast(ids, pa.string()), "")
    pq.write_table(pa.table({"track_idx": ids, "track_key": keys, "artist_name": pc.binary_join_element_wise(
        "artist-", pc.cast(pc.divide(ids, 10), pa.string()), ""), "track_name": keys}), out / "tracks.parquet")
    hashes = pd_hash(keys.to_numpy(zero_copy_only=False))
    order = np.argsort(hashes, kind="stable")
    np.savez(out / "track_keys.npz", hash=hashes[order], row=order.astype(np.int64))
    np.save(out / "fallback.npy", np.argsort(-np.linalg.norm(items, axis=1), kind="stable")[:FALLBACK_DEPTH])
    np.save(out / "gram.npy", gram(items))
    grid = (RunConfig(index_kinds=kinds) if kinds else RunConfig()).index()
    queries = factors(1000, 200, seed=1)[0]  # new listeners from the same taste clusters, not trained vectors
    t0 = time.perf_counter()
    choice = ann.tune(items, queries, k=100, recall_target=grid.recall_target, out_dir=out.parent / "tuning",
                      kinds=grid.kinds, annoy_trees=grid.annoy_trees, hnsw_M=grid.hnsw_M, hnsw_ef=grid.hnsw_ef,
                      hnsw_ef_construction=grid.hnsw_ef_construction, ivf_nprobe=grid.ivf_nprobe,
                      ivf_rerank=grid.ivf_rerank, sample=grid.sample)
    tune_s = time.perf_counter() - t0
    ann.save_index(choice, items, out / "index")
    meta = {"k": 100, "protocol": "keep_seen", "precomputed_depth": depth, "params": PARAMS, "idmap_version": 0,
            "model_key": "serve-http-benchmark", "index": json.loads((out / "index" / "index.json").read_text()),
            "precompute_s": precompute_s, "tune_s": tune_s}
    (out / "bundle.json").write_text(json.dumps(meta, indent=1, default=str))
    return meta


def requests(n_users: int, n_tracks: int, n: int, listens: int) -> dict[str, list[dict]]:
    rng = np.random.default_rng(2)
    return {
        "precomputed": [{"user_id": f"user-{u}"} for u in rng.integers(0, n_users, n)],
        "folded_in": [{"user_id": f"new-{i}", "listens": [f"track-{t}" for t in rng.choice(n_tracks, listens, replace=False)]}
                      for i in range(n)],
        "popularity": [{"user_id": f"nobody-{i}"} for i in range(n)],
    }


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50 ms": float(np.percentile(ms, 50)), "p99 ms": float(np.percentile(ms, 99)), "mean ms": float(np.mean(ms))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=21_800_000)
    ap.add_argument("--users", type=int, default=8000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--listens", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kinds", help="index kinds to tune (comma-separated; default the DAG's grid): "
                    "benchmarks/ann_scale.py measures the choice, this one the serving")
    a = ap.parse_args()
    import mlflow

    from pipeline.serving import Bundle, MusicRecsModel, signature

    started = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory(dir=ROOT / "var") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        meta = write_bundle(tmp / "bundle", a.tracks, a.users, kinds=tuple(a.kinds.split(",")) if a.kinds else None)
        print(f"bundle of {a.tracks:,} tracks written in {time.perf_counter() - t0:.0f} s "
              f"(index {meta['index']['kind']} {meta['index']['params']})", flush=True)
        reqs = requests(a.users, a.tracks, a.requests, a.listens)
        t0 = time.perf_counter()
        bundle = Bundle(tmp / "bundle")
        load_s = time.perf_counter() - t0
        rows = []
        local = {}
        for source, records in reqs.items():
            ms = []
            for r in records:
                t = time.perf_counter()
                answer = bundle.recommend([r["user_id"]], a.k, [r.get("listens")])
                ms.append((time.perf_counter() - t) * 1000)
                assert set(answer["source"]) == {source}, (source, set(answer["source"]))
            local[source] = percentiles(ms)
        del bundle
        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        experiment = mlflow.create_experiment("serve-http", artifact_location=(tmp / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(name="model", python_model=MusicRecsModel(),
                                           artifacts={"bundle": str(tmp / "bundle")}, signature=signature(),
                                           pip_requirements=[])
        from cluster_fixtures import free_port

        port = free_port()
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
               "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        log = (tmp / "serve.log").open("w")
        server = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", info.model_uri, "--env-manager", "local",
                                   "-h", "127.0.0.1", "-p", str(port), "-w", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            t0 = time.perf_counter()
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.perf_counter() - t0 > 1800:
                        raise SystemExit(f"mlflow models serve did not start: see {tmp / 'serve.log'}")
                    time.sleep(1)
            serve_ready_s = time.perf_counter() - t0
            for source, records in reqs.items():
                ms = []
                for i, r in enumerate(records):
                    body = json.dumps({"dataframe_records": [r], "params": {"k": a.k}}).encode()
                    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                                 headers={"Content-Type": "application/json"})
                    t = time.perf_counter()
                    answer = json.load(urllib.request.urlopen(req, timeout=60))["predictions"]
                    if i >= 3:  # the first requests warm the server's caches
                        ms.append((time.perf_counter() - t) * 1000)
                    assert len(answer) == a.k and {x["source"] for x in answer} == {source}, (source, answer[:1])
                rows.append({"source": source, "tracks": f"{a.tracks:,}", **{f"HTTP {k}": v for k, v in percentiles(ms).items()},
                             **{f"in-process {k}": v for k, v in local[source].items()}})
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()
    head = (f"Measured by `benchmarks/serve_http.py --tracks {a.tracks} --users {a.users} --requests {a.requests} "
            f"--listens {a.listens} --k {a.k}` on {started:%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, "
            f"{platform.platform()}; load average at start {os.getloadavg()[0]:.2f}. Served index: "
            f"{meta['index']['kind']} {meta['index']['params']} (recall@100 {meta['index']['recall']:.4f} against exact "
            f"on new listeners); bundle load {load_s:.0f} s in process, `mlflow models serve` ready after "
            f"{serve_ready_s:.0f} s; exact top-100 of all {a.users:,} known users {meta['precompute_s']:.0f} s. "
            "One request at a time, each one user, timed from send to parsed JSON.")
    text = head + "\n\n" + table(rows, list(rows[0])) + "\n"
    print("\n" + text)
    (RESULTS / "serve-http.md").write_text(text)
    with (RESULTS / "history.jsonl").open("a") as f:
        f.write(json.dumps({"bench": "serve_http", "tracks": a.tracks, "users": a.users, "k": a.k,
                            "listens": a.listens, "started": f"{started:%Y-%m-%d %H:%M}", "host": platform.platform(),
                            "index": meta["index"]["kind"], "rows": rows}, default=float) + "\n")


if __name__ == "__main__":
    main()
