"""Follow the output of ``airflow dags test``: one :class:`TaskResult` per finished task instance.

Airflow 3.3's ``DAG.test`` (``airflow/sdk/definitions/dag.py``, ``_run_task``) runs the task
instances one at a time inside the ``airflow dags test`` process and brackets each with

    [DAG TEST] starting task_id=<task> map_index=<n>
    [DAG TEST] running task <TaskInstance: <dag>.<task> <run id> [map_index=<n>] [<state>] ti_id=<uuid>>
    ...the task's own log (its stages' records, a spark-submit job's output)...
    Task instance state updated ... new_state=<state> ... ti_id=<uuid>     (the execution API)
    [DAG TEST] end task task_id=<task> map_index=<n>

and ends the run with ``DagRun Finished: ... state=<state>``. Seconds come from the timestamps
Airflow puts at the start of its lines (or, when a line has none, the time it was read); the
key figure is the last :func:`pipeline.progress.note` line inside the task's log.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from dataclasses import dataclass

from pipeline.progress import Note, read_note

__all__ = ["TaskResult", "DagTestFollower"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)(Z|[+-]\d\d:?\d\d)?\s")
_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
_RUNNING = re.compile(r"\[DAG TEST\] running task <TaskInstance: .*\bti_id=([0-9a-f-]+)")
_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")
_STATE = re.compile(r"Task instance state updated\b.*\bnew_state=(\w+)")
_TI_ID = re.compile(r"\bti_id=([0-9a-f-]+)")
_RUN_DONE = re.compile(r"DagRun Finished:.*\bstate=(\w+)")
# Airflow's own bookkeeping inside a task's bracket: left out of the tail shown on failure
_BOOKKEEPING = ("[DAG TEST]", "::group::", "::endgroup::", "Task instance state updated", "Task started",
                "Updating RenderedTaskInstanceFields", "Pushing xcom")


@dataclass(frozen=True)
class TaskResult:
    """A finished task instance: its state as Airflow recorded it, seconds, key figure and last log lines."""

    task_id: str
    map_index: int  # -1 for an unmapped task
    state: str  # success, failed, up_for_retry, ... ("unknown" when Airflow logged no new state)
    seconds: float
    note: Note | None  # the last progress note the task logged
    tail: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Airflow marked it a success and its note (if any) reports no failure."""
        return self.state == "success" and (self.note is None or self.note.ok)


class DagTestFollower:
    """Feed it the output of ``airflow dags test`` line by line; :meth:`feed` returns a result per finished task."""

    def __init__(self, tail_lines: int = 30) -> None:
        self.results: list[TaskResult] = []
        self.run_state: str | None = None  # from "DagRun Finished"
        self._tail_lines = tail_lines
        self._task: tuple[str, int] | None = None
        self._started = 0.0
        self._ti_id: str | None = None
        self._state: str | None = None
        self._note: Note | None = None
        self._tail: deque[str] = deque(maxlen=tail_lines)

    def feed(self, line: str, now: float | None = None) -> TaskResult | None:
        """Read one output line; ``now`` (seconds) stands in for the time of a line that carries no timestamp."""
        line = _ANSI.sub("", line.rstrip("\r\n"))
        at = _timestamp(line, now)
        if m := _START.search(line):
            self._begin((m[1], int(m[2])), at)
            return None
        if m := _END.search(line):
            return self._finish((m[1], int(m[2])), at)
        if m := _RUN_DONE.search(line):
            self.run_state = m[1]
            return None
        if self._task is None:
            return None
        if m := _RUNNING.search(line):
            self._ti_id = m[1]
        elif m := _STATE.search(line):
            ti = _TI_ID.search(line)
            if ti is None or self._ti_id is None or ti[1] == self._ti_id:
                self._state = m[1]
        elif (found := read_note(line)) is not None:
            self._note = found
        if not any(b in line for b in _BOOKKEEPING):
            self._tail.append(line)
        return None

    def _begin(self, task: tuple[str, int], at: float) -> None:
        self._task, self._started, self._ti_id, self._state, self._note = task, at, None, None, None
        self._tail = deque(maxlen=self._tail_lines)

    def _finish(self, task: tuple[str, int], at: float) -> TaskResult:
        started = self._started if self._task == task else at
        result = TaskResult(task_id=task[0], map_index=task[1], state=self._state or "unknown",
                            seconds=max(0.0, at - started), note=self._note, tail=tuple(self._tail))
        self.results.append(result)
        self._task = None
        return result


def _timestamp(line: str, now: float | None) -> float:
    m = _STAMP.match(line)
    if m is None:
        return now if now is not None else 0.0
    zone = m[2] if m[2] and m[2] != "Z" else "+00:00"
    return dt.datetime.fromisoformat(m[1] + zone).timestamp()
