"""Where a DAG run's Spark time goes, from Spark's own event logs: per Airflow task and per Spark stage.

    .venv/bin/python benchmarks/spark_profile.py <event log folder> [--airflow-db <airflow.db>] [--top 5]

``benchmarks/run.py`` turns event logs on for its DAG run (``spark.eventLog.enabled`` in a
``spark-defaults.conf`` under ``$SPARK_CONF_DIR``, read by the in-process session and by every
spark-submit alike) and renders this profile into BENCHMARKS.md. Each completed Spark stage is
counted under the Airflow task that was running when the stage was submitted. The figures are
Spark's task metrics summed over the stage's tasks: executor run time (the tasks' wall time, so up
to cores x wall), JVM CPU and GC time, shuffle bytes written and read, bytes spilled (in memory
before spilling, and on disk), Parquet bytes read and written. Python workers' CPU time is not in
Spark's metrics; ``benchmarks/run.py`` samples it from the ``pyspark.daemon`` processes.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Stage", "read_stages", "task_instances", "task_windows", "owner", "by_task", "by_job", "heaviest"]

# Spark accumulable name -> (our field, divisor to seconds or MB)
_METRICS = {
    "internal.metrics.executorRunTime": ("run_s", 1e3),
    "internal.metrics.executorCpuTime": ("cpu_s", 1e9),
    "internal.metrics.jvmGCTime": ("gc_s", 1e3),
    "internal.metrics.shuffle.write.bytesWritten": ("shuffle_write_mb", 2**20),
    "internal.metrics.shuffle.read.localBytesRead": ("shuffle_read_mb", 2**20),
    "internal.metrics.shuffle.read.remoteBytesRead": ("shuffle_read_mb", 2**20),
    "internal.metrics.memoryBytesSpilled": ("spill_memory_mb", 2**20),
    "internal.metrics.diskBytesSpilled": ("spill_disk_mb", 2**20),
    "internal.metrics.input.bytesRead": ("input_mb", 2**20),
    "internal.metrics.output.bytesWritten": ("output_mb", 2**20),
}
SUMS = ["run_s", "cpu_s", "gc_s", "shuffle_write_mb", "shuffle_read_mb", "spill_memory_mb", "spill_disk_mb",
        "input_mb", "output_mb"]


@dataclass
class Stage:
    """One completed Spark stage attempt and its summed task metrics."""

    app: str
    stage_id: int
    name: str
    tasks: int
    submitted: float  # epoch seconds
    completed: float
    metrics: dict[str, float] = field(default_factory=dict)
    job: str = ""  # the description of the job that ran it (pipeline.spark.jobs), or ""

    @property
    def wall_s(self) -> float:
        return self.completed - self.submitted


def _lines(path: Path) -> Iterator[str]:
    """The JSON lines of one event log file, plain or compressed (Spark 4 writes zstd by default)."""
    if path.suffix == ".zstd":
        import zstandard  # installed with the pinned set (an MLflow dependency)

        with path.open("rb") as raw:
            yield from io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
    elif path.suffix in {".lz4", ".snappy", ".lzf"}:
        raise SystemExit(f"{path}: event logs compressed with {path.suffix[1:]} cannot be read here; "
                         "set spark.eventLog.compression.codec=zstd or spark.eventLog.compress=false")
    else:
        with path.open(encoding="utf-8") as fh:
            yield from fh


def _files(folder: Path) -> list[Path]:
    """Every event log under ``folder``: single files and rolling ``eventlog_v2_*`` folders, in order."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_dir() and p.name.startswith("eventlog_v2_"):
            out += sorted((f for f in p.iterdir() if f.name.startswith("events_")),
                          key=lambda f: int(f.name.split("_")[1]))
        elif p.is_file() and not p.name.startswith(".") and not p.name.endswith(".crc"):
            out.append(p)
    return out


def read_stages(folder: Path) -> list[Stage]:
    """Every completed stage in every application's event log under ``folder``."""
    stages: list[Stage] = []
    group, described = None, {}  # described: stage id -> its job's description, per application
    for path in _files(folder):
        owner = path if path.parent == folder else path.parent  # a rolling log's files share a folder
        if owner != group:  # the next application
            group, app, described = owner, owner.name, {}
        for line in _lines(path):
            if '"Event":"SparkListenerApplicationStart"' in line:
                app = json.loads(line).get("App Name", app)
            if '"Event":"SparkListenerJobStart"' in line:
                job = json.loads(line)
                text = (job.get("Properties") or {}).get("spark.job.description") or ""
                described.update(dict.fromkeys(job.get("Stage IDs", []), text))
            if '"Event":"SparkListenerStageCompleted"' not in line:
                continue
            info = json.loads(line)["Stage Info"]
            if "Completion Time" not in info or "Submission Time" not in info:
                continue
            metrics = dict.fromkeys(SUMS, 0.0)
            for acc in info.get("Accumulables", []):
                if (name := acc.get("Name")) in _METRICS:
                    key, unit = _METRICS[name]
                    metrics[key] += float(acc.get("Value") or 0) / unit
            stages.append(Stage(app, info["Stage ID"], info["Stage Name"], info["Number of Tasks"],
                                info["Submission Time"] / 1e3, info["Completion Time"] / 1e3, metrics,
                                described.get(info["Stage ID"], "")))
    return sorted(stages, key=lambda s: s.submitted)


