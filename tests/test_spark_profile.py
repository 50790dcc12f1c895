"""benchmarks/spark_profile.py reads Spark's own event logs into a profile per task; run.py renders it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str, file: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def profile():
    return _module("bench_spark_profile", "spark_profile.py")


@pytest.fixture(scope="module")
def run():
    return _module("bench_run", "run.py")


@pytest.mark.spark
def test_a_real_applications_event_log_gives_its_shuffle_and_stages_under_the_task_that_ran_them(
        profile, run, tmp_path):
    """Event logs turned on the way benchmarks/run.py does it (spark-defaults.conf under SPARK_CONF_DIR),
    read back: a two-stage group-by writes and reads the same shuffle bytes; its stages count under the
    window they were submitted in, and nothing under a window before them; the jobs started inside
    ``pipeline.spark.jobs`` carry its name and the jobs after it none."""
    home = tmp_path / "home"
    env = {**os.environ, "SPARK_CONF_DIR": str(run._event_log_conf(home)), "PYSPARK_PYTHON": sys.executable}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    script = textwrap.dedent("""
        import sys
        from pyspark.sql import SparkSession, functions as F
        from pipeline.spark import jobs
        spark = SparkSession.builder.master("local[2]").appName("profile-test").getOrCreate()
        df = spark.range(200_000).select((F.col("id") % 1000).alias("k"), F.col("id").alias("v"))
        with jobs(spark, "test: sum by key"):
            df.repartition(4).groupBy("k").agg(F.sum("v")).write.parquet(sys.argv[1])
        spark.read.parquet(sys.argv[1]).count()
        spark.stop()
    """)
    t0 = time.time()
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], env=env, check=True, timeout=300)
    t1 = time.time()

    stages = profile.read_stages(home / "spark-events")
    assert stages and {s.app for s in stages} == {"profile-test"}
    assert all(t0 - 1 <= s.submitted <= s.completed <= t1 + 1 for s in stages)
    written = sum(s.metrics["shuffle_write_mb"] for s in stages)
    read = sum(s.metrics["shuffle_read_mb"] for s in stages)
    assert written > 0 and read == pytest.approx(written)
    assert sum(s.metrics["output_mb"] for s in stages) > 0
    assert all(s.metrics["run_s"] > 0 and s.tasks >= 1 for s in stages)

    rows = profile.by_task(stages, [("before", t0 - 100, t0 - 50), ("job", t0 - 1, t1 + 1)])
    assert [r["task"] for r in rows] == ["job"]
    assert rows[0]["Spark stages"] == len(stages)
    assert rows[0]["shuffle_write_mb"] == pytest.approx(written)
    named = {r["jobs"]: r for r in profile.by_job(stages, [("job", t0 - 1, t1 + 1)])}
    assert set(named) == {"test: sum by key", "(not described)"}  # the name ends with its block
    assert named["test: sum by key"]["shuffle_write_mb"] == pytest.approx(written, rel=0.01)  # the count: 1 row a task
    assert named["(not described)"]["input_mb"] > 0  # the count after the block read what the block wrote
    assert profile.heaviest(stages, [("job", t0 - 1, t1 + 1)], "job", 1)[0].metrics["run_s"] == max(
        s.metrics["run_s"] for s in stages)


def test_the_profile_of_each_run_is_kept_and_shown_side_by_side(run):
    """A result with a profile renders its table and heaviest stages; with two profiled runs in the
    history, a task's figures appear once per run (before and after)."""
    row = {"task": "dedup_and_map", "Spark stages": 12, "Spark tasks": 300, "run_s": 150.0, "cpu_s": 120.0,
           "gc_s": 3.0, "python_cpu_s": 20.0, "shuffle_write_mb": 900.0, "shuffle_read_mb": 900.0,
           "spill_memory_mb": 0.0, "spill_disk_mb": 0.0, "input_mb": 300.0, "output_mb": 200.0}
    split = {"users": 2, "tracks": 3, "interactions": 4}
    result = {"n": 10, "started": "2026-12-05 00:00", "run": "`benchmarks/run.py` on 2026-12-05 00:00 UTC.",
              "synth_s": 1.0, "synth_peak_mb": 1.0, "dag_s": 60.0, "dag_peak_mb": 1.0,
              "tasks": [{"stage": "dedup_and_map", "seconds": 80.0, "peak MB": 1.0}],
              "split": {"train": split, "val": split, "test": split},
              "ingest": {"rows_in": 10, "rows_out": 10, "duplicates": 0, "quarantined": 0, "n_users_mapped": 2,
                         "n_tracks_mapped": 3},
              "test": {"best": "als", "metrics": {"test_map_at_100": 0.1}, "baseline_metrics": {}},
              "facts": {"users": 2, "tracks": 3, "pairs": 4}, "components": [],
              "profile": [row],
              "profile_heaviest": {"dedup_and_map": [{"stage": "parquet at X [music-recs]", "wall_s": 30.0,
                                                      "tasks": 8, **{k: row[k] for k in profile_keys()}}]}}
    entry = run.summary(result, commit="abc1234", host="h")
    assert entry["profile"]["dedup_and_map"]["python_cpu_s"] == 20.0
    later = {**entry, "started": "2026-12-05 01:00", "commit": "def5678",
             "profile": {"dedup_and_map": {**entry["profile"]["dedup_and_map"], "run_s": 75.0}}}
    text = run.render([result], [entry, later])
    assert "| dedup_and_map | 12 | 300 | 150 | 120 | 3.000 | 20.000 | 900 | 900 |" in text
    assert "parquet at X [music-recs]" in text
    side_by_side = [line for line in text.splitlines() if line.startswith("| dedup_and_map | 2026-12-05")]
    assert [line.split(" | ")[2] for line in side_by_side] == ["abc1234", "def5678"]
    assert " 150 " in side_by_side[0] and " 75.000 " in side_by_side[1]


def profile_keys() -> list[str]:
    return ["run_s", "cpu_s", "gc_s", "shuffle_write_mb", "shuffle_read_mb", "spill_memory_mb", "spill_disk_mb",
            "input_mb", "output_mb"]
