"""Dedup, the append-only ID map and the splits on a real local[2] Spark session, against oracles."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import idmap, ingest
from pipeline.config import SplitConfig
from pipeline.split import split, split_frame

pytestmark = pytest.mark.spark

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def validated_frame(spark, rows):
    """Rows in the validated-listens schema (what the validate stage writes)."""
    cols = ["source_row", "user_id", "track_mbid", "artist_name", "track_name", "source_track_id", "timestamp", "play_count"]
    pdf = pd.DataFrame(rows, columns=cols)
    schema = ("source_row long, user_id string, track_mbid string, artist_name string, track_name string, "
              "source_track_id string, timestamp timestamp, play_count long")
    return spark.createDataFrame(pdf, schema)


def write_validated(spark, rows, path: Path) -> Path:
    validated_frame(spark, rows).write.parquet(str(path))
    return path


def test_dedup_drops_exact_duplicates_merges_name_variants_and_reconciles(spark, tmp_path):
    t = lambda m: T0 + dt.timedelta(minutes=m)  # noqa: E731
    rows = [
        (0, "alice", "MBID-1", "A", "x", "m1", t(0), 1),
        (1, "alice", "mbid-1", "A", "x", "m1", t(0), 1),          # exact duplicate (mbid case differs)
        (2, "alice", None, "Sigur Ro\u0301s", "Hoppípolla", "m2", t(1), 1),
        (3, "bob", None, "sigur rós", "HOPPÍPOLLA ", "m3", t(1), 1),  # same song, other msid: merged by name
        (4, "bob", None, None, None, "m4", t(2), 2),                  # only a source id
        (5, "bob", None, "sigur rós", "hoppípolla", "m3", t(1), 1),  # duplicate of row 3
    ]
    src = write_validated(spark, rows, tmp_path / "validated")
    s = ingest.dedup_stage(src, tmp_path / "out", idmap_root=tmp_path / "idmap", has_timestamps=True, spark=spark)
    assert s["rows_in"] == 6 and s["rows_out"] == 4 and s["duplicates"] == 2
    assert s["tracks_merged_by_name"] == 1
    listens = pd.read_parquet(tmp_path / "out" / "listens").sort_values("source_row")
    assert listens["source_row"].tolist() == [0, 2, 3, 4]
    assert listens["track_idx"].nunique() == 3  # mbid-1, the merged song, src:m4
    assert sorted(listens["user_idx"].unique()) == [0, 1]
    assert s["n_users_mapped"] == 2 and s["n_tracks_mapped"] == 3
    for part in (tmp_path / "out" / "listens").glob("*.parquet"):  # each file in the order later stages read
        rows = pd.read_parquet(part)
        assert rows.equals(rows.sort_values(["user_idx", "timestamp", "track_idx"]))


def test_id_map_is_append_only_across_runs(spark, tmp_path):
    root = tmp_path / "idmap"
    keys = lambda xs: spark.createDataFrame([(x,) for x in xs], "key string")  # noqa: E731
    m1, added1 = idmap.update(spark, root, keys(["u2", "u1"]), keys(["t1"]))
    first = dict(pd.read_parquet(m1.path("users"))[["key", "id"]].values)
    assert first == {"u1": 0, "u2": 1} and added1 == {"users_added": 2, "tracks_added": 1}
    m2, added2 = idmap.update(spark, root, keys(["u3", "u1", "u0"]), keys(["t1", "t2"]))
    second = dict(pd.read_parquet(m2.path("users"))[["key", "id"]].values)
    assert {k: second[k] for k in first} == first  # old ids keep their meaning
    assert second["u0"] == 2 and second["u3"] == 3  # new keys get the next ids (sorted)
    assert m2.version == "v000002" and added2 == {"users_added": 2, "tracks_added": 1}
    m3, added3 = idmap.update(spark, root, keys(["u1"]), keys(["t2"]))
    assert m3.version == "v000002" and added3 == {"users_added": 0, "tracks_added": 0}
    assert (root / "v000001" / "users").exists()  # old versions stay for the models that used them


def test_concurrent_id_map_updates_do_not_corrupt_it(spark, tmp_path):
    root = tmp_path / "idmap"
    keys = lambda xs: spark.createDataFrame([(x,) for x in xs], "key string")  # noqa: E731
    errors = []

    def run(prefix):
        try:
            idmap.update(spark, root, keys([f"{prefix}{i}" for i in range(20)]), keys([f"{prefix}t"]))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in ("a", "b", "c")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    users = pd.read_parquet(root / idmap.current_version(root) / "users")
    assert len(users) == 60 and users["id"].is_unique and sorted(users["id"]) == list(range(60))


def listens_frame(spark, rows):
    pdf = pd.DataFrame(rows, columns=["user_idx", "track_idx", "timestamp", "play_count", "source_row"])
    return spark.createDataFrame(pdf, "user_idx int, track_idx int, timestamp timestamp, play_count int, source_row long")


listen_rows = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 50)), min_size=1, max_size=40, unique_by=lambda r: r
)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=listen_rows, fraction=st.sampled_from([0.5, 0.8, 0.7]))
def test_temporal_user_split_matches_the_definition(spark, rows, fraction):
    data = [(u, i, T0 + dt.timedelta(days=d), 1, n) for n, (u, i, d) in enumerate(rows)]
    frames, _ = split_frame(listens_frame(spark, data), SplitConfig(fraction=fraction, test_quantile=None), has_timestamps=True)
    got = {name: sorted(r.source_row for r in f.select("source_row").collect()) for name, f in frames.items()}
    # oracle: per user, order by (timestamp, track id); row r of n trains iff r < ceil(f * n)
    expected_train = []
    for u in {r[0] for r in data}:
        mine = sorted((r for r in data if r[0] == u), key=lambda r: (r[2], r[1]))
        cut = math.ceil(round(fraction * len(mine), 9))
        expected_train += [r[4] for r in mine[:cut]]
    assert got["train"] == sorted(expected_train)
    assert sorted(got["train"] + got["val"] + got["test"]) == list(range(len(data)))  # a partition
    assert got["test"] == []


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=listen_rows, strategy=st.sampled_from(["temporal_user", "temporal_global", "leave_k_out", "random_user"]))
def test_every_strategy_partitions_and_train_precedes_eval_in_time(spark, rows, strategy):
    data = [(u, i, T0 + dt.timedelta(days=d), 1, n) for n, (u, i, d) in enumerate(rows)]
    cfg = SplitConfig(strategy=strategy, test_quantile=0.9, seed=3)
    frames, facts = split_frame(listens_frame(spark, data), cfg, has_timestamps=True)
    parts = {name: f.toPandas() for name, f in frames.items()}
    assert sorted(sum((p["source_row"].tolist() for p in parts.values()), [])) == list(range(len(data)))
    before = pd.concat([parts["train"], parts["val"]])
    if len(parts["test"]) and len(before):  # the test window comes after everything else
        assert parts["test"]["timestamp"].min() > before["timestamp"].max()
    if strategy.startswith("temporal") or strategy == "leave_k_out":
        for u, val in parts["val"].groupby("user_idx"):
            train = parts["train"][parts["train"]["user_idx"] == u]
            if len(train):
                assert train["timestamp"].max() <= val["timestamp"].min()
    again, _ = split_frame(listens_frame(spark, data), cfg, has_timestamps=True)  # same seed, same split
    for name, frame in again.items():
        assert sorted(frame.toPandas()["source_row"]) == sorted(parts[name]["source_row"])


def test_untimed_data_refuses_temporal_splits(spark):
    df = listens_frame(spark, [(0, 0, None, 3, 0)])
    with pytest.raises(ValueError, match="needs timestamps.*leave_k_out.*random_user"):
        split_frame(df, SplitConfig(strategy="temporal_user"), has_timestamps=False)


def test_split_writes_partitions_and_a_table_one(spark, tmp_path):
    data = [(u, i, T0 + dt.timedelta(days=10 * i + u), 1, 10 * u + i) for u in range(4) for i in range(10)]
    listens_frame(spark, data).write.parquet(str(tmp_path / "listens"))
    stats = split(tmp_path / "listens", tmp_path / "split", SplitConfig(test_quantile=0.9), has_timestamps=True,
                  spark=spark, shape=(4, 10), idmap_version="v000001")
    t = stats["table"]
    assert t["train"]["interactions"] + t["val"]["interactions"] + t["test"]["interactions"] == 40
    assert t["test"]["interactions"] >= 4 and t["train"]["users"] == 4
    saved = json.loads((tmp_path / "split" / "stats.json").read_text())
    assert saved["shape"] == [4, 10] and saved["idmap_version"] == "v000001"
    # re-running the stage gives identical output
    split(tmp_path / "listens", tmp_path / "split2", SplitConfig(test_quantile=0.9), has_timestamps=True,
          spark=spark, shape=(4, 10))
    for name in ("train", "val", "test"):
        a = pd.read_parquet(tmp_path / "split" / name).sort_values("source_row").reset_index(drop=True)
        b = pd.read_parquet(tmp_path / "split2" / name).sort_values("source_row").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