def task_instances(airflow_db: Path, dag_id: str = "music_recs_nightly") -> list[tuple[str, float, float, str]]:
    """(task name, start, end, state) of every task instance of the last run of ``dag_id``, by start.

    Times are epoch seconds (NaN where Airflow has none); a mapped task is named ``task [its map index]``.
    """
    import datetime as dt

    def epoch(stamp: str | None) -> float:
        return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.timezone.utc).timestamp() if stamp else math.nan

    con = sqlite3.connect(airflow_db)
    (run_id,) = con.execute("select run_id from dag_run where dag_id=? order by id desc limit 1", (dag_id,)).fetchone()
    rows = con.execute("select task_id, map_index, rendered_map_index, start_date, end_date, state from task_instance "
                       "where dag_id=? and run_id=? order by start_date", (dag_id, run_id)).fetchall()
    return [(t if i < 0 else f"{t} [{r or i}]", epoch(s), epoch(e), state) for t, i, r, s, e, state in rows]


def task_windows(airflow_db: Path, dag_id: str = "music_recs_nightly") -> list[tuple[str, float, float]]:
    """(task name, start, end) of every task instance of the last run of ``dag_id`` that has both."""
    return [(name, t0, t1) for name, t0, t1, _ in task_instances(airflow_db, dag_id)
            if not (math.isnan(t0) or math.isnan(t1))]


def owner(stage: Stage, windows: list[tuple[str, float, float]]) -> str:
    """The task that was running when ``stage`` was submitted (the first such window), or "(no task)"."""
    return next((name for name, t0, t1 in windows if t0 <= stage.submitted <= t1), "(no task)")


def by_task(stages: list[Stage], windows: list[tuple[str, float, float]]) -> list[dict]:
    """One row per task that ran Spark stages: their count, tasks and summed metrics; the rest as "(no task)"."""
    rows: dict[str, dict] = {}
    for s in stages:
        task = owner(s, windows)
        row = rows.setdefault(task, {"task": task, "Spark stages": 0, "Spark tasks": 0, **dict.fromkeys(SUMS, 0.0)})
        row["Spark stages"] += 1
        row["Spark tasks"] += s.tasks
        for k in SUMS:
            row[k] += s.metrics[k]
    order = [name for name, _, _ in windows] + ["(no task)"]
    return sorted(rows.values(), key=lambda r: order.index(r["task"]))


def by_job(stages: list[Stage], windows: list[tuple[str, float, float]]) -> list[dict]:
    """One row per (task, job description): where inside a task the Spark time went, in the order it ran."""
    rows: dict[tuple[str, str], dict] = {}
    for s in stages:
        task = owner(s, windows)
        row = rows.setdefault((task, s.job or "(not described)"),
                              {"task": task, "jobs": s.job or "(not described)", "Spark stages": 0,
                               "stage_s": 0.0, **dict.fromkeys(SUMS, 0.0)})
        row["Spark stages"] += 1
        row["stage_s"] += s.wall_s
        for k in SUMS:
            row[k] += s.metrics[k]
    return list(rows.values())


def heaviest(stages: list[Stage], windows: list[tuple[str, float, float]], task: str, top: int = 5) -> list[Stage]:
    """The ``top`` stages of ``task`` by executor run time."""
    inside = [s for s in stages if owner(s, windows) == task]
    return sorted(inside, key=lambda s: -s.metrics["run_s"])[:top]


COLUMNS = ["task", "Spark stages", "Spark tasks", "run_s", "cpu_s", "gc_s", "shuffle_write_mb", "shuffle_read_mb",
           "spill_memory_mb", "spill_disk_mb", "input_mb", "output_mb"]
JOB_COLUMNS = ["task", "jobs", "Spark stages", "stage_s", "run_s", "cpu_s", "gc_s", "shuffle_write_mb",
               "shuffle_read_mb", "spill_disk_mb", "input_mb", "output_mb"]
HEADERS = {"stage_s": "stages' wall s", "run_s": "executor run s", "cpu_s": "JVM CPU s", "gc_s": "GC s",
           "shuffle_write_mb": "shuffle write MB",
           "shuffle_read_mb": "shuffle read MB", "spill_memory_mb": "spilled (memory) MB",
           "spill_disk_mb": "spilled (disk) MB", "input_mb": "input MB", "output_mb": "output MB"}


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _measure import table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", type=Path, help="spark.eventLog.dir")
    ap.add_argument("--airflow-db", type=Path, help="attribute stages to this Airflow database's last DAG run")
    ap.add_argument("--top", type=int, default=5, help="the heaviest stages to list per task")
    a = ap.parse_args()
    stages = read_stages(a.events)
    windows = task_windows(a.airflow_db) if a.airflow_db else [("(all)", 0.0, float("inf"))]
    rows = by_task(stages, windows)
    print(table([{HEADERS.get(k, k): v for k, v in r.items()} for r in rows], [HEADERS.get(c, c) for c in COLUMNS]))
    print()
    print(table([{HEADERS.get(k, k): v for k, v in r.items()} for r in by_job(stages, windows)],
                [HEADERS.get(c, c) for c in JOB_COLUMNS]))
    for r in rows:
        print(f"\n{r['task']}: heaviest stages")
        for s in heaviest(stages, windows, r["task"], a.top):
            print(f"  {s.wall_s:7.1f} s wall {s.metrics['run_s']:7.1f} s run  {s.tasks:4d} tasks  "
                  f"shuffle w/r {s.metrics['shuffle_write_mb']:8.1f}/{s.metrics['shuffle_read_mb']:8.1f} MB  "
                  f"[{s.app}] {s.job + ': ' if s.job else ''}{s.name}")


if __name__ == "__main__":
    main()
