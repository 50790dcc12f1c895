"""Data-layer benchmark: listens per second through ingest (load + validate + quarantine), dedup + ID map,
and the temporal_user split on Spark local[2] (the pipeline's own session settings), beside a pyarrow/pandas
reference doing the same steps on the same files, measured in the same run. The reference runs in a process
of its own, so each peak-memory figure is that side's alone (the Spark one includes its JVM).

    .venv/bin/python benchmarks/data_layer.py [--listens 1000000] [--listens 10000000 ...] [--shape seed]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
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


def run_reference(raw: Path) -> tuple[float, float]:
    """(seconds, peak MB) of :func:`reference` in a fresh Python process."""
    code = ("import resource, sys, time; sys.path.insert(0, sys.argv[1]); import data_layer; t = time.perf_counter(); "
            "data_layer.reference(__import__('pathlib').Path(sys.argv[2])); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent), str(raw)],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listens", type=int, action="append")
    ap.add_argument("--shape", choices=("demo", "seed"), default="seed", help="synthetic log shape (pipeline synth --shape)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--reference-up-to", type=int, default=20_000_000,
                    help="run the in-memory pandas reference only up to this many listens (it needs ~0.45 GB per "
                         "million; above, Spark's row stands alone)")
    a = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pipeline.spark import default_driver_memory, get_session

    spark = get_session("data-layer-benchmark", master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    rows = []
    for n in a.listens or [1_000_000]:
        with tempfile.TemporaryDirectory(dir=a.work) as tmp:
            tmp = Path(tmp)
            t0 = time.perf_counter()
            synth.generate(tmp / "raw", n_listens=n, seed=0, shape=a.shape)
            print(f"{n:,} listens ({a.shape} shape) written in {time.perf_counter() - t0:.0f} s", flush=True)
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
            ref = run_reference(tmp / "raw") if n <= a.reference_up_to else None
            total = m_val.seconds + m_dedup.seconds + m_split.seconds
            for name, m in (("validate (load, GE, quarantine)", m_val), ("dedup + ID map", m_dedup),
                            ("split (temporal_user + test window)", m_split)):
                rows.append({"listens": f"{n:,}", "stage": f"Spark local[2]: {name}", "seconds": m.seconds,
                             "listens/s": n / m.seconds, "peak MB": m.peak_mb})
            rows.append({"listens": f"{n:,}", "stage": "Spark local[2]: all three", "seconds": total,
                         "listens/s": n / total, "peak MB": max(m_val.peak_mb, m_dedup.peak_mb, m_split.peak_mb)})
            if ref:
                rows.append({"listens": f"{n:,}", "stage": "reference: pandas/pyarrow, one process", "seconds": ref[0],
                             "listens/s": n / ref[0], "peak MB": ref[1]})
            assert v["rows_in"] == d["rows_out"] + d["duplicates"] + v["quarantined"]
            print(table(rows, ["listens", "stage", "seconds", "listens/s", "peak MB"]), flush=True)  # so far
    spark.stop()
    print(f"\n{os.cpu_count()} cores; Spark local[2], driver memory {default_driver_memory()}; Spark peak MB covers this "
          "process and the JVM; the reference runs in its own process\n")
    print(table(rows, ["listens", "stage", "seconds", "listens/s", "peak MB"]))


if __name__ == "__main__":
    main()
