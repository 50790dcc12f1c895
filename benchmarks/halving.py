"""The seed's 36-point ALS grid by successive halving beside the full grid: does it choose the same winner?

    flock /tmp/bench.lock .venv/bin/python benchmarks/halving.py [--datasets demo hetrec] [--rate 3]

For each dataset, two runs of the nightly DAG's stages in this process (``start`` → ``validate`` →
``dedup_and_map`` → ``split`` → ``popularity_sweep`` → every ALS rung → ``select_best``: the functions
the tasks call, each ALS configuration through the DAG's job file on ``local[2]``): the full grid, every
configuration for ``max_iter`` 10, and successive halving at ``--rate``. Both runs split alike (same
data, same seed), so their winners are compared paired, on the same validation users: the halving
winner's validation MAP@100 minus the full grid's, with its per-user bootstrap 95% interval.

Datasets: ``demo``, the log ``make demo`` trains on (200,000 synthetic listens, seed 0), seen tracks
kept as the seed did; ``hetrec``, HetRec Last.fm 2k from ../shared/data (``random_user`` 0.8,
``exclude_seen``, log confidence, as the quality test); ``seed-10m``, the 10M-listen seed-shaped log
``benchmarks/run.py --listens 10000000`` trains on. Writes ``<name>.md`` and ``<name>.json``.

At 10M the halving can come from the DAG itself: ``--halving-run`` takes a run folder of
``benchmarks/run.py --halving-rate 3`` (same data, same split, checked by comparing the validation
users) instead of fitting the halving again here, and ``--name full-grid-listens-10000000-halving-3``
puts the comparison under that run's section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HETREC = ROOT.parent / "shared" / "data" / "hetrec2011-lastfm-2k"
SEED_GRID = {"ranks": [10, 20, 25], "reg_params": [0.001, 0.01, 0.1], "alphas": [0.1, 0.5, 0.8, 1.2],
             "max_iters": [10]}
K = 100


def dataset_params(name: str, home: Path) -> dict[str, Any]:
    """The run params of a dataset (its input written under ``home`` where it is generated)."""
    if name == "demo":
        from pipeline import synth

        synth.generate(home / "data" / "demo", n_listens=200_000, seed=0)
        return {"input_path": str(home / "data" / "demo"), "input_format": "listenbrainz"}
    if name == "seed-10m":  # what `benchmarks/run.py --listens 10000000` generates and the DAG trains on
        from pipeline import synth

        synth.generate(home / "data" / "raw", shape="seed", n_listens=10_000_000, seed=0)
        return {"input_path": str(home / "data" / "raw"), "input_format": "listenbrainz"}
    if name == "hetrec":
        if not HETREC.exists():
            sys.exit(f"{HETREC} is missing: put HetRec Last.fm 2k there or leave hetrec out of --datasets")
        return {"input_path": str(HETREC), "input_format": "hetrec", "split_strategy": "random_user",
                "exclude_seen": True, "confidence": "log"}
    sys.exit(f"unknown dataset {name!r}: demo or hetrec")


def one_run(run_key: str, params: dict[str, Any]) -> dict[str, Any]:
    """The stages up to select_best; the leaderboard, the winner and the ALS sweep's seconds."""
    from pipeline import stages
    from pipeline.results import leaderboard

    ref = stages.RunRef(dag_id="music_recs_nightly", dag_run_id=run_key, run_key=run_key)
    stages.start(ref, params)
    splits = stages.split(ref, stages.dedup(ref, stages.validate(ref)))
    stages.popularity(ref, splits)
    t0 = time.perf_counter()
    fits = stages.als_local(ref)
    seconds = time.perf_counter() - t0
    best = stages.select(ref)
    board = leaderboard(ref.layout.results, K)
    row = next(r for r in board if r["key"] == best["key"])
    return {"run_key": run_key, "seconds": round(seconds, 1), "fits": len(fits),
            "iterations": sum(f["params"]["max_iter"] for f in fits), "winner": row,
            "als_rows": [r for r in board if r["params"].get("model") == "als"]}


def reused_run(run_dir: Path) -> dict[str, Any]:
    """A run already done (``--reuse-full``, ``--halving-run``): its leaderboard, winner and ALS seconds."""
    board = json.loads((run_dir / "select" / "leaderboard.json").read_text())
    als = [r for r in board if r["params"].get("model") == "als"]
    print(f"{run_dir}: reused (its ALS seconds are the fits' own, without Spark start-up)", flush=True)
    return {"run_key": run_dir.name, "seconds": round(sum(r["fit_seconds"] + r["eval_seconds"] for r in als), 1),
            "fits": len(als), "iterations": sum(r["params"]["max_iter"] for r in als), "winner": board[0],
            "als_rows": als, "reused": True}


def grid_point(row: dict[str, Any]) -> tuple:
    p = row["params"]
    return p["rank"], p["reg_param"], p["alpha"]


def compare(full: dict[str, Any], halving: dict[str, Any], seed: int) -> dict[str, Any]:
    """The halving winner minus the full grid's winner in validation MAP@K, paired over the same users."""
    from pipeline.evaluate import Scores
    from pipeline.intervals import paired_difference

    users_f, f = Scores.load_per_user(Path(full["winner"]["per_user"]))
    users_h, h = Scores.load_per_user(Path(halving["winner"]["per_user"]))
    if not np.array_equal(users_f, users_h):
        raise SystemExit("the two runs were scored on different validation users: their splits differ")
    d = paired_difference(h["map"], f["map"], seed=seed)
    full_row = next(r for r in full["als_rows"] if grid_point(r) == grid_point(halving["winner"]))
    return {"same_winner": grid_point(full["winner"]) == grid_point(halving["winner"]),
            "difference": {"mean": d.mean, "ci_low": d.low, "ci_high": d.high},
            "within_noise": d.high >= 0,  # not worse than the full grid's winner beyond noise
            "full_rank_of_halving_winner": 1 + [grid_point(r) for r in full["als_rows"]].index(
                grid_point(halving["winner"])),
            "halving_winner_in_full_grid": full_row["metrics"][f"val_map_at_{K}"]}


def markdown(results: dict[str, dict[str, Any]], rate: int) -> str:
    lines = ["| dataset | sweep | ALS fits | ALS iterations | ALS sweep min | winner | val MAP@100 [95% interval] |",
             "|---|---|---:|---:|---:|---|---:|"]
    for name, r in results.items():
        for which in ("full", "halving"):
            run = r[which]
            m = run["winner"]["metrics"]
            sweep = ("full grid" if which == "full"
                     else f"halving, rate {rate}, rung 0 at {run['first_rung_iterations']} it.")
            lines.append(f"| {name} | {sweep} | {run['fits']} | {run['iterations']} | {run['seconds'] / 60:.1f} | "
                         f"{run['winner']['label']} | {m[f'val_map_at_{K}']:.4f} [{m[f'val_map_at_{K}_ci_low']:.4f}, "
                         f"{m[f'val_map_at_{K}_ci_high']:.4f}] |")
    lines.append("")
    for name, r in results.items():
        c, d = r["compare"], r["compare"]["difference"]
        verdict = ("the same winner" if c["same_winner"] else
                   f"a different winner, #{c['full_rank_of_halving_winner']} of the full grid's "
                   f"({c['halving_winner_in_full_grid']:.4f} there at max_iter), "
                   + ("better beyond noise" if d["ci_low"] > 0 else
                      "within the winner's interval" if c["within_noise"] else "worse beyond noise"))
        lines.append(f"- {name}: {verdict}; halving winner minus full-grid winner, validation MAP@100 paired over "
                     f"the same users: {d['mean']:+.5f} [{d['ci_low']:+.5f}, {d['ci_high']:+.5f}]. "
                     f"{r['halving']['plan']}"
                     + (f"; the {_reused(r)} reused from an earlier run, so no speed ratio." if _reused(r)
                        else f"; ALS sweep {r['full']['seconds'] / r['halving']['seconds']:.1f}x faster than the "
                             "full grid in this run."))
    return "\n".join(lines)


