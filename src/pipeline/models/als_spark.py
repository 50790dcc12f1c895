"""Spark ALS with implicit preferences (docs/contracts.md "ALS").

Ratings are each (user, track)'s summed play count in train (``log`` confidence uses
``log1p(plays)``); Spark turns them into confidence ``1 + alpha * rating``. The fitted
factors come back to the driver as dense arrays indexed by the ID map.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import AlsConfig
from pipeline.models.base import FactorModel

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["fit", "ratings"]


def ratings(train: "DataFrame", cfg: AlsConfig) -> "DataFrame":
    """One row per (user, track) with the rating ALS sees."""
    from pyspark.sql import functions as F

    agg = train.groupBy("user_idx", "track_idx").agg(F.sum("play_count").alias("plays"))
    value = F.log1p("plays") if cfg.confidence == "log" else F.col("plays")
    return agg.select("user_idx", "track_idx", value.cast("float").alias("rating"))


def _dense(factors: "DataFrame", n: int, rank: int, scratch: Path) -> tuple[np.ndarray, np.ndarray]:
    """Factors as an ``(n, rank)`` float32 array indexed by id, and which ids ALS returned.

    The executors write them to Parquet under ``scratch`` and the driver reads the files a batch
    at a time into one preallocated array: nothing passes through the driver JVM (23M tracks
    x rank 25 is 2.3 GB, over ``spark.driver.maxResultSize``), and no pandas column of arrays.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    factors.select("id", "features").write.mode("overwrite").parquet(str(scratch))
    out = np.zeros((n, rank), dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    # one file and one batch ahead, not Arrow's default 4 and 16: at 21.8M tracks the default read-ahead
    # held ~2 GB of batches beside the array being filled
    batches = ds.dataset(str(scratch), format="parquet").to_batches(batch_size=1 << 18, batch_readahead=1,
                                                                     fragment_readahead=1)
    for batch in batches:
        ids = batch.column("id").to_numpy()
        out[ids] = pc.list_flatten(batch.column("features")).to_numpy().reshape(-1, rank)
        present[ids] = True
    shutil.rmtree(scratch, ignore_errors=True)
    pa.default_memory_pool().release_unused()
    return out, present


def fit(spark: "SparkSession", train_dir: Path, cfg: AlsConfig, *, n_users: int, n_tracks: int,
        scratch: Path, cache: dict[str, "DataFrame"] | None = None) -> FactorModel:
    """Fit ``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` on the train split.

    ``scratch`` is a folder the executors and the driver both see (beside the split, as the
    train data is), used for the factors on their way to the driver and removed afterwards.
    ``cache`` keeps the cached ratings by confidence for the next fit of the same application
    (which then neither reads train nor aggregates it again); without it they are dropped here.
    """
    from pyspark.ml.recommendation import ALS

    data = (cache or {}).get(cfg.confidence)
    if data is None:
        data = ratings(spark.read.parquet(str(train_dir)), cfg).cache()
        if cache is not None:
            cache[cfg.confidence] = data
    als = ALS(
        rank=cfg.rank, regParam=cfg.reg_param, alpha=cfg.alpha, maxIter=cfg.max_iter, seed=cfg.seed,
        implicitPrefs=True, userCol="user_idx", itemCol="track_idx", ratingCol="rating",
        nonnegative=False, coldStartStrategy="drop",
    )
    model = als.fit(data)
    users, _ = _dense(model.userFactors, n_users, cfg.rank, Path(scratch) / "users")
    items, mask = _dense(model.itemFactors, n_tracks, cfg.rank, Path(scratch) / "items")
    shutil.rmtree(scratch, ignore_errors=True)
    if cache is None:
        data.unpersist()
    return FactorModel(users, items, mask, cfg.params())
