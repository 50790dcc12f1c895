"""The persistent, append-only ID map (docs/contracts.md "ID map").

Users and canonical tracks get dense non-negative int32 ids. The map lives in versioned
folders under one root::

    <root>/v000001/users/   (key: string, id: int)   Parquet
    <root>/v000001/tracks/  (key: string, id: int)
    <root>/CURRENT          "v000001"

An update reads CURRENT, gives every new key the next id (new keys in sorted order, so the
result does not depend on partitioning), writes the next version folder atomically and then
moves CURRENT. An id once given never changes meaning: old versions are never rewritten. A
file lock serialises concurrent updates, so two runs at once cannot corrupt the map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.paths import atomic_dir, atomic_write_text, file_lock

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["IdMap", "current_version", "load", "table_path", "update"]

_KINDS = ("users", "tracks")
_MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class IdMap:
    """One version of the map: where it is and how many ids each side holds."""

    root: Path
    version: str
    n_users: int
    n_tracks: int

    def path(self, kind: str) -> Path:
        return table_path(self.root, self.version, kind)


def table_path(root: Path, version: str, kind: str) -> Path:
    """The Parquet folder of one version's ``users`` or ``tracks`` (``key``, ``id``)."""
    return Path(root) / version / kind


def current_version(root: Path) -> str | None:
    """The version CURRENT names, or None for an empty map."""
    marker = Path(root) / "CURRENT"
    return marker.read_text().strip() if marker.exists() else None


def load(spark: "SparkSession", root: Path, version: str | None = None) -> tuple["DataFrame", "DataFrame", str]:
    """(users, tracks, version) of ``version`` (default: CURRENT)."""
    root = Path(root)
    version = version or current_version(root)
    if version is None:
        raise FileNotFoundError(f"no ID map under {root}: run the ingest stage first")
    return (
        spark.read.parquet(str(root / version / "users")),
        spark.read.parquet(str(root / version / "tracks")),
        version,
    )


def _extend(spark: "SparkSession", old: "DataFrame | None", keys: "DataFrame") -> tuple["DataFrame", int, int, "DataFrame"]:
    """Old map plus new keys with the next ids; returns (map, size, ids added, the new rows: cached)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    schema = StructType([StructField("key", StringType(), False), StructField("id", IntegerType(), False)])
    keys = keys.select(F.col("key").cast("string")).distinct()
    if old is None:
        old = spark.createDataFrame([], schema)
        next_id = 0
    else:
        next_id = (old.agg(F.max("id")).first()[0] or -1) + 1
    # new keys in sorted order: a range-partitioned sort, numbered in the JVM partition by partition
    new = keys.join(old.select("key"), "key", "left_anti").orderBy("key").zipWithIndex("_i")
    added_df = new.select("key", (F.col("_i") + next_id).cast("int").alias("id")).cache()
    added = added_df.count()
    size = next_id + added
    if size - 1 > _MAX_ID:
        raise OverflowError(f"the ID map would exceed int32 ({size} ids)")
    return old.unionByName(added_df), size, added, added_df


def update(spark: "SparkSession", root: Path, users: "DataFrame", tracks: "DataFrame") -> tuple[IdMap, dict[str, int]]:
    """Give ids to the new keys in ``users`` / ``tracks`` (each a DataFrame with a ``key`` column).

    Returns the map version to use and the number of ids added per side. When nothing is new,
    the current version is reused and no folder is written.
    """
    root = Path(root)
    with file_lock(Path(root) / ".lock"):
        current = current_version(root)
        old_users = old_tracks = None
        if current is not None:
            old_users, old_tracks, _ = load(spark, root, current)
        new_users, n_users, added_users, user_rows = _extend(spark, old_users, users)
        new_tracks, n_tracks, added_tracks, track_rows = _extend(spark, old_tracks, tracks)
        try:
            added = {"users_added": added_users, "tracks_added": added_tracks}
            if current is not None and not (added["users_added"] or added["tracks_added"]):
                return IdMap(root, current, n_users, n_tracks), added
            version = f"v{int(current[1:]) + 1 if current else 1:06d}"
            with atomic_dir(root / version) as tmp:
                new_users.coalesce(1).write.parquet(str(tmp / "users"))
                new_tracks.repartition(max(1, n_tracks // 2_000_000)).write.parquet(str(tmp / "tracks"))
            atomic_write_text(root / "CURRENT", version + "\n")
            return IdMap(root, version, n_users, n_tracks), added
        finally:
            user_rows.unpersist()
            track_rows.unpersist()
