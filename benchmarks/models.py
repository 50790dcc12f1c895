"""Models benchmark: exact top-100 throughput vs Spark's recommendForUserSubset, and Spark ALS seconds
per iteration vs the single-machine engine (implicit), on the same synthetic data, in one run.

    .venv/bin/python benchmarks/models.py [--listens 1000000] [--rank 25] [--iters 10] [--subset-users 2000]

Prints a Markdown table; every comparison is measured in this run (the seed's Table 6 and its
1 h 30 min exhaustive inference are the figures beside which to read it).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, table  # noqa: E402

from pipeline import synth  # noqa: E402
from pipeline.config import AlsConfig  # noqa: E402
from pipeline.models import als_implicit  # noqa: E402
from pipeline.topk import topk  # noqa: E402


def load_matrix(raw: Path) -> sp.csr_matrix:
    df = pd.read_parquet(raw / "interactions", columns=["user_id", "recording_msid"])
    u = df["user_id"].astype("category").cat.codes.to_numpy()
    i = df["recording_msid"].astype("category").cat.codes.to_numpy()
    m = sp.csr_matrix((np.ones(len(df), np.float32), (u, i)))
    m.sum_duplicates()
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listens", type=int, default=1_000_000)
    ap.add_argument("--rank", type=int, default=25)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--subset-users", type=int, default=2000)
    a = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        synth.generate(Path(tmp) / "raw", n_listens=a.listens, seed=0)
        train = load_matrix(Path(tmp) / "raw")
        n_users, n_items = train.shape
        cfg = AlsConfig(rank=a.rank, reg_param=0.1, alpha=1.0, max_iter=a.iters, engine="implicit")
        with measure() as m_imp:
            model = als_implicit.fit(train, cfg)
        rows.append({"what": f"implicit ALS fit, rank {a.rank}", "seconds": m_imp.seconds,
                     "per iteration s": m_imp.seconds / a.iters, "peak MB": m_imp.peak_mb})
        with measure() as m_top:
            topk(model.user_factors, model.item_factors, 100)
        scores = n_users * n_items
        rows.append({"what": f"exact top-100, {n_users:,} users x {n_items:,} items (blocked matmul)",
                     "seconds": m_top.seconds, "G scores/s": scores / m_top.seconds / 1e9, "peak MB": m_top.peak_mb})

        from pyspark.ml.recommendation import ALS
        from pyspark.sql import SparkSession

        spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "6g")
                 .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "8").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        coo = train.tocoo()
        pdf = pd.DataFrame({"user": coo.row.astype("int32"), "item": coo.col.astype("int32"),
                            "rating": coo.data.astype("float32")})
        ratings = spark.createDataFrame(pdf).cache()
        ratings.count()
        als = ALS(rank=a.rank, regParam=0.1, alpha=1.0, maxIter=a.iters, implicitPrefs=True, userCol="user",
                  itemCol="item", ratingCol="rating", seed=0)
        with measure() as m_spark:
            spark_model = als.fit(ratings)
            spark_model.itemFactors.count()
        rows.append({"what": f"Spark ALS fit local[2], rank {a.rank}", "seconds": m_spark.seconds,
                     "per iteration s": m_spark.seconds / a.iters, "peak MB": m_spark.peak_mb,
                     "ratio": m_spark.seconds / m_imp.seconds})
        subset = spark.createDataFrame(pd.DataFrame({"user": np.arange(min(a.subset_users, n_users), dtype="int32")}))
        with measure() as m_rec:
            spark_model.recommendForUserSubset(subset, 100).write.format("noop").mode("overwrite").save()
        sub_scores = min(a.subset_users, n_users) * n_items
        rows.append({"what": f"Spark recommendForUserSubset, {min(a.subset_users, n_users):,} users",
                     "seconds": m_rec.seconds, "G scores/s": sub_scores / m_rec.seconds / 1e9, "peak MB": m_rec.peak_mb,
                     "ratio": (sub_scores / m_rec.seconds) / (scores / m_top.seconds)})
        spark.stop()
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{a.listens:,} synthetic listens, {n_users:,} users, {n_items:,} tracks, {train.nnz:,} user-track pairs\n")
    print(table(rows, ["what", "seconds", "per iteration s", "G scores/s", "peak MB", "ratio"]))
    print("\nratio: Spark ALS seconds / implicit seconds; recommendForUserSubset throughput / exact top-K throughput")


if __name__ == "__main__":
    main()
