"""Task logs of an ``airflow dags test`` run, where the Airflow UI reads them.

``airflow dags test`` runs every task instance inside its own process and prints their logs to
its output; it writes no task log file. The UI then looks for the log on the worker's log
server (port 8793), which never ran: every Logs tab says "Could not read served logs …
Connection refused". :func:`write_task_logs` cuts the run's output at Airflow's own brackets
(``[DAG TEST] starting task_id=…`` … ``[DAG TEST] end task …``) into one file per task
instance, named by Airflow's default ``log_filename_template`` under ``base_log_folder``, so
the UI reads them as local files.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

__all__ = ["write_task_logs"]

_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
_RUNNING = re.compile(r"\[DAG TEST\] running task <TaskInstance: ([^.\s]+)\.(\S+) (\S+) ")
_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")


def _base_log_folder(airflow_home: Path) -> Path:
    return Path(os.environ.get("AIRFLOW__LOGGING__BASE_LOG_FOLDER") or airflow_home / "logs")


def _try_numbers(airflow_home: Path, run_id: str) -> dict[tuple[str, int], int]:
    """(task, map index) → try number from the embedded metadata DB (empty when it is not SQLite)."""
    db = airflow_home / "airflow.db"
    if os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or not db.exists():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("select task_id, map_index, try_number from task_instance where run_id = ?", (run_id,))
        return {(t, int(m)): max(1, int(n or 1)) for t, m, n in rows}


def write_task_logs(output: Path, airflow_home: Path) -> list[Path]:
    """One log file per task instance of the ``airflow dags test`` run whose output is ``output``."""
    sections: list[tuple[str, str, str, int, list[str]]] = []  # (dag, run id, task, map index, lines)
    current: list[str] | None = None
    task: tuple[str, int] | None = None
    ids: tuple[str, str] | None = None
    with open(output, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if m := _START.search(line):
                current, task, ids = [line], (m[1], int(m[2])), None
                continue
            if current is None:
                continue
            current.append(line)
            if ids is None and (m := _RUNNING.search(line)):
                ids = (m[1], m[3])
            if _END.search(line):
                if ids is not None and task is not None:
                    sections.append((ids[0], ids[1], task[0], task[1], current))
                current, task = None, None
    if not sections:
        return []
    tries = _try_numbers(airflow_home, sections[0][1])
    written = []
    for dag, run_id, name, index, lines in sections:
        folder = _base_log_folder(airflow_home) / f"dag_id={dag}" / f"run_id={run_id}" / f"task_id={name}"
        if index >= 0:
            folder = folder / f"map_index={index}"
        path = folder / f"attempt={tries.get((name, index), 1)}.log"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}")
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
