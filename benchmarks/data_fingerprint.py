"""The three data stages (validate, dedup + ID map, split) on one raw log in a fresh Spark session, timed,
with a fingerprint of every output: for comparing two versions of the code on the same data.

Each output gets its row count and ``bit_xor(xxhash64(every column))`` over its rows (equal multisets of
rows give equal prints, whatever the partitioning), and the listens, train and val folders a SHA-1 of
their files' rows in file order (equal when the files are the same row for row). Run it from each
checkout, one after the other on a quiet host, and compare the lines::

    PYTHONPATH=<checkout>/src .venv/bin/python benchmarks/data_fingerprint.py <raw> <scratch folder>

``<raw>`` is a ListenBrainz-shaped folder such as ``benchmarks/run.py``'s
``var/bench/listens-10000000/data/raw``. The scratch folder is emptied first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipeline import ingest, split
from pipeline.config import IngestConfig, SplitConfig
from pipeline.spark import get_session

AS_OF = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def file_order_sha1(folder: Path) -> str:
    """SHA-1 of every row of every Parquet file in ``folder``, files in name order, rows in file order."""
    h = hashlib.sha1()
    for f in sorted(folder.glob("*.parquet")):
        h.update(pd.util.hash_pandas_object(pq.read_table(f).to_pandas(), index=True).values.tobytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw", type=Path)
    ap.add_argument("work", type=Path)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    spark = get_session("data-fingerprint", master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    from pyspark.sql import functions as F

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    ingest.validate_stage(IngestConfig(input_path=str(a.raw)), a.work / "ingest", spark=spark, as_of=AS_OF)
    seconds["validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    d = ingest.dedup_stage(a.work / "ingest" / "validated", a.work / "ingest", idmap_root=a.work / "idmap",
                           has_timestamps=True, spark=spark)
    seconds["dedup"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = split.split(a.work / "ingest" / "listens", a.work / "split", SplitConfig(), has_timestamps=True, spark=spark,
                    shape=(d["n_users_mapped"], d["n_tracks_mapped"]))
    seconds["split"] = time.perf_counter() - t0

    outputs = {"validated": "ingest/validated", "listens": "ingest/listens", "tracks": "ingest/tracks",
               "train": "split/train", "val": "split/val", "test": "split/test"}
    prints = {}
    for name, rel in outputs.items():
        df = spark.read.parquet(str(a.work / rel))
        row = df.select(F.bit_xor(F.xxhash64(*df.columns)).alias("xor"), F.count(F.lit(1)).alias("rows")).first()
        prints[name] = {**row.asDict(), "schema": df.schema.simpleString()}
        if name in ("listens", "train", "val"):
            prints[name]["files_sha1"] = file_order_sha1(a.work / rel)
    print(json.dumps({"seconds": {k: round(v, 1) for k, v in seconds.items()}, "total": round(sum(seconds.values()), 1),
                      "test_start": s["facts"].get("test_start"), "outputs": prints}, indent=1))


if __name__ == "__main__":
    main()
