"""Shared fixtures: one real local[2] Spark session for the suite, and the shared datasets."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

logging.getLogger("py4j").setLevel(logging.ERROR)  # its shutdown message races pytest closing stderr
# cluster_fixtures is both a plugin (pytest_plugins) and imported; rewrite its asserts either way.
pytest.register_assert_rewrite("cluster_fixtures")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Spark's Python workers must run this interpreter (the one with the pipeline installed).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    """A real SparkSession on local[2] with the pipeline's settings, small shuffles; stopped at the end of the run."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    from pipeline.spark import SESSION_CONF

    builder = SparkSession.builder.master("local[2]").appName("music-recs-tests")
    for key, value in {**SESSION_CONF, "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4",
                       "spark.ui.enabled": "false", "spark.driver.memory": "2g"}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real datasets, non-commercial licences); skips when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the real datasets live beside the repository, never in it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_split(spark, tmp_path_factory) -> Path:
    """A 20k-listen synthetic log, ingested and split (temporal_user with a test window): ``<tmp>/split``."""
    from pipeline import ingest, split, synth
    from pipeline.config import IngestConfig, SplitConfig

    tmp = tmp_path_factory.mktemp("small")
    synth.generate(tmp / "raw", n_listens=20_000, seed=3)
    s = ingest.ingest(IngestConfig(input_path=str(tmp / "raw")), tmp / "ingest", idmap_root=tmp / "idmap", spark=spark)
    split.split(tmp / "ingest" / "listens", tmp / "split", SplitConfig(), has_timestamps=True, spark=spark,
                shape=(s["n_users_mapped"], s["n_tracks_mapped"]), idmap_version=s["idmap_version"])
    return tmp
