"""Every family in one nightly DAG run on real data, beside a wider grid of each library's own parameters.

    flock /tmp/bench.lock .venv/bin/python benchmarks/engines_dag.py [--families item_knn,bpr,...]
        [--out benchmarks/results]

Two runs of ``music_recs_nightly`` (``airflow dags test``, a fresh embedded home, local Spark,
SQLite) on HetRec Last.fm 2k from ../shared/data with ``families`` = popularity, ALS and every
engine family (neural MF only where torch is installed), each on its default grid (ALS too):
``random_user`` 0.8, K = 100, first with seen tracks kept, then with
``exclude_seen``. Then, on the first run's own split folder (both runs split alike: the split
does not depend on the protocol), every family's reference grid from ``benchmarks/engines.py``
is fitted and scored under both protocols, so each family's best validation MAP@100 in the DAG
run stands beside what a wider search over its library's parameters and input transforms
reaches on the same split (issues #21 and #42 ask for >= 0.9). ALS's reference is
``implicit``'s grid over factors, regularisation, alpha and confidence (the engines see the
same confidence). Writes ``engines-dag.md`` and ``engines-dag.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engines import DATA, K, best, families_asked, family_grids, local_spark, score  # noqa: E402

from pipeline.airflow_env import embedded_env, prepare  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROTOCOLS = (("kept", False, "seen tracks kept"), ("excluded", True, "`exclude_seen`"))


def dag_run(home: Path, env: dict[str, str], day: int, families: list[str], exclude_seen: bool) -> dict[str, Any]:
    """One ``airflow dags test`` of the nightly DAG on HetRec; its run folder, leaderboard and minutes."""
    conf = {"input_path": str(DATA), "split_strategy": "random_user", "split_fraction": 0.8,
            "k": K, "exclude_seen": exclude_seen, "families": ["popularity", "als", *families]}
    before = set((home / "runs").iterdir()) if (home / "runs").exists() else set()
    log = home / f"dags-test-{day}.log"
    t0 = time.perf_counter()
    with log.open("w") as fh:
        done = subprocess.run([str(BIN / "airflow"), "dags", "test", "music_recs_nightly",
                               f"2026-01-0{day}T03:00:00+00:00", "-c", json.dumps(conf)],
                              env=env, stdout=fh, stderr=subprocess.STDOUT)
    minutes = (time.perf_counter() - t0) / 60
    if done.returncode:
        sys.exit(f"the DAG run on HetRec failed (exit {done.returncode}); see {log}")
    run_dir = next(iter(set((home / "runs").iterdir()) - before))
    board = json.loads((run_dir / "select" / "leaderboard.json").read_text())
    tested = json.loads((run_dir / "test" / "metrics.json").read_text())
    print(f"DAG run (exclude_seen={exclude_seen}): {minutes:.1f} min, {len(board)} configurations, "
          f"served {tested['best']}", flush=True)
    return {"run_dir": str(run_dir), "minutes": round(minutes, 2), "board": board, "test": tested}


def family_of(row: dict[str, Any]) -> str:
    return row["params"].get("model")


def markdown(runs: dict[str, dict[str, Any]], reference: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    lines = []
    for protocol, _exclude, title in PROTOCOLS:
        run = runs[protocol]
        lines += [f"### {title}: DAG run of {run['minutes']:.1f} min, {len(run['board'])} configurations; "
                  f"served `{run['test']['best']}`", "",
                  "| family | DAG: best val MAP@100 [95% interval] | its config | reference grid: best val MAP@100 "
                  "(configs) | its config | DAG / reference |",
                  "|---|---:|---|---:|---|---:|"]
        rows = [r for r in run["board"] if r["status"] == "ok"]
        for family in dict.fromkeys(family_of(r) for r in rows):
            mine = max((r for r in rows if family_of(r) == family), key=lambda r: r["metrics"][f"val_map_at_{K}"])
            m = mine["metrics"]
            value = m[f"val_map_at_{K}"]
            interval = f" [{m[f'val_map_at_{K}_ci_low']:.4f}, {m[f'val_map_at_{K}_ci_high']:.4f}]"
            ref_rows = reference.get(family, {}).get("reference", [])
            ref = best(ref_rows, protocol) if ref_rows else None
            name = "als (Spark, in the DAG)" if family == "als" else family
            lines.append(f"| {name} | {value:.4f}{interval} | {mine['label']} | "
                         + (f"{ref[protocol]:.4f} ({len(ref_rows)}) | {ref['label']} | {value / ref[protocol]:.2f} |"
                            if ref else "- | - | - |"))
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="item_knn,bpr,lmf,lightfm,als_explicit,neural_mf",
                    help="comma-separated engine families beside popularity and ALS; neural_mf only where torch is")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--work", default=str(ROOT / "var" / "bench-engines-dag"))
    ap.add_argument("--reuse", action="store_true", help="read the two DAG runs already in --work, do not run them")
    ap.add_argument("--reference", help="a previous engines-dag.json (or engines.json) whose reference grids to reuse "
                                        "when its split is this run's (same sizes per part); otherwise they are "
                                        "fitted again")
    a = ap.parse_args()
    families = families_asked(a.families)
    home = Path(a.work)
    runs = reused(home) if a.reuse else dag_runs(home, families)
    if "neural_mf" not in {r["params"].get("model") for run in runs.values() for r in run["board"]}:
        families = [f for f in families if f != "neural_mf"]
    reference_on(runs, families, Path(a.out), Path(a.reference) if a.reference else None)


def dag_runs(home: Path, families: list[str]) -> dict[str, dict[str, Any]]:
    """Both protocols' DAG runs in a fresh embedded home."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {**os.environ, **embedded_env(home, repo=ROOT), "PIPELINE_DATA_ROOTS": str(DATA.parent),
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("MLFLOW_TRACKING_URI", None)  # the home's own embedded store
    prepare(env, repo=ROOT)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    return {protocol: dag_run(home, env, day, families, exclude)
            for day, (protocol, exclude, _title) in enumerate(PROTOCOLS, 1)}


