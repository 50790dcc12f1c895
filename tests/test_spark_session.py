"""The pipeline's Spark session: release_session stops only the session get_session started."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.spark


def test_release_leaves_a_session_it_did_not_start_running(spark):
    from pipeline.spark import get_session, release_session

    assert get_session() is spark, "an active session is reused, not rebuilt"
    release_session()
    assert spark.sparkContext._jsc is not None, "the caller's session was stopped under it"
    assert spark.range(3).count() == 3


def test_release_stops_the_session_it_started_and_a_new_one_can_follow(tmp_path):
    # Its own process: one JVM holds one SparkContext, and the suite's session lives in this one.
    script = textwrap.dedent("""
        import psutil
        from pyspark import SparkContext
        from pipeline.spark import get_session, release_session

        first = get_session("first", master="local[1]")
        assert first.range(5).count() == 5
        release_session()
        assert SparkContext._active_spark_context is None, "release_session left its session running"
        jvms = [p for p in psutil.Process().children(recursive=True) if p.name() == "java" and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
        assert not jvms, f"release_session left the JVM running: {jvms}"  # its memory back to the machine
        release_session()  # a second call has nothing to stop
        second = get_session("second", master="local[1]")
        assert second is not first and second.range(7).count() == 7
        release_session()
        print("ok")
    """)
    env = {**os.environ, "PIPELINE_HOME": str(tmp_path), "SPARK_DRIVER_MEMORY": "1g"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


@pytest.mark.parametrize("options, collector", [(None, "PS MarkSweep"), ("", "G1 Old Generation")])
def test_a_session_runs_the_collector_spark_java_options_names(tmp_path, options, collector):
    """get_session's JVM runs the parallel collector by default (pipeline.spark.JAVA_OPTIONS) and the JVM's
    own default (G1) with SPARK_JAVA_OPTIONS set empty. Its own process: the option applies at JVM launch."""
    script = textwrap.dedent("""
        from pipeline.spark import get_session, release_session

        spark = get_session("gc", master="local[1]")
        beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
        print("collectors:", ",".join(bean.getName() for bean in beans))
        release_session()
    """)
    env = {**os.environ, "PIPELINE_HOME": str(tmp_path), "SPARK_DRIVER_MEMORY": "1g"}
    env.pop("SPARK_JAVA_OPTIONS", None)
    if options is not None:
        env["SPARK_JAVA_OPTIONS"] = options
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    line = next((x for x in out.stdout.splitlines() if x.startswith("collectors:")), out.stderr[-2000:])
    assert collector in line.split(":", 1)[1].strip().split(","), line
