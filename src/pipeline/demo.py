"""``pipeline demo``: run the nightly DAG once with a terminal a person can read.

``airflow dags test`` writes tens of thousands of lines (Airflow's bookkeeping, Spark's INFO
log of every submitted job). This runner sends all of it to ``$PIPELINE_HOME/logs/demo-<time>.log``
and prints instead one line per finished task (state, seconds, the stage's key figure from
:func:`pipeline.progress.note`), then the run's report (``pipeline report``). When a task fails
it prints that task's last log lines and exits non-zero. The last line names the log files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from pipeline.airflow_env import user_env
from pipeline.dagtest import DagTestFollower, TaskResult
from pipeline.tasklogs import write_task_logs

__all__ = ["DAG_ID", "run", "progress_line"]

DAG_ID = "music_recs_nightly"
TAIL_LINES = 30
_RUN_LOG = re.compile(r"demo-\d{8}T\d{6}Z\.log")
_STATES = {"success": "ok", "failed": "FAILED", "up_for_retry": "retry", "upstream_failed": "skipped"}


def progress_line(result: TaskResult, tally: Counter | None = None) -> str:
    """``  ok     validate               14.9 s  29,851 rows kept, 0 quarantined``; mapped tasks add a tally."""
    name = result.task_id if result.map_index < 0 else f"{result.task_id} [{result.map_index}]"
    figure = result.note.figure if result.note else ""
    if tally is not None:
        figure += f"  ({tally['done']} done, {tally['failed']} failed)"
    state = _STATES.get(result.state, result.state)
    return f"  {state:<7}{name:<22}{result.seconds:7.1f} s  {figure}".rstrip()


def run(conf: dict[str, Any], *, home: Path, dag_id: str = DAG_ID, spark_info: bool = False,
        out: TextIO = sys.stdout) -> int:
    """Run ``airflow dags test <dag_id> -c <conf>`` with its output in a log file; 0 when the run succeeded.

    ``spark_info`` keeps Spark's INFO log in the file (by default Spark logs at WARN).
    """
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"demo-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.log"  # matches _RUN_LOG
    cmd = [_airflow(), "dags", "test", dag_id, "-c", json.dumps(conf)]
    print(f"Running {dag_id} (airflow dags test); Airflow and Spark output: {_show(log_path)}", file=out, flush=True)
    follower = DagTestFollower(tail_lines=TAIL_LINES)
    tallies: dict[str, Counter] = {}
    env = _env(home, spark_info)
    began = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8", errors="replace", bufsize=1, env=env)
        try:
            for line in proc.stdout:
                log.write(line)
                result = follower.feed(line, now=time.monotonic())
                if result is not None:
                    tally = None
                    if result.map_index >= 0:
                        tally = tallies.setdefault(result.task_id, Counter(done=0, failed=0))
                        tally["done" if result.ok else "failed"] += 1
                    print(progress_line(result, tally), file=out, flush=True)
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            print(f"\nInterrupted. Full log: {_show(log_path)}", file=out)
            return 130
    seconds = time.monotonic() - began
    # `dags test` writes no task log file: without these, the UI's Logs tab asks a log server that never ran
    write_task_logs(log_path, Path(env["AIRFLOW_HOME"]))
    failed = [r for r in follower.results if r.state not in ("success", "up_for_retry")]
    if code != 0 or follower.run_state != "success" or failed:
        _print_failure(failed, follower, code, out)
        print(f"\nDAG run failed after {seconds:.0f} s. Full log: {_show(log_path)}", file=out)
        return code or 1
    print(f"DAG run succeeded in {seconds:.0f} s.", file=out)
    _print_report(out)
    print(f"\nFull log: {_show(log_path)}{_setup_logs(logs, log_path)}", file=out)
    return 0


def _print_failure(failed: list[TaskResult], follower: DagTestFollower, code: int, out: TextIO) -> None:
    if not failed:
        state = follower.run_state or "not finished"
        print(f"\nairflow dags test exited with {code} (DAG run state: {state}); no task failed.", file=out)
        return
    first = failed[0]
    others = ", ".join(r.task_id for r in failed[1:])
    print(f"\nTask {first.task_id} failed" + (f" (then also: {others})" if others else "")
          + f"; its last {len(first.tail)} log lines:", file=out)
    for line in first.tail:
        print("    " + (line if len(line) <= 300 else line[:297] + "..."), file=out)


def _print_report(out: TextIO) -> None:
    from contextlib import redirect_stdout

    from pipeline.summary import print_run_report

    with redirect_stdout(out):
        print_run_report()


def _setup_logs(logs: Path, current: Path) -> str:
    """The set-up logs beside the run's (install, demo data, airflow db migrate), if any."""
    others = sorted(p for p in logs.glob("*.log") if not _RUN_LOG.fullmatch(p.name) and p != current)
    return f"  (set-up: {', '.join(_show(p) for p in others)})" if others else ""


def _airflow() -> str:
    beside = Path(sys.executable).parent / "airflow"
    found = shutil.which("airflow") or (str(beside) if beside.exists() else None)
    if found is None:
        raise FileNotFoundError("the `airflow` command is not on PATH; run from the project's venv (make install)")
    return found


# Spark's console log (log4j2) at WARN: its INFO lines are ~97% of a run's output (6,000 per ALS job)
_LOG4J2_WARN = """\
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""


def _env(home: Path, spark_info: bool) -> dict[str, str]:
    """This environment with the embedded Airflow set-up under ``home`` (:mod:`pipeline.airflow_env`),
    unbuffered; unless ``spark_info``, Spark's JVMs log at WARN.

    Every Spark JVM of the run (the in-process sessions and each spark-submit driver, local
    mode's executors included) is started by ``spark-submit``, which passes ``SPARK_SUBMIT_OPTS``
    to the JVM; a log4j2 configuration the user already set there is kept.
    """
    env = user_env({**os.environ, "PIPELINE_HOME": str(home)})
    env.setdefault("PYTHONUNBUFFERED", "1")  # lines as they happen, not in 8 kB blocks
    opts = env.get("SPARK_SUBMIT_OPTS", "")
    if not spark_info and "log4j2.configurationFile" not in opts:
        conf = home / "tmp" / "log4j2-warn.properties"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(_LOG4J2_WARN)
        env["SPARK_SUBMIT_OPTS"] = f"{opts} -Dlog4j2.configurationFile=file:{conf}".strip()
    return env


def _show(path: Path) -> str:
    """The path relative to the working directory when it lies below it (``var/logs/...``)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
