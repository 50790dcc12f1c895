"""One way to get a SparkSession, the same under spark-submit, in a task and in tests."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

__all__ = ["SESSION_CONF", "MasterWatch", "default_driver_memory", "get_session", "jobs", "master_lost",
           "move_partition", "release_session", "spill_dir", "submit_conf"]

log = logging.getLogger(__name__)

# The JVMs' garbage collector: the parallel (throughput) collector instead of Java 17's default G1.
# Measured on 2 cores at 10M listens, results identical to the bit: the split's timestamp quantile
# 19.5 -> 7.4 s (G1 spent a third of it collecting), a Spark ALS fit 76 -> 69 s. Set
# SPARK_JAVA_OPTIONS to change it ("" keeps the JVM's default); spark.driver/executor.extraJavaOptions
# stay free for a cluster's own settings.
JAVA_OPTIONS = os.environ.get("SPARK_JAVA_OPTIONS", "-XX:+UseParallelGC")

# Every session of the pipeline, in-process or submitted: UTC timestamps, many small shuffle
# partitions that spill in pieces instead of failing (adaptive execution merges them back),
# no console progress bars, Arrow for toPandas, Parquet timestamps in microseconds, the collector above,
# an aggregate over rows already sorted by its keys done as a sort aggregate (no hash table to spill), and
# a write partitioned by a column of few values (validate's verdict) through a file open per value instead
# of a sort of every row by it (past two values in a task, Spark sorts the rest as before).
SESSION_CONF = {
    **({"spark.driver.defaultJavaOptions": JAVA_OPTIONS, "spark.executor.defaultJavaOptions": JAVA_OPTIONS}
       if JAVA_OPTIONS else {}),
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": os.environ.get("SPARK_SHUFFLE_PARTITIONS", "64"),
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.replaceHashWithSortAgg": "true",
    "spark.sql.maxConcurrentOutputFileWriters": "2",
}

_started: "SparkSession | None" = None  # the session get_session built, the only one release_session stops
_watch: "MasterWatch | None" = None  # the standalone master of this process's session, watched


def get_session(app_name: str = "music-recs", *, master: str | None = None) -> "SparkSession":
    """Return the active session or build one.

    ``master`` defaults to ``$SPARK_MASTER`` or ``local[*]``. Under ``spark-submit`` the master
    comes from the command line and an existing session is reused as is. Sessions run in UTC
    so that timestamps mean the same on every machine.
    """
    global _started, _watch
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    foreign = SparkContext._active_spark_context is not None  # a context someone else started and owns
    builder = SparkSession.builder.appName(app_name)
    url = master or os.environ.get("SPARK_MASTER", "local[*]")  # under spark-submit, its --master decides
    if not _under_spark_submit():
        builder = builder.master(url)
        builder = builder.config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY") or default_driver_memory())
        os.environ.setdefault("SPARK_LOCAL_DIRS", str(spill_dir()))  # read by the JVM at launch, as on a cluster
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception:
        if url.startswith("spark://") and not _answers(_addresses(url)):  # Spark: "All masters are unresponsive!"
            raise RuntimeError(f"cannot start a Spark application: the Spark master {url} does not answer; start it "
                               "(scripts/spark-cluster.sh start) or unset SPARK_MASTER to run locally") from None
        raise
    if not foreign:
        _started = session
    if session.sparkContext.master.startswith("spark://") and (_watch is None or _watch.session is not session):
        _watch = MasterWatch(session)
    return session


@contextlib.contextmanager
def jobs(spark: "SparkSession | None", description: str) -> Iterator[None]:
    """Name the Spark jobs started inside the block: ``with jobs(spark, "dedup: ID map"): ...``.

    The name is what the Spark UI's Jobs page and the event logs show for them (instead of
    ``parquet at NativeMethodAccessorImpl.java:0``), and what ``benchmarks/spark_profile.py``
    groups a stage's time under. The previous name comes back afterwards. Without a session
    (a block that may not need Spark) it does nothing.
    """
    if spark is None:
        yield
        return
    context = spark.sparkContext
    previous = context.getLocalProperty("spark.job.description")
    context.setJobDescription(description)
    try:
        yield
    finally:
        context.setLocalProperty("spark.job.description", previous)  # None removes it


class MasterWatch:
    """Cancel a standalone session's jobs once its master has stopped answering for ``patience`` seconds.

    Spark waits for a lost standalone master forever ("Disconnected from Spark cluster! Waiting for
    reconnection..."): an application that still waits for executors never gets any, and the task that
    submitted it would hold the night. The watch turns that into a failure that names the master:
    it cancels the jobs, and :func:`master_lost` says why. ``patience`` defaults to
    ``$SPARK_MASTER_PATIENCE_SECONDS`` or 90 (Spark itself gives up registering after 3 x 20 s).
    """

    def __init__(self, session: "SparkSession", *, patience: float | None = None, interval: float = 5.0):
        self.session = session
        self.url = session.sparkContext.master
        self.addresses = _addresses(self.url)
        self.patience = float(patience if patience is not None else
                              os.environ.get("SPARK_MASTER_PATIENCE_SECONDS", "90"))
        self.interval = interval
        self.lost: str | None = None
        threading.Thread(target=self._watch, name="spark-master-watch", daemon=True).start()

    def _watch(self) -> None:
        down_since = None
        while self.session.sparkContext._jsc is not None:  # until the session stops
            time.sleep(self.interval)
            if _answers(self.addresses):
                down_since = None
                continue
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since >= self.patience:
                self.lost = (f"the Spark master {self.url} has not answered for {self.patience:.0f} s, so this "
                             "application's jobs were cancelled; start the master again (scripts/spark-cluster.sh "
                             "start) and clear the failed tasks to run them again")
                log.error("%s", self.lost)
                try:
                    self.session.sparkContext.cancelAllJobs()
                except Exception:  # noqa: BLE001 - the session may be going down already
                    pass
                return


def move_partition(spark: "SparkSession", written: Path, column: str, value: str, dest: Path,
                   schema: "StructType") -> None:
    """Move the ``column=value`` folder of a write partitioned by ``column`` to ``dest``.

    No row had that value: ``dest`` becomes an empty dataset with ``schema`` (the columns but ``column``).
    """
    part = Path(written) / f"{column}={value}"
    if part.exists():
        part.rename(dest)
    else:
        spark.createDataFrame([], schema).write.parquet(str(dest))


def _addresses(url: str) -> list[tuple[str, int]]:
    """(host, port) of each master in a ``spark://host:port[,host2:port2]`` URL."""
    return [(host, int(port)) for host, port in (a.rsplit(":", 1) for a in url.removeprefix("spark://").split(","))]


def _answers(addresses: list[tuple[str, int]]) -> bool:
    """Whether any of the masters accepts a TCP connection."""
    for address in addresses:
        try:
            socket.create_connection(address, timeout=3).close()
            return True
        except OSError:
            pass
    return False


def master_lost() -> str | None:
    """Why this process's standalone session lost its master (:class:`MasterWatch`), or None."""
    return _watch.lost if _watch is not None else None


def release_session() -> None:
    """Stop the session :func:`get_session` started and end the JVM it ran in, handing its memory back.

    The DAG's in-process stages (validate .. popularity) share one session; once they are done
    its driver heap (a quarter of RAM) would otherwise stay resident beside the ALS jobs and the
    index builds (the parallel collector, unlike G1, keeps a heap it has grown). PySpark's JVM
    exits when its standard input closes; a later :func:`get_session` in the same process starts
    a new one. A session this module did not start (a caller's, a test suite's) is left running:
    its owner stops it. Under spark-submit the application owns its session, so nothing is done.
    """
    from pyspark import SparkContext

    global _started
    session, _started = _started, None
    if session is None or _under_spark_submit() or session.sparkContext._jsc is None:
        return
    session.stop()
    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)  # set by pyspark's launch_gateway for a JVM it started
    if proc is None:
        return
    gateway.shutdown()
    with contextlib.suppress(OSError):
        proc.stdin.close()  # PythonGatewayServer: "Exiting due to broken pipe from Python driver"
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    SparkContext._gateway = SparkContext._jvm = None  # the next SparkContext launches a new JVM


def submit_conf() -> dict[str, str]:
    """Spark conf for submitted jobs: :data:`SESSION_CONF`, this Python on driver and executors.

    The driver (client deploy mode: on this machine) gets the same memory as an in-process
    session, ``$SPARK_DRIVER_MEMORY`` or a quarter of RAM.
    """
    return {**SESSION_CONF, "spark.pyspark.python": sys.executable, "spark.pyspark.driver.python": sys.executable,
            "spark.driver.memory": os.environ.get("SPARK_DRIVER_MEMORY") or default_driver_memory()}


def default_driver_memory() -> str:
    """A quarter of this machine's memory, between 2 and 16 GiB (local mode: the driver is the executor)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{min(16, max(2, total // 4 // 2**30))}g"


def spill_dir() -> Path:
    """Where Spark spills shuffles and cached blocks: ``$PIPELINE_HOME/tmp/spark`` (not /tmp, often small)."""
    from pipeline.paths import pipeline_home

    path = Path(os.environ.get("SPARK_LOCAL_DIRS") or pipeline_home() / "tmp" / "spark")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def _under_spark_submit() -> bool:
    """True when this Python process is a spark-submit driver (the JVM gateway is already up)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ
