"""One way to get a SparkSession, the same under spark-submit, in a task and in tests."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["get_session"]


def get_session(app_name: str = "music-recs", *, master: str | None = None) -> "SparkSession":
    """Return the active session or build one.

    ``master`` defaults to ``$SPARK_MASTER`` or ``local[*]``. Under ``spark-submit`` the master
    comes from the command line and an existing session is reused as is. Sessions run in UTC
    so that timestamps mean the same on every machine.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    if not _under_spark_submit():
        builder = builder.master(master or os.environ.get("SPARK_MASTER", "local[*]"))
        builder = builder.config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "4g"))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8"))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )


def _under_spark_submit() -> bool:
    """True when this Python process is a spark-submit driver (the JVM gateway is already up)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ
