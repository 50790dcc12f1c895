"""The whole pipeline at growing scale, beside the seed's figures: writes BENCHMARKS.md.

    .venv/bin/python benchmarks/run.py --listens 1000000 --listens 10000000 [--out BENCHMARKS.md]

Each finished scale is also stored in ``benchmarks/results/listens-<N>.json`` (replacing that
scale's previous result), and BENCHMARKS.md is rendered from every stored scale, each section
naming the run, machine and load it was measured under; so a long scale can be run on its own.
Every finished run also appends one line of headline figures to ``benchmarks/results/history.jsonl``
(commit, host, DAG time and peak, engine and scorer speeds, test MAP), and each section ends with
the runs at its scale side by side: what varies from run to run and host to host, and what must not.

For each scale, in one run and on one machine:

1. a synthetic log in the seed's shape (``pipeline synth``), timed;
2. the nightly DAG end to end (``airflow dags test`` in a fresh home, local Spark, SQLite):
   wall time of every task from Airflow's own task records, and the peak resident memory of
   the whole process tree (Airflow, the Spark JVMs, spark-submit children) while it ran;
3. on that run's own training split: Spark ALS seconds per iteration beside ``implicit``;
   exact top-100 for every user beside Spark's ``recommendForUserSubset`` on a subset; and the
   DAG's own index tuning (annoy and HNSW builds and queries beside exact single-user scoring,
   recall@100 and precision@100 against exact, on the selected model's factors).

Every row carries the seed's figure beside it (179M listens, 8k users, 23M tracks on a
multi-node Dataproc cluster; annoy on an 8-core node). Rows measured here never reuse a
number from another run.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spark_profile  # noqa: E402
from _measure import measure, table  # noqa: E402

from pipeline.airflow_env import embedded_env, prepare  # noqa: E402
from pipeline.data import SplitData  # noqa: E402
from pipeline.paths import RunLayout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG_ID = "music_recs_nightly"
RESULTS = ROOT / "benchmarks" / "results"
HISTORY = RESULTS / "history.jsonl"

SEED = {
    "dag": "not reported (notebooks run by hand)",
    "als_sweep": "one fit: 8 min 37 s (10 iterations, multi-node)",
    "als_iter": "52 s per iteration (8 min 37 s / 10, multi-node)",
    "exact": "0.034 G scores/s (8k users x 23M tracks in 1 h 30 min 34 s)",
    "spark_recs": "the exhaustive run above used Spark",
    "annoy": "50 trees: add ~10 min + build 15 min 35 s; 7.9x exact at P@100 -17%",
    "hnsw_ip": "not tried",
}


PEAK_PARTS = "at the peak: JVMs / Python workers / other MB (file-backed)"


class TreeSampler:
    """Resident memory of a process and all its descendants, sampled every 100 ms with wall-clock times;
    every 2 s (``slow_every`` samples), the bytes in Spark's spill folder (shuffle and spilled blocks) and
    the tree's proportional set size (PSS: a page shared by k processes counts 1/k in each, so the sum is
    the memory the tree holds; summed resident sizes count a shared page once per process that maps it)."""

    def __init__(self, pid: int, spill: Path | None = None, slow_every: int = 20):
        self.proc = psutil.Process(pid)
        self.spill = spill
        self.slow_every = slow_every  # samples between two of the spill folder and PSS
        self.samples: list[tuple[float, int]] = []
        # per sample: JVMs, Python workers, other processes, file-backed pages
        self.parts: list[tuple[int, int, int, int]] = []
        self.spill_samples: list[tuple[float, int]] = []
        self.pss_samples: list[tuple[float, int]] = []
        self.python_samples: list[tuple[float, float]] = []  # CPU seconds of every Python worker so far
        self._workers: dict[int, float] = {}  # pyspark.daemon (and its forked workers) pid -> CPU seconds
        self._others: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total, jvm, workers, shared = 0, 0, 0, 0
        for p in self._tree():
            try:
                mem = p.memory_info()
                total += mem.rss
                shared += mem.shared  # file-backed and shared pages: mapped files, page cache a process touched
                if p.pid not in self._others:
                    if p.pid in self._workers or "pyspark.daemon" in " ".join(p.cmdline()):
                        cpu = p.cpu_times()
                        self._workers[p.pid] = cpu.user + cpu.system
                    else:
                        self._others.add(p.pid)
                if p.pid in self._workers:
                    workers += mem.rss
                elif p.name() == "java":
                    jvm += mem.rss
            except psutil.Error:
                pass
        self.parts.append((jvm, workers, total - jvm - workers, shared))
        return total

    def _tree(self) -> list[psutil.Process]:
        """The process and its descendants, each address space once: a child that still runs in its parent's
        memory (the JVM's ``posix_spawn`` of ``chmod`` and the like clones it, ``CLONE_VM``, until the exec) is
        left out, or each such moment would count the JVM twice."""
        return [self.proc, *(p for p in self.proc.children(recursive=True) if not _in_parent_memory(p))]

    def _pss(self) -> int:
        total = 0
        for p in self._tree():
            try:
                total += p.memory_full_info().pss  # /proc/<pid>/smaps_rollup: a few ms for a large JVM
            except psutil.Error:
                pass
        return total

    def _spill_bytes(self) -> int:
        total = 0
        for root, _, files in os.walk(self.spill):
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:  # Spark deletes shuffle files as it goes
                    pass
        return total

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self._rss()))
                self.python_samples.append((self.samples[-1][0], sum(self._workers.values())))
            except psutil.Error:
                return
            if n % self.slow_every == 0:
                self.pss_samples.append((time.time(), self._pss()))
                if self.spill is not None:
                    self.spill_samples.append((time.time(), self._spill_bytes()))
            n += 1
            time.sleep(0.1)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _peak_mb(samples: list[tuple[float, int]], start: float, end: float) -> float:
        return max((b for t, b in samples if start <= t <= end), default=0) / 2**20

    def peak_mb(self, start: float = 0.0, end: float = float("inf")) -> float:
        return self._peak_mb(self.samples, start, end)

    def peak_parts(self, start: float = 0.0, end: float = float("inf")) -> str:
        """What held the memory at the peak in [start, end]: ``JVMs / Python workers / other`` MB, and how much
        of it was file-backed (mapped files count in resident memory but the kernel can drop them)."""
        inside = [(rss, i) for i, (t, rss) in enumerate(self.samples) if start <= t <= end]
        if not inside:
            return ""
        jvm, workers, other, shared = (x / 2**20 for x in self.parts[max(inside)[1]])
        return f"{jvm:,.0f} / {workers:,.0f} / {other:,.0f} ({shared:,.0f})"

    def python_cpu_s(self, start: float, end: float) -> float:
        """CPU seconds the Python workers (``pyspark.daemon`` and the workers it forks) spent in [start, end]."""
        inside = [cpu for t, cpu in self.python_samples if start <= t <= end]
        before = [cpu for t, cpu in self.python_samples if t < start]
        return (inside[-1] - (before[-1] if before else 0.0)) if inside else 0.0

    def peak_pss_mb(self, start: float = 0.0, end: float = float("inf")) -> float:
        return self._peak_mb(self.pss_samples, start, end)

    def peak_spill_mb(self, start: float = 0.0, end: float = float("inf")) -> float:
        return self._peak_mb(self.spill_samples, start, end)


_KCMP = {"x86_64": 312, "aarch64": 272}.get(platform.machine())  # kcmp(2)'s syscall number
_LIBC = ctypes.CDLL(None, use_errno=True)


def _in_parent_memory(p: psutil.Process) -> bool:
    """Whether ``p`` shares its parent's address space (kcmp(2), ``KCMP_VM``): a thread-like child between a
    ``posix_spawn`` and its exec, whose resident size is its parent's."""
    try:
        return _KCMP is not None and _LIBC.syscall(_KCMP, p.ppid(), p.pid, 1, 0, 0) == 0
    except psutil.Error:
        return False


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ, **embedded_env(home, repo=ROOT),  # the embedded Airflow set-up on local[*]
        "SPARK_LOCAL_DIRS": str(home / "tmp" / "spark"),  # pipeline.spark.spill_dir(), sampled as "spill MB"
        "SPARK_CONF_DIR": str(_event_log_conf(home)),  # every Spark application of the run writes an event log
        "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


def _event_log_conf(home: Path) -> Path:
    """A ``spark-defaults.conf`` that turns Spark's event log on, into ``<home>/spark-events``.

    Spark's launcher reads it for the DAG's in-process session and for every spark-submit alike,
    so the pipeline's code runs as it always does; ``benchmarks/spark_profile.py`` reads the logs.
    """
    conf, events = home / "spark-conf", home / "spark-events"
    conf.mkdir(parents=True, exist_ok=True)
    events.mkdir(parents=True, exist_ok=True)
    (conf / "spark-defaults.conf").write_text(
        f"spark.eventLog.enabled true\nspark.eventLog.dir file://{events}\n")
    return conf


def _run(cmd: list[str], env: dict[str, str], log: Path, *, spill: Path | None = None) -> TreeSampler:
    """Run ``cmd`` to completion with its output in ``log``; return its memory (and spill folder) samples."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        with TreeSampler(proc.pid, spill) as sampler:
            rc = proc.wait()
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited {rc}; last lines of {log}:\n{tail}")
    return sampler


def _synth_args(shape: str = "seed") -> list[str]:
    """``--shape <shape>`` when this version of the generator has it (before ``--shape``: 8,000 users)."""
    helptext = subprocess.run([str(BIN / "pipeline"), "synth", "--help"], capture_output=True, text=True).stdout
    if shape != "seed" and shape not in helptext:
        raise SystemExit(f"--shape {shape}: this version's `pipeline synth` does not have it")
    return ["--shape", shape] if "--shape" in helptext else ["--users", "8000"]


def _variant(a: argparse.Namespace) -> str:
    """What sets a run apart from the standard one at its scale: a shape other than seed, successive halving,
    the implicit ALS engine."""
    parts = (([] if a.shape == "seed" else [a.shape]) + (["defaults"] if getattr(a, "dag_defaults", False) else [])
             + ([f"halving-{a.halving_rate}"] if a.halving_rate > 1 else [])
             + ([a.engine] if a.engine != "spark" else []))
    return "-".join(parts)


def _describe(variant: str) -> str:
    """``calibrated-halving-3-implicit`` -> ``calibrated shape, successive halving η=3, ALS engine implicit``
    (the parts in :func:`_variant`'s order; a shape has no dash)."""
    tokens = variant.split("-")
    shape = tokens[0] if tokens[0] not in ("", "defaults", "halving", "implicit") else "seed"
    rate = tokens[tokens.index("halving") + 1] if "halving" in tokens else None
    return ", ".join([f"{shape} shape", *(["the DAG's default ALS grid"] if "defaults" in tokens else []),
                      *([f"successive halving η={rate}"] if rate else []),
                      *(["ALS engine implicit"] if tokens[-1] == "implicit" else [])])


def _key(n: int, variant: str) -> str:
    """The name of a scale's results (``listens-<n>[-<variant>]``): the standard run keeps its old names."""
    return f"listens-{n}" + (f"-{variant}" if variant else "")


def task_rows(airflow_db: Path, sampler: TreeSampler) -> list[dict]:
    """One row per task instance of the last DAG run: seconds from Airflow, peak MB from the samples."""
    rows = []
    for name, t0, t1, state in spark_profile.task_instances(airflow_db, DAG_ID):
        if state == "skipped":  # never ran: a sweep mapped over no configuration (engine_sweep by default)
            continue
        peak = sampler.peak_mb(t0, t1)
        rows.append({"stage": name, "seconds": t1 - t0, "peak MB": peak or "(too short to sample)",
                     "peak PSS MB": sampler.peak_pss_mb(t0, t1) or "",
                     "spill MB": sampler.peak_spill_mb(t0, t1), "state": state, PEAK_PARTS: sampler.peak_parts(t0, t1)})
    return rows


def spark_profile_rows(home: Path, sampler: TreeSampler, top: int = 3) -> dict:
    """The run's Spark profile per task (``benchmarks/spark_profile.py``) with the Python workers' CPU seconds,
    and each task's ``top`` heaviest Spark stages by executor run time."""
    stages = spark_profile.read_stages(home / "spark-events")
    windows = spark_profile.task_windows(home / "airflow" / "airflow.db", DAG_ID)
    rows = spark_profile.by_task(stages, windows)
    span = dict((name, (t0, t1)) for name, t0, t1 in windows)
    for r in rows:
        r["python_cpu_s"] = sampler.python_cpu_s(*span[r["task"]]) if r["task"] in span else None
    heavy = {r["task"]: [{"stage": f"{s.job + ': ' if s.job else ''}{s.name} [{s.app}]", "wall_s": s.wall_s,
                          "tasks": s.tasks, **s.metrics}
                         for s in spark_profile.heaviest(stages, windows, r["task"], top)] for r in rows}
    return {"profile": rows, "profile_heaviest": heavy, "profile_jobs": spark_profile.by_job(stages, windows)}


def dag_fit(run_dir: Path) -> dict:
    """The DAG's own Spark ALS fit (an als_sweep result): params and fit seconds."""
    for f in sorted(RunLayout(run_dir).sweep.glob("*/result.json")):
        r = json.loads(f.read_text())
        if r.get("status") == "ok" and r["params"].get("model") == "als" and r["params"].get("engine") == "spark":
            return r
    raise RuntimeError(f"no successful Spark ALS fit under {RunLayout(run_dir).sweep}")


def components(run_dir: Path, *, rank: int, iters: int, subset_users: int, spark_als: str = "refit",
               dag_only: bool = False) -> tuple[list[dict], dict]:
    """Engines and scorers on the DAG run's own training split, each beside its reference.

    ``spark_als="dag"`` reads Spark's seconds per iteration from the DAG's own als_sweep fit
    (spark-submit, local[*], timed from reading train to the factors in numpy) instead of
    fitting again in this process, and fits one iteration only to have a model whose
    ``recommendForUserSubset`` is timed: at 179M listens a second full fit is a quarter of an hour.
    """
    import pandas as pd
    from pyspark.ml.recommendation import ALS
    from pipeline.config import AlsConfig
    from pipeline.models import als_implicit
    from pipeline.spark import get_session

    from pipeline.topk import topk

    data = SplitData(RunLayout(run_dir).split)
    train = data.train
    n_users, n_items = train.shape
    facts = {"users": n_users, "tracks": n_items, "pairs": int(train.nnz)}
    tuning = _tuning(run_dir)
    if dag_only:  # the DAG's own figures only: no engine or scorer is fitted again (a quarter hour at 179M)
        return index_rows(tuning), facts
    rows: list[dict] = []
    cfg = AlsConfig(rank=rank, reg_param=0.1, alpha=1.0, max_iter=iters, engine="implicit")
    with measure() as m_imp:
        model = als_implicit.fit(train, cfg)
    spark = get_session("benchmark", master="local[2]")  # the pipeline's settings: shuffle partitions, spill folder
    spark.sparkContext.setLogLevel("ERROR")
    ratings = (spark.read.parquet(str(data.train_path))
               .groupBy("user_idx", "track_idx").sum("play_count").withColumnRenamed("sum(play_count)", "rating")
               .cache())
    ratings.count()
    spark_iters = iters if spark_als == "refit" else 1
    als = ALS(rank=rank, regParam=0.1, alpha=1.0, maxIter=spark_iters, implicitPrefs=True, userCol="user_idx",
              itemCol="track_idx", ratingCol="rating", seed=0)
    with measure() as m_spark:
        spark_model = als.fit(ratings)
        spark_model.itemFactors.count()
    if spark_als == "refit":
        spark_s, spark_iter_s = m_spark.seconds, m_spark.seconds / iters
        rows.append({"what": f"Spark ALS fit, local[2], rank {rank}", "seconds": spark_s,
                     "s/iteration": spark_iter_s, "peak MB": m_spark.peak_mb, "seed": SEED["als_iter"]})
    else:
        fit = dag_fit(run_dir)
        spark_s = fit["fit_seconds"] * iters / fit["params"]["max_iter"]
        spark_iter_s = fit["fit_seconds"] / fit["params"]["max_iter"]
        rows.append({"what": f"Spark ALS fit in the DAG's als_sweep (local[*], rank {fit['params']['rank']}, "
                             f"{fit['params']['max_iter']} iterations, read to numpy)", "seconds": fit["fit_seconds"],
                     "s/iteration": spark_iter_s, "peak MB": "see als_sweep", "seed": SEED["als_iter"]})
    rows.append({"what": f"implicit ALS fit (reference), rank {rank}", "seconds": m_imp.seconds,
                 "s/iteration": m_imp.seconds / iters, "peak MB": m_imp.peak_mb,
                 "vs reference": f"Spark {spark_s / m_imp.seconds:.1f}x slower", "seed": "LightFM 18 min 23 s"})
    with measure() as m_top:
        topk(model.user_factors, model.item_factors, 100)
    exact_rate = n_users * n_items / m_top.seconds
    rows.append({"what": f"exact top-100, all {n_users:,} users x {n_items:,} tracks", "seconds": m_top.seconds,
                 "G scores/s": exact_rate / 1e9, "peak MB": m_top.peak_mb, "seed": SEED["exact"]})
    n_sub = min(subset_users, n_users)
    subset = spark.createDataFrame(pd.DataFrame({"user_idx": np.arange(n_sub, dtype="int32")}))
    with measure() as m_rec:
        spark_model.recommendForUserSubset(subset, 100).write.format("noop").mode("overwrite").save()
    rec_rate = n_sub * n_items / m_rec.seconds
    rows.append({"what": f"Spark recommendForUserSubset (reference), {n_sub:,} users", "seconds": m_rec.seconds,
                 "G scores/s": rec_rate / 1e9, "peak MB": m_rec.peak_mb,
                 "vs reference": f"exact {exact_rate / rec_rate:.0f}x faster", "seed": SEED["spark_recs"]})
    ratings.unpersist()
    spark.stop()

    rows += index_rows(tuning)
    return rows, facts


def _tuning(run_dir: Path) -> list[dict]:
    """The DAG's index tuning table; none when the served model has no vectors to index (popularity won)."""
    f = RunLayout(run_dir).index_tuning / "tuning.json"
    return json.loads(f.read_text()) if f.exists() else []


def index_rows(tuning: list[dict]) -> list[dict]:
    """The serving index's rows: the DAG's own build_index table, read, not measured twice.

    build_index tuned every kind against exact search over the selected model's item factors (folded-in
    validation users as queries): on a sample of the catalogue first when it is larger than
    ``index_sample``, then the winner at full size. Sample rows say so in their label.
    """
    rows: list[dict] = []
    exact_precision = next((r.get("precision") for r in tuning if r["kind"] == "exact" and r.get("stage") != "sample"),
                           None)
    labels = {"exact": "exact single-user scoring (reference)", "annoy_dot": "annoy dot",
              "annoy_angular_aug": "annoy angular, augmented", "hnsw_ip": "HNSW inner product",
              "hnsw_aug": "HNSW L2, augmented", "ivf_sq8_rerank": "IVF SQ8 + exact re-rank",
              "norm_ranges": "norm ranges (exact)"}
    seed_said = set()
    for r in tuning:
        family = "annoy" if r["kind"].startswith("annoy") else r["kind"]
        seed = {"annoy": SEED["annoy"], "hnsw_ip": SEED["hnsw_ip"]}.get(family, "") if family not in seed_said else ""
        seed_said.add(family)
        params = " ".join(f"{k}={v}" for k, v in r["params"].items() if k != "ef_construction")
        where = f" [sample of {r['catalogue']:,} tracks]" if r.get("stage") == "sample" else ""
        precision = r.get("precision")
        change = f"{precision / exact_precision - 1:+.0%}" if precision is not None and exact_precision else ""
        speed = f"{r['speedup_vs_exact']:.2g}x exact's speed" if r.get("speedup_vs_exact") else ""
        rows.append({"what": f"{labels.get(r['kind'], r['kind'])} {params}{where}".strip(), "build s": r["build_s"],
                     "query p50 ms": r["p50_ms"], "recall@100": r["recall"], "P@100 vs exact": change,
                     "vs reference": speed, "seed": seed})
    return rows


def index_grid(a: argparse.Namespace) -> dict:
    """The DAG params of build_index's grid given on the command line (the DAG's defaults otherwise)."""
    grid = {"index_kinds": a.index_kinds, "annoy_trees": a.annoy_trees, "hnsw_M": a.hnsw_M,
            "hnsw_ef_construction": a.hnsw_ef_construction}
    return {k: v for k, v in grid.items() if v is not None}


def one_scale(n: int, work: Path, a: argparse.Namespace) -> dict:
    home = work / _key(n, _variant(a))
    shutil.rmtree(home, ignore_errors=True)  # a fresh home: one DAG run, one Airflow database
    home.mkdir(parents=True)
    env = _env(home)
    raw = home / "data" / "raw"
    t0 = time.perf_counter()
    synth_mem = _run([str(BIN / "pipeline"), "synth", "--out", str(raw), "--listens", str(n), *_synth_args(a.shape)],
                     env, home / "synth.log")
    synth_s = time.perf_counter() - t0
    prepare(env, repo=ROOT)  # AIRFLOW_HOME with the minimal airflow.cfg
    _run([str(BIN / "airflow"), "db", "migrate"], env, home / "airflow-migrate.log")
    grid = {} if a.dag_defaults else {  # the standard runs keep their grid: their figures stay comparable
        "ranks": a.ranks, "reg_params": a.reg_params, "alphas": a.alphas, "max_iters": [a.iters],
        "confidence": a.confidence, "halving_rate": a.halving_rate,
        **({"halving_budget": a.halving_budget} if a.halving_budget else {})}
    conf = {"input_path": str(raw), "input_format": "listenbrainz", **grid, "recall_target": 0.95, **index_grid(a),
            **({"als_applications": a.als_applications} if a.als_applications else {}),
            **({"engine": a.engine} if a.engine != "spark" else {})}
    t0 = time.perf_counter()
    dag_mem = _run([str(BIN / "airflow"), "dags", "test", DAG_ID, "2026-01-01T03:00:00+00:00", "-c", json.dumps(conf)],
                   env, home / "dags-test.log", spill=Path(env["SPARK_LOCAL_DIRS"]))
    dag_s = time.perf_counter() - t0
    tasks = task_rows(home / "airflow" / "airflow.db", dag_mem)
    profile = spark_profile_rows(home, dag_mem)
    if any(t["state"] != "success" for t in tasks):
        raise RuntimeError(f"DAG run at {n} listens did not succeed: {tasks}")
    run_dir = next((home / "runs").iterdir())
    layout = RunLayout(run_dir)
    split_table = json.loads(SplitData(layout.split).stats_path.read_text())["table"]
    ingest_summary = json.loads(layout.ingest.summary.read_text())
    test = json.loads(layout.test_metrics.read_text())
    comp, facts = components(run_dir, rank=a.rank, iters=a.iters, subset_users=a.subset_users, spark_als=a.spark_als,
                             dag_only=a.dag_only)
    return {"n": n, "synth_s": synth_s, "synth_peak_mb": synth_mem.peak_mb(), "dag_s": dag_s,
            "dag_peak_mb": dag_mem.peak_mb(), "dag_peak_pss_mb": dag_mem.peak_pss_mb(),
            "dag_spill_mb": dag_mem.peak_spill_mb(), "tasks": tasks, **profile,
            "split": split_table, "ingest": ingest_summary,
            "test": test, "components": comp, "facts": facts}


def _versions() -> str:
    pkgs = ["apache-airflow", "pyspark", "mlflow", "great-expectations", "annoy", "hnswlib", "implicit", "numpy"]
    vs = []
    for p in pkgs:
        try:
            vs.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            vs.append(f"{p} (absent)")
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[:1]
    return ", ".join(vs) + (f"; {java[0]}" if java else "")


def _dag_grid() -> str:
    from pipeline.runconfig import RunConfig

    c = RunConfig()
    return (f"rank {list(c.ranks)} x reg {list(c.reg_params)} x alpha {list(c.alphas)}, {c.confidence} confidence, "
            f"{c.als_plan()}")


def run_facts(a: argparse.Namespace, started: str, load: tuple[float, float, float]) -> str:
    """One line naming the command, time, machine, versions and load of a benchmark run."""
    mem = psutil.virtual_memory().total / 2**30
    return (f"`benchmarks/run.py {' '.join(sys.argv[1:])}` on {started} UTC. Machine: {platform.machine()}, "
            f"{os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.platform()}, Python {platform.python_version()}; "
            f"{_versions()}. Load average when it started: {load[0]:.2f}. "
            + (f"The DAG's default ALS grid ({_dag_grid()})" if a.dag_defaults else
               f"Grid rank {a.ranks} x reg {a.reg_params} x alpha {a.alphas}, {a.iters} iterations, "
               f"{a.confidence} confidence"
               + (f", successive halving rate {a.halving_rate}" if a.halving_rate > 1 else ""))
            + (f", budget {a.halving_budget} iterations" if a.halving_budget else "")
            + (f", at most {a.als_applications} Spark application(s) per rung" if a.als_applications else "")
            + (f", ALS engine {a.engine}" if a.engine != "spark" else "")
            + f"; index grid {index_grid(a) or 'the DAG defaults'}.")


def _component(result: dict, prefix: str, key: str) -> float | None:
    return next((c[key] for c in result["components"] if c["what"].startswith(prefix) and key in c), None)


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "dags", "benchmarks/run.py"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return (out.stdout.strip() + ("+changes" if dirty else "")) if out.returncode == 0 else None


def summary(result: dict, *, commit: str | None, host: str | None) -> dict:
    """The headline figures of one finished scale: one line of ``history.jsonl``."""
    metrics = result["test"]
    return {
        "n": result["n"], **({"variant": result["variant"]} if result.get("variant") else {}),
        "started": result.get("started") or result["run"].split(" on ", 1)[1].split(" UTC", 1)[0],
        "commit": commit, "host": host,
        "dag_min": result["dag_s"] / 60, "dag_peak_mb": result["dag_peak_mb"], "dag_spill_mb": result.get("dag_spill_mb"),
        **({"dag_peak_pss_mb": result["dag_peak_pss_mb"]} if result.get("dag_peak_pss_mb") else {}),
        "spark_s_per_iter": _component(result, "Spark ALS fit", "s/iteration"),
        "implicit_s_per_iter": _component(result, "implicit ALS fit", "s/iteration"),
        "exact_gscores": _component(result, "exact top-100, all", "G scores/s"),
        "subset_gscores": _component(result, "Spark recommendForUserSubset", "G scores/s"),
        "test_map": metrics["metrics"].get("test_map_at_100"),
        "popularity_map": metrics["baseline_metrics"].get("test_map_at_100"),
        **({"profile": {r["task"]: {k: r.get(k) for k in PROFILE_HISTORY} for r in result["profile"]}}
           if result.get("profile") else {}),
    }


def append_history(entry: dict, path: Path = HISTORY) -> None:
    with path.open("a") as f:
        f.write(json.dumps(entry, default=float) + "\n")


def read_history(path: Path = HISTORY) -> list[dict]:
    """The whole-DAG runs of the history (other benchmarks' lines carry a ``bench`` name)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, filter(str.strip, lines)) if "bench" not in e]


def _opt(v: float | None, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _pair(a: float | None, b: float | None, fmt: str) -> str:
    """``a (b)``; empty when neither was measured (a ``--dag-only`` run)."""
    return "" if a is None and b is None else f"{_opt(a, fmt)} ({_opt(b, fmt)})"


def history_table(entries: list[dict]) -> str:
    rows = [{
        "run (UTC)": e["started"], "commit": e["commit"] or "not recorded", "host": e["host"] or "not recorded",
        "DAG min": _opt(e["dag_min"], ".1f"), "peak MB": _opt(e["dag_peak_mb"], ",.0f"),
        "peak PSS MB": _opt(e.get("dag_peak_pss_mb"), ",.0f"),
        "spill MB": _opt(e["dag_spill_mb"], ",.0f"),
        "Spark ALS s/it (implicit)": _pair(e["spark_s_per_iter"], e["implicit_s_per_iter"], ".2f"),
        "exact G scores/s (subset)": _pair(e["exact_gscores"], e["subset_gscores"], ".3f"),
        "test MAP@100 (popularity)": _pair(e["test_map"], e["popularity_map"], ".4f"),
    } for e in sorted(entries, key=lambda e: e["started"])]
    return table(rows, list(rows[0]))


PROFILE_HISTORY = ["Spark stages", "run_s", "cpu_s", "gc_s", "python_cpu_s", "shuffle_write_mb", "spill_disk_mb"]
PROFILE_HEADERS = {**spark_profile.HEADERS, "python_cpu_s": "Python workers CPU s"}


def profile_section(r: dict, runs: list[dict]) -> list[str]:
    """BENCHMARKS.md lines for one scale's Spark profile: this run's table and heaviest stages, then every
    recorded run's profile side by side (before and after a change)."""
    if not r.get("profile"):
        return []
    columns = [*spark_profile.COLUMNS[:6], "python_cpu_s", *spark_profile.COLUMNS[6:]]
    out = ["", "Spark's own metrics for each task of this run, from the event logs of every Spark application it "
           "started (`benchmarks/spark_profile.py`; a Spark stage counts under the task running when it was "
           "submitted). Executor run s is the tasks' summed wall time (up to 2x the stage's on 2 cores); the "
           "Python workers' CPU seconds are sampled from the `pyspark.daemon` processes:", "",
           table([{PROFILE_HEADERS.get(k, k): "" if v is None else v for k, v in row.items()} for row in r["profile"]],
                 [PROFILE_HEADERS.get(c, c) for c in columns]),
           ""]
    if r.get("profile_jobs"):  # runs from 2026-12-05: the pipeline names its Spark jobs (pipeline.spark.jobs)
        out += ["Within each task, by the name the pipeline gives its Spark jobs (the Spark UI shows the same names):",
                "", table([{PROFILE_HEADERS.get(k, k): v for k, v in row.items()} for row in r["profile_jobs"]],
                          [PROFILE_HEADERS.get(c, c) for c in spark_profile.JOB_COLUMNS]), ""]
    out += ["The heaviest Spark stages of each task by executor run time:", ""]
    rows = [{"task": task, "Spark stage": h["stage"], "stage s": h["wall_s"], "executor run s": h["run_s"],
             "tasks": h["tasks"], "shuffle write MB": h["shuffle_write_mb"], "shuffle read MB": h["shuffle_read_mb"],
             "spilled (disk) MB": h["spill_disk_mb"]}
            for task, heavy in r.get("profile_heaviest", {}).items() for h in heavy]
    out.append(table(rows, ["task", "Spark stage", "stage s", "executor run s", "tasks", "shuffle write MB",
                            "shuffle read MB", "spilled (disk) MB"]))
    profiled = [e for e in runs if e.get("profile")]
    if len(profiled) > 1:
        out += ["", "The Spark profile of every recorded run at this scale, task by task:", "",
                table([{"run (UTC)": e["started"], "commit": e.get("commit") or "not recorded", "task": task,
                        **{PROFILE_HEADERS.get(k, k): "" if v is None else v for k, v in p.items()}}
                       for task in dict.fromkeys(t for e in profiled for t in e["profile"])
                       for e in profiled if (p := e["profile"].get(task))],
                      ["task", "run (UTC)", "commit", *[PROFILE_HEADERS.get(k, k) for k in PROFILE_HISTORY]])]
    return out


def _stored() -> list[dict]:
    """Every scale's latest result in ``benchmarks/results/`` (``listens-<n>[-<variant>].json``)."""
    return [json.loads(f.read_text()) for f in sorted(RESULTS.glob("listens-*.json"))]


def render(results: list[dict], history: list[dict] | None = None) -> str:
    out = [
        "# Benchmarks",
        "",
        "Written by `benchmarks/run.py` from the latest result at each scale (`benchmarks/results/`). "
        "The seed column is the capstone's figure on 179M listens (8k users, 23M tracks) on a multi-node "
        "Dataproc cluster (annoy: one 8-core node). Every other number in a row and its reference were "
        "measured in the same run. Peak MB is the resident memory of the whole process tree (Airflow, Spark "
        "JVMs, spark-submit children) while the stage ran; spill MB, where given, the most that Spark's spill "
        "folder (`$PIPELINE_HOME/tmp/spark`: shuffle files and blocks spilled from memory) held meanwhile, "
        "sampled every 2 s.",
        "",
        "The standard runs at each scale keep the grid they always had (rank 25, regParam 0.1, alpha 0.5, 10 "
        "iterations, linear confidence, passed explicitly), so their figures stay comparable with their history. "
        "The DAG's own defaults changed with issue #42 (log confidence, rank 32 x regParam 0.1/0.3/1 x alpha "
        "0.3/1/3 at 15 iterations by successive halving, chosen on real play counts: "
        "benchmarks/results/engines.md): a user who sets nothing gets those, measured in the sections named "
        "\"the DAG's default ALS grid\" (`--dag-defaults`). Their times and test MAP are not comparable with the "
        "standard runs': another grid, another confidence, nine configurations instead of one.",
    ]
    for r in sorted(results, key=lambda r: (r.get("variant", ""), r["n"])):
        s, ing, variant = r["split"], r["ingest"], r.get("variant", "")
        out += [
            "",
            f"## {r['n']:,} synthetic listens ({_describe(variant)})",
            "",
            f"Measured by {r['run']}",
            "",
            f"Data: {ing['rows_in']:,} rows in, {ing['rows_out']:,} listens kept, {ing['duplicates']:,} duplicates, "
            f"{ing['quarantined']:,} quarantined; {ing['n_users_mapped']:,} users, {ing['n_tracks_mapped']:,} tracks. "
            f"Split (users / tracks / interactions): train {s['train']['users']:,} / {s['train']['tracks']:,} / "
            f"{s['train']['interactions']:,}; val {s['val']['users']:,} / {s['val']['tracks']:,} / "
            f"{s['val']['interactions']:,}; test {s['test']['users']:,} / {s['test']['tracks']:,} / "
            f"{s['test']['interactions']:,}.",
            "",
            f"Whole DAG (`airflow dags test`): **{r['dag_s'] / 60:.1f} min**, peak {r['dag_peak_mb']:,.0f} MB"
            + (f" (proportional set size, each shared page counted once: {r['dag_peak_pss_mb']:,.0f} MB)"
               if r.get("dag_peak_pss_mb") else "")
            + (f", Spark's spill folder at most {r['dag_spill_mb']:,.0f} MB. " if "dag_spill_mb" in r else ". ") +
            f"Generating the log took {r['synth_s']:.0f} s (peak {r['synth_peak_mb']:,.0f} MB). "
            f"Best model {r['test']['best']}: test MAP@100 {r['test']['metrics'].get('test_map_at_100', float('nan')):.4f} "
            f"vs popularity {r['test']['baseline_metrics'].get('test_map_at_100', float('nan')):.4f}.",
            "",
            table([{**t, "seed": SEED["als_sweep"] if t["stage"].startswith("als_sweep") else ""} for t in r["tasks"]],
                  ["stage", "seconds", "peak MB", *(["peak PSS MB"] if r.get("dag_peak_pss_mb") else []),
                   *(["spill MB"] if "dag_spill_mb" in r else []),
                   *([PEAK_PARTS] if any(PEAK_PARTS in t for t in r["tasks"]) else []), "seed"]),
            "",
            *([f"Engines and scorers on this run's train split ({r['facts']['users']:,} users x "
               f"{r['facts']['tracks']:,} tracks, {r['facts']['pairs']:,} user-track pairs; the index rows are the "
               "DAG's build_index tuning, validation users as queries):",
               "",
               table(r["components"], ["what", "seconds", "s/iteration", "G scores/s", "build s", "query p50 ms",
                                       "recall@100", "P@100 vs exact", "peak MB", "vs reference", "seed"])]
              if r["components"] else
              [f"The best model, {r['test']['best']}, has no vectors to index: build_index tuned no index, and this "
               "`--dag-only` run compared no engine or scorer."]),
        ]
        runs = [e for e in history or [] if e["n"] == r["n"] and e.get("variant", "") == variant]
        out += profile_section(r, runs)
        if runs:
            out += [
                "",
                "Every recorded run at this scale (`benchmarks/results/history.jsonl`; the section above is the "
                "latest). Data and quality depend only on the code and the generator's seed; times and memory "
                "vary with the host and its neighbours:",
                "",
                history_table(runs),
            ]
        if (against := RESULTS / f"full-grid-{_key(r['n'], variant)}.md").exists():  # benchmarks/halving.py
            out += ["", f"### Against the full grid (`{against.relative_to(ROOT)}`)", "", against.read_text().strip()]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listens", type=int, action="append", help="a scale to run (repeat); default 1M")
    ap.add_argument("--work", type=Path, default=ROOT / "var" / "bench", help="scratch folder (git-ignored)")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--ranks", type=int, nargs="+", default=[25])
    ap.add_argument("--reg-params", type=float, nargs="+", default=[0.1])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--shape", choices=["seed", "calibrated"], default="seed",
                    help="the synthetic log's shape (pipeline synth --shape); seed: what every earlier run measured")
    ap.add_argument("--halving-rate", type=int, default=1, help="the DAG's halving_rate (1: the plain grid)")
    ap.add_argument("--confidence", choices=["linear", "log"], default="linear",
                    help="the DAG's confidence (the standard runs keep linear, the DAG's default before issue #42)")
    ap.add_argument("--dag-defaults", action="store_true",
                    help="the DAG's own default ALS grid and halving: --ranks, --reg-params, --alphas, --iters, "
                         "--halving-rate, --halving-budget and --confidence are not passed")
    ap.add_argument("--halving-budget", type=int, help="the DAG's halving_budget (ALS iterations over every fit)")
    ap.add_argument("--als-applications", type=int, default=0,
                    help="the DAG's als_applications (Spark applications per ALS rung; 0: one per configuration)")
    ap.add_argument("--engine", choices=["spark", "implicit"], default="spark",
                    help="the DAG's ALS engine (implicit: the single-machine path; its results are kept apart)")
    ap.add_argument("--rank", type=int, default=25, help="rank for the engine and scorer comparisons")
    ap.add_argument("--subset-users", type=int, default=500)
    ap.add_argument("--spark-als", choices=["refit", "dag"], default="refit",
                    help="Spark ALS s/iteration: a second fit in this process (refit) or the DAG's own fit (dag)")
    ap.add_argument("--dag-only", action="store_true",
                    help="after the DAG, only its own figures (tasks, index tuning): no engine or scorer comparison")
    ap.add_argument("--index-kinds", nargs="+", help="build_index: kinds beside exact (DAG default: all)")
    ap.add_argument("--annoy-trees", type=int, nargs="+", help="build_index: annoy n_trees (DAG default: 10 50)")
    ap.add_argument("--hnsw-M", type=int, nargs="+", help="build_index: HNSW M (DAG default: 16 32)")
    ap.add_argument("--hnsw-ef-construction", type=int, help="build_index: HNSW ef_construction (DAG default: 200)")
    ap.add_argument("--render-only", action="store_true", help="rewrite --out from the stored results; run nothing")
    a = ap.parse_args()
    if a.engine != "spark" and not a.dag_only and a.spark_als == "dag":
        ap.error(f"--engine {a.engine} --spark-als dag: the DAG fits no Spark ALS to read; add --dag-only "
                 "or use --spark-als refit")
    if a.render_only:
        a.out.write_text(render(_stored(), read_history()))
        print(f"wrote {a.out}")
        return
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()
    commit = _commit()  # the code that runs, taken before the hours it may take
    RESULTS.mkdir(exist_ok=True)
    variant = _variant(a)
    for n in a.listens or [1_000_000]:
        result = {**one_scale(n, a.work, a), "run": run_facts(a, started, load), "started": started, "variant": variant}
        (RESULTS / f"{_key(n, variant)}.json").write_text(json.dumps(result, indent=1, default=float))
        append_history(summary(result, commit=commit, host=platform.platform()))
        a.out.write_text(render(_stored(), read_history()))  # rewritten after every finished scale, even if a later one fails
        print(f"{n:,} listens done; wrote {a.out}", flush=True)
    print(a.out.read_text())


if __name__ == "__main__":
    main()