def reused(home: Path) -> dict[str, dict[str, Any]]:
    """The two runs already in ``home``, in logical-date order (seen kept first), timed by Airflow's records."""
    import sqlite3

    with sqlite3.connect(home / "airflow" / "airflow.db") as db:  # first task's start to last task's end
        spans = db.execute("select min(start_date), max(end_date) from task_instance group by run_id "
                           "order by min(start_date)").fetchall()
    runs = {}
    for (protocol, _exclude, _title), run_dir, (start, end) in zip(PROTOCOLS, sorted((home / "runs").iterdir()), spans):
        minutes = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds() / 60
        runs[protocol] = {"run_dir": str(run_dir), "minutes": round(minutes, 2),
                          "board": json.loads((run_dir / "select" / "leaderboard.json").read_text()),
                          "test": json.loads((run_dir / "test" / "metrics.json").read_text())}
    return runs


def reference_on(runs: dict[str, dict[str, Any]], families: list[str], out: Path, previous: Path | None) -> None:
    """Every family's reference grid on the first run's split (or a previous file's, on the same split); the tables."""
    from pipeline.data import SplitData

    spark = local_spark("engines-dag-reference")
    t0 = time.perf_counter()
    data = SplitData(Path(runs["kept"]["run_dir"]) / "split")
    split_table = data.stats["table"]
    reference: dict[str, dict[str, list[dict[str, Any]]]] = {}
    reused_from = None
    if previous and previous.exists():
        old = json.loads(previous.read_text())
        if "data" in old:  # benchmarks/engines.py's results: its HetRec split is the DAG's
            old = {"split": old["data"]["hetrec"]["split"], "reference": old["data"]["hetrec"]["results"],
                   "measured": f"benchmarks/engines.py, {previous.name}"}
        if old.get("split") == split_table and set(families) <= set(old["reference"]):
            reference, reused_from = old["reference"], old.get("measured")
            print(f"reference grids of {previous} ({reused_from}): the same split", flush=True)
    for family, g in family_grids(spark, families).items() if not reference else ():
        print(f"{family} (reference grid on the DAG run's split):", flush=True)
        reference[family] = {"reference": score(g["reference"], g["fit"], data, {}, g.get("extra"))}
    spark.stop()
    text = (f"Measured by `benchmarks/engines_dag.py`: two runs of the nightly DAG on HetRec Last.fm 2k "
            f"(`random_user` 0.8, K = {K}, families popularity, als, {', '.join(families)}; "
            f"{runs['kept']['minutes']:.1f} and {runs['excluded']['minutes']:.1f} min), then each family's reference "
            "grid (`benchmarks/engines.py`) on the first run's split, every configuration fitted once and scored under "
            "both protocols"
            + (f" (reused from this script's run of {reused_from} on the same split, part by part the same users, "
               "tracks and interactions)" if reused_from else f" ({(time.perf_counter() - t0) / 60:.0f} min)")
            + ". The intervals are the runs' own per-user bootstrap 95% intervals.\n\n" + markdown(runs, reference))
    print(text)
    (out / "engines-dag.md").write_text(text)
    measured = reused_from or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (out / "engines-dag.json").write_text(json.dumps({"k": K, "families": families, "split": split_table,
                                                      "measured": measured, "runs": runs, "reference": reference},
                                                     indent=1, default=str))


if __name__ == "__main__":
    main()