def _reused(r: dict[str, Any]) -> str:
    """Which of the two runs was read back instead of run (``""``: both ran here, so their seconds compare)."""
    runs = (("full grid", "full"), ("halving", "halving"))
    return " and ".join(name for name, which in runs if r[which].get("reused"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["demo", "hetrec"])
    ap.add_argument("--rate", type=int, default=3)
    ap.add_argument("--budgets", type=int, nargs="+", default=[0],
                    help="halving_budget of each halving run beside the one full grid (0: the default plan)")
    ap.add_argument("--work", default=str(ROOT / "var" / "bench-halving"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--reuse-full", action="store_true",
                    help="take the full grid from an earlier run in --work instead of fitting it again")
    ap.add_argument("--halving-run", type=Path,
                    help="a run folder whose sweep was the halving (a DAG run of benchmarks/run.py --halving-rate, "
                         "on the same data): compared with the full grid instead of fitting the halving again")
    ap.add_argument("--als-applications", type=int, default=0,
                    help="the runs' als_applications (0: one Spark application per fit, as the DAG's default)")
    ap.add_argument("--name", default="halving", help="the results' file names: <name>.md and <name>.json")
    a = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_MASTER", "local[2]")
    from pipeline.runconfig import RunConfig

    results = {}
    for name in a.datasets:
        home = Path(a.work) / name
        reuse = a.reuse_full and (home / "runs" / f"{name}-full" / "select" / "leaderboard.json").exists()
        if not reuse:
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
        os.environ["PIPELINE_HOME"] = str(home)
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # the home's own embedded store
        if name == "hetrec":
            os.environ["PIPELINE_DATA_ROOTS"] = str(HETREC.parent)
        params = {**dataset_params(name, home), **SEED_GRID, "betas": [10, 1000], "k": K,
                  **({"als_applications": a.als_applications} if a.als_applications else {})}
        full = reused_run(home / "runs" / f"{name}-full") if reuse else one_run(f"{name}-full", params)
        print(f"{name} full grid: {full['fits']} fits, {full['seconds']:.0f} s, winner {full['winner']['label']}",
              flush=True)
        for budget in a.budgets:
            halving_params = {**params, "halving_rate": a.rate, **({"halving_budget": budget} if budget else {})}
            halving = (reused_run(a.halving_run) if a.halving_run
                       else one_run(f"{name}-halving-{budget or 'default'}", halving_params))
            plan = RunConfig.from_params(halving_params).als_plan()
            halving["plan"], halving["first_rung_iterations"] = str(plan), plan.iterations[0]
            print(f"{name} halving ({halving['plan']}): {halving['fits']} fits, {halving['seconds']:.0f} s, winner "
                  f"{halving['winner']['label']}", flush=True)
            label = name if len(a.budgets) == 1 else f"{name}, budget {budget or 'default'}"
            results[label] = {"full": full, "halving": halving, "compare": compare(full, halving, seed=0)}
    text = (f"Measured by `benchmarks/halving.py` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC: the "
            "seed's 36-point ALS grid (rank 10, 20, 25 × regParam 0.001, 0.01, 0.1 × alpha 0.1, 0.5, 0.8, 1.2; "
            "max_iter 10; Spark ALS on local[2], "
            + (f"at most {a.als_applications} application(s) per rung" if a.als_applications
               else "one application per fit as the DAG submits them by default") + "), once in full "
            f"and once by successive halving (`halving_rate` {a.rate}), on the same split. Both runs select by "
            "validation MAP@100 over every configuration they fitted.\n\n" + markdown(results, a.rate) + "\n")
    print(text)
    out = Path(a.out)
    (out / f"{a.name}.md").write_text(text)
    (out / f"{a.name}.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
