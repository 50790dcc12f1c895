"""What `pipeline demo` prints per task: progress notes, and reading `airflow dags test` output.

The two recordings in tests/data are excerpts of real `airflow dags test music_recs_nightly` runs
(Airflow 3.3): a successful one (dedup_and_map, one mapped als_sweep whose spark-submit job logged
its note, test_eval, the run's end) and one whose validate task failed on a missing input.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from pathlib import Path

from pipeline import progress
from pipeline.dagtest import DagTestFollower
from pipeline.demo import progress_line

DATA = Path(__file__).resolve().parent / "data"


def _follow(name: str) -> DagTestFollower:
    follower = DagTestFollower(tail_lines=30)
    with open(DATA / name, encoding="utf-8") as f:
        for line in f:
            follower.feed(line)
    return follower


def test_a_note_is_one_log_line_that_reads_back_even_inside_another_log_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("pipeline.progress")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        progress.note('1,234 rows kept, 5 quarantined "odd" {braces}')
        progress.note("rank=8: failed", ok=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    first, second = stream.getvalue().splitlines()
    assert progress.read_note(first) == ('1,234 rows kept, 5 quarantined "odd" {braces}', True)
    # a spark-submit job's line, re-logged by Airflow's SparkSubmitHook with its own prefix and suffix
    wrapped = f"2026-12-03T09:04:55.152172Z [info     ] {second} [airflow.task.hooks.SparkSubmitHook] loc=x.py:1"
    assert progress.read_note(wrapped) == ("rank=8: failed", False)
    assert progress.read_note("INFO pipeline.sweep: rank=20: val MAP@100 0.26882") is None
    assert progress.read_note("pipeline-progress {not json") is None


def test_a_successful_run_gives_each_task_its_state_seconds_and_figure():
    follower = _follow("dags_test_success.log")
    got = [(r.task_id, r.map_index, r.state, round(r.seconds, 2), r.note and r.note.figure) for r in follower.results]
    assert got == [  # seconds: the "end task" timestamp minus the "starting" one, read off the recording
        ("dedup_and_map", -1, "success", 44.16, "29,851 rows out, 171 duplicates dropped"),
        ("als_sweep", 3, "success", 79.86, "rank=20 reg=0.1 alpha=0.5: val MAP@100 0.2688"),
        ("test_eval", -1, "success", 0.64, "test MAP@100 0.2590"),
    ]
    assert all(r.ok for r in follower.results)
    assert follower.run_state == "success"


def test_a_failed_task_keeps_its_last_lines_without_airflows_bookkeeping():
    follower = _follow("dags_test_failure.log")
    [validate] = follower.results
    assert (validate.task_id, validate.state, validate.note, validate.ok) == ("validate", "failed", None, False)
    assert len(validate.tail) == 30
    assert validate.tail[-1].startswith("FileNotFoundError: ") and "interactions.parquet does not exist" in validate.tail[-1]
    assert not any("[DAG TEST]" in line or "::endgroup::" in line or "state updated" in line for line in validate.tail)
    assert follower.run_state == "failed"


def test_colours_are_ignored_and_a_line_without_timestamp_takes_the_time_it_was_read():
    follower = DagTestFollower()
    follower.feed("\x1b[32m[DAG TEST] starting task_id=split map_index=-1\x1b[0m\n", now=100.0)
    follower.feed("Task instance state updated new_state=up_for_retry ti_id=abc\n", now=101.0)
    result = follower.feed("[DAG TEST] end task task_id=split map_index=-1\n", now=103.5)
    assert (result.task_id, result.state, result.seconds, result.ok) == ("split", "up_for_retry", 3.5, False)


def test_the_progress_line_names_the_task_its_map_index_and_the_sweeps_tally():
    [dedup, als, _] = _follow("dags_test_success.log").results
    assert progress_line(dedup) == "  ok     dedup_and_map            44.2 s  29,851 rows out, 171 duplicates dropped"
    line = progress_line(als, Counter(done=3, failed=1))
    assert line.startswith("  ok     als_sweep [3]            79.9 s  rank=20 reg=0.1 alpha=0.5: val MAP@100 0.2688")
    assert line.endswith("(3 done, 1 failed)")
