"""Popularity baselines (docs/contracts.md "Popularity baselines"), fitted from per-track aggregates.

* ``plays_per_listener``: score(i) = Σ_u plays(u, i) / (listeners(i) + β)
* ``listeners``:          score(i) = number of distinct users who played i
* ``plays``:              score(i) = Σ_u plays(u, i)

Ranking ties are broken by track index ascending (``PopularityModel.recommend``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from pipeline.config import PopularityConfig
from pipeline.models.base import PopularityModel

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["scores", "fit", "track_stats_spark", "track_stats_matrix"]


def scores(plays: np.ndarray, listeners: np.ndarray, cfg: PopularityConfig) -> np.ndarray:
    """The score of every track under ``cfg``; tracks nobody played score 0."""
    plays = np.asarray(plays, dtype=np.float64)
    listeners = np.asarray(listeners, dtype=np.float64)
    if cfg.variant == "plays":
        return plays
    if cfg.variant == "listeners":
        return listeners
    with np.errstate(divide="ignore", invalid="ignore"):
        out = plays / (listeners + cfg.beta)
    return np.nan_to_num(out, nan=0.0, posinf=0.0)


def fit(plays: np.ndarray, listeners: np.ndarray, cfg: PopularityConfig) -> PopularityModel:
    return PopularityModel(scores(plays, listeners, cfg), cfg.params())


def track_stats_matrix(train: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(plays, listeners) per track from a user x track matrix of play counts."""
    plays = np.asarray(train.sum(axis=0)).ravel()
    listeners = np.bincount(train.indices, minlength=train.shape[1])  # entries per track: CSR has one per pair
    return plays, listeners


def track_stats_spark(spark: "SparkSession", train_dir: Path, n_tracks: int) -> tuple[np.ndarray, np.ndarray]:
    """(plays, listeners) per track, aggregated by Spark; only the per-track totals reach the driver."""
    from pyspark.sql import functions as F

    agg = (
        spark.read.parquet(str(train_dir))
        .groupBy("track_idx")
        .agg(F.sum("play_count").alias("plays"), F.countDistinct("user_idx").alias("listeners"))
        .toPandas()
    )
    plays = np.zeros(n_tracks, dtype=np.float64)
    listeners = np.zeros(n_tracks, dtype=np.float64)
    idx = agg["track_idx"].to_numpy()
    plays[idx] = agg["plays"].to_numpy()
    listeners[idx] = agg["listeners"].to_numpy()
    return plays, listeners
