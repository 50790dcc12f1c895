"""Data-layer benchmark: listens per second through ingest (load + validate + quarantine), dedup + ID map,
and the temporal_user split on Spark local[2], beside a single-process pyarrow/pandas reference doing the
same steps, measured in the same run.

    .venv/bin/python benchmarks/data_layer.py [--listens 1000000] [--listens 10000000 ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, table  # noqa: E402

from pipeline import ingest, split, synth  # noqa: E402
from pipeline.config import IngestConfig, SplitConfig  # noqa: E402
from pipeline.ingest import normalize_name  # noqa: E402


def reference(raw: Path) -> int:
    """The same steps in pandas: join, canonical key, exact duplicates, dense ids, temporal_user split."""
    listens = pd.read_parquet(raw / "interactions")
    tracks = pd.read_parquet(raw / "tracks.parquet")
    df = listens.merge(tracks, on="recording_msid", how="left")
    bad = df["user_id"].isna() | df["timestamp"].isna()
    df = df[~bad]
    names = df.loc[df["recording_mbid"].isna(), ["artist_name", "track_name"]].drop_duplicates()
    names["key"] = "name:" + names["artist_name"].map(normalize_name) + "\x1f" + names["track_name"].map(normalize_name)
    df = df.merge(names, on=["artist_name", "track_name"], how="left")
    df["key"] = np.where(df["recording_mbid"].notna(), "mbid:" + df["recording_mbid"].fillna(""), df["key"])
    df = df.drop_duplicates(["user_id", "key", "timestamp"])
    df["user_idx"] = pd.factorize(df["user_id"], sort=True)[0]
    df["track_idx"] = pd.factorize(df["key"], sort=True)[0]
    df = df.sort_values(["user_idx", "timestamp", "track_idx"])
    r = df.groupby("user_idx").cumcount().to_numpy()
    n = df.groupby("user_idx")["user_idx"].transform("size").to_numpy()
    train = r < np.ceil(0.8 * n - 1e-9)
    return int(train.sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listens", type=int, action="append")
    a = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "8g")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "8")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    rows = []
    for n in a.listens or [1_000_000]:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            synth.generate(tmp / "raw", n_listens=n, seed=0)
            cfg = IngestConfig(input_path=str(tmp / "raw"))
            as_of = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
            with measure() as m_val:
                v = ingest.validate_stage(cfg, tmp / "ingest", spark=spark, as_of=as_of)
            with measure() as m_dedup:
                d = ingest.dedup_stage(tmp / "ingest" / "validated", tmp / "ingest", idmap_root=tmp / "idmap",
                                       has_timestamps=True, spark=spark)
            with measure() as m_split:
                split.split(tmp / "ingest" / "listens", tmp / "split", SplitConfig(), has_timestamps=True, spark=spark,
                            shape=(d["n_users_mapped"], d["n_tracks_mapped"]))
            with measure() as m_ref:
                reference(tmp / "raw")
            total = m_val.seconds + m_dedup.seconds + m_split.seconds
            for name, m in (("validate (load, GE, quarantine)", m_val), ("dedup + ID map", m_dedup),
                            ("split (temporal_user + test window)", m_split)):
                rows.append({"listens": f"{n:,}", "stage": f"Spark local[2]: {name}", "seconds": m.seconds,
                             "listens/s": n / m.seconds, "peak MB": m.peak_mb})
            rows.append({"listens": f"{n:,}", "stage": "Spark local[2]: all three", "seconds": total,
                         "listens/s": n / total, "peak MB": max(m_val.peak_mb, m_dedup.peak_mb, m_split.peak_mb)})
            rows.append({"listens": f"{n:,}", "stage": "reference: pandas/pyarrow, one process", "seconds": m_ref.seconds,
                         "listens/s": n / m_ref.seconds, "peak MB": m_ref.peak_mb})
            assert v["rows_in"] == d["rows_out"] + d["duplicates"] + v["quarantined"]
    spark.stop()
    print(f"\n{os.cpu_count()} cores; peak MB covers this process and the Spark JVM\n")
    print(table(rows, ["listens", "stage", "seconds", "listens/s", "peak MB"]))


if __name__ == "__main__":
    main()
