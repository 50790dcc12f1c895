"""Train / validation / test splits (docs/contracts.md "Splits").

The test set is a later time window: rows at or after ``test_start`` (or the
``test_quantile`` of all timestamps). Train and validation are split from the rows before it:

* ``temporal_user`` (default, fraction f): per user, order rows by (timestamp, track id);
  row r (0-based) of n goes to train iff r < ceil(f * n).
* ``temporal_global``: rows before a cutoff timestamp (or ``cutoff_quantile``) train.
* ``leave_k_out``: each user's last k rows (same order; source row order without timestamps)
  evaluate.
* ``random_user``: per user, a seeded shuffle; the first ceil(f * n) rows train.

Datasets without timestamps accept only ``leave_k_out`` and ``random_user``; their test set is
a seeded per-user random share ``1 - test_quantile`` (a time window needs time).

``ceil(f * n)`` is computed exactly in integers from the decimal ``f`` (0.7 * 10 is 7, not 8).
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import SplitConfig
from pipeline.data import SplitData
from pipeline.paths import atomic_dir, atomic_write_text
from pipeline.spark import jobs, move_partition

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["TEMPORAL", "RATING_FORMATS", "split", "split_frame", "n_train", "seen_protocol"]

RATING_FORMATS = ("movielens",)  # one rating per (user, item) pair


def seen_protocol(*, has_timestamps: bool, fmt: str | None) -> tuple[bool, str]:
    """Whether a run with ``exclude_seen`` left empty drops train tracks from its rankings, and why.

    In a log of one row per (user, track) pair a held-out pair is never a train pair, so a seen
    track in a ranking can never be relevant and only takes a slot; in a listening log listeners
    replay, and the seed's protocol keeps what they heard.
    """
    if not has_timestamps:
        return True, ("the log has no timestamps: one row per (user, track) pair with its plays summed, so a "
                      "held-out pair is never a train pair")
    if fmt in RATING_FORMATS:
        return True, f"{fmt} holds one rating per (user, item) pair, so a held-out pair is never a train pair"
    return False, "a listening log with timestamps: listeners replay tracks, and the seed's protocol keeps them"

TEMPORAL = ("temporal_user", "temporal_global")
SPLITS = SplitData.SETS
SET = "split_set"  # the column that says which of train and val a row went to, while they are written


def n_train(n: int, fraction: float) -> int:
    """ceil(fraction * n), exact for a decimal fraction."""
    f = Fraction(str(fraction))
    return -(-n * f.numerator // f.denominator)


def _ceil_frac(n: "Column", fraction: float) -> "Column":
    from pyspark.sql import functions as F

    f = Fraction(str(fraction))
    return F.floor((n * F.lit(f.numerator) + F.lit(f.denominator - 1)) / F.lit(f.denominator))


def _order(has_timestamps: bool) -> list[str]:
    return ["timestamp", "track_idx", "source_row"] if has_timestamps else ["source_row"]


def _per_user_rank(df: "DataFrame", order: list["Column | str"]) -> "DataFrame":
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("user_idx").orderBy(*order)
    return df.withColumn("_r", F.row_number().over(w) - 1).withColumn(
        "_n", F.count(F.lit(1)).over(Window.partitionBy("user_idx"))
    )


def _random_order(seed: int) -> "Column":
    from pyspark.sql import functions as F

    return F.xxhash64(F.lit(seed), "user_idx", "track_idx", "source_row")


def _quantile_ts(df: "DataFrame", q: float) -> Any:
    """The q-quantile of the timestamps (exact rank statistic, computed in Spark)."""
    from pyspark.sql import functions as F

    return df.select(F.percentile_approx("timestamp", q, 1_000_000).alias("t")).first()["t"]


def split_frame(df: "DataFrame", cfg: SplitConfig, *, has_timestamps: bool) -> tuple[dict[str, "DataFrame"], dict[str, Any]]:
    """Return ``{"train", "val", "test"}`` frames (partitioning ``df`` exactly) and split facts."""
    from pyspark.sql import functions as F

    test, rest, facts = _sets(df, cfg, has_timestamps=has_timestamps)
    frames = {name: rest.where(F.col(SET) == name).drop(SET) for name in ("train", "val")}
    return {**frames, "test": test}, facts


def _sets(df: "DataFrame", cfg: SplitConfig, *, has_timestamps: bool) -> tuple["DataFrame", "DataFrame", dict[str, Any]]:
    """(test, the other rows with a ``SET`` column saying "train" or "val", split facts)."""
    from pyspark.sql import functions as F

    def label(is_train: "Column") -> "Column":  # a row that is neither (none today) would stay out of both
        return F.when(is_train, "train").when(~is_train, "val").alias(SET)

    if not has_timestamps and cfg.strategy in TEMPORAL:
        raise ValueError(
            f"split strategy {cfg.strategy!r} needs timestamps, but this dataset has none; "
            "use 'leave_k_out' (by row order) or 'random_user'"
        )
    facts: dict[str, Any] = {"strategy": cfg.strategy, "has_timestamps": has_timestamps}
    # held-out test window
    if has_timestamps and (cfg.test_start or cfg.test_quantile):
        start = cfg.test_start or _quantile_ts(df, cfg.test_quantile)
        start_col = F.lit(start).cast("timestamp")
        test, rest = df.where(F.col("timestamp") >= start_col), df.where(F.col("timestamp") < start_col)
        facts["test_start"] = str(start)
    elif cfg.test_quantile:
        ranked = _per_user_rank(df, [_random_order(cfg.seed + 1)])
        keep = F.col("_r") < _ceil_frac(F.col("_n"), cfg.test_quantile)
        test, rest = ranked.where(~keep).drop("_r", "_n"), ranked.where(keep).drop("_r", "_n")
        facts["test_share"] = round(1 - cfg.test_quantile, 6)
    else:
        test, rest = df.limit(0), df

    if cfg.strategy == "temporal_global":
        cutoff = cfg.cutoff or _quantile_ts(rest, cfg.cutoff_quantile)
        c = F.lit(cutoff).cast("timestamp")
        rest = rest.select("*", label(F.col("timestamp") < c))
        facts["cutoff"] = str(cutoff)
    else:
        if cfg.strategy == "random_user":
            ranked = _per_user_rank(rest, [_random_order(cfg.seed), "track_idx", "source_row"])
            is_train = F.col("_r") < _ceil_frac(F.col("_n"), cfg.fraction)
        elif cfg.strategy == "temporal_user":
            ranked = _per_user_rank(rest, _order(has_timestamps))
            is_train = F.col("_r") < _ceil_frac(F.col("_n"), cfg.fraction)
        else:  # leave_k_out
            ranked = _per_user_rank(rest, _order(has_timestamps))
            is_train = F.col("_r") < F.col("_n") - cfg.k
        rest = ranked.select("*", label(is_train)).drop("_r", "_n")
    return test, rest, facts


def split(
    listens_dir: "Path | DataFrame", out_dir: Path, cfg: SplitConfig, *, has_timestamps: bool, spark: "SparkSession",
    shape: tuple[int, int], idmap_version: str | None = None, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Split curated listens into ``train/``, ``val/``, ``test/`` Parquet + ``stats.json`` (the seed's Table 1).

    ``shape`` is (users, tracks) of the ID map the listens use; later stages size their
    matrices from it. ``extra`` is kept in ``stats.json`` beside the figures (the run's decided protocol).
    """
    from pyspark.sql import functions as F

    out_dir = Path(out_dir)
    # a folder of curated listens, or (nightly increments) a frame over the curated partitions
    df = spark.read.parquet(str(listens_dir)) if isinstance(listens_dir, (str, Path)) else listens_dir
    with jobs(spark, f"split: {cfg.strategy}, the test window's start"):
        test, rest, facts = _sets(df, cfg, has_timestamps=has_timestamps)
    with atomic_dir(out_dir) as tmp:
        data = SplitData(tmp)
        with jobs(spark, "split: write test"):
            test.write.parquet(str(data.path("test")))
        # train and val in one write partitioned by set: every listen is ranked once, not once for each
        with jobs(spark, "split: write train and val"):
            rest.write.partitionBy(SET).parquet(str(tmp / "rest"))
        for name in ("train", "val"):
            move_partition(spark, tmp / "rest", SET, name, data.path(name), test.schema)
        shutil.rmtree(tmp / "rest")
    stats: dict[str, Any] = {"facts": facts, "table": {}, "shape": list(shape), "idmap_version": idmap_version,
                             "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}
    total = 0
    with jobs(spark, "split: users, tracks and interactions of each split"):
        for name in SPLITS:
            row = spark.read.parquet(str(SplitData(out_dir).path(name))).agg(
                F.countDistinct("user_idx").alias("users"),
                F.countDistinct("track_idx").alias("tracks"),
                F.count(F.lit(1)).alias("interactions"),
            ).first().asDict()
            stats["table"][name] = row
            total += row["interactions"]
        rows_in = df.count()
    if total != rows_in:
        raise RuntimeError(f"split lost rows: {rows_in} in, {total} across train/val/test")
    stats["rows_in"] = rows_in
    stats.update(extra or {})
    atomic_write_text(SplitData(out_dir).stats_path, json.dumps(stats, indent=1, default=str))
    return stats


def format_table(stats: dict[str, Any]) -> str:
    """The split statistics as a Markdown table like the seed's Table 1."""
    lines = ["| split | users | tracks | interactions |", "|---|---:|---:|---:|"]
    for name, row in stats["table"].items():
        lines.append(f"| {name} | {row['users']:,} | {row['tracks']:,} | {row['interactions']:,} |")
    return "\n".join(lines)
