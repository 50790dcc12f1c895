"""Nightly increments on a real local[2] Spark session: date= partitions → the curated listens table.

What a user relies on: ingesting night by night or backfilling a range gives the same table and
ID map; a retried run ingests nothing twice; a listen repeated in a later night is a counted
duplicate; a raw night rewritten after ingestion stops the run with the fix; the training window
holds only its days; nights after the run's date wait for their run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import increments, split, synth
from pipeline.config import IngestConfig, SplitConfig

pytestmark = pytest.mark.spark

D1, D2, D3, D4 = (dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(4))


def curated_rows(curated: Path) -> pd.DataFrame:
    """Every curated listen with its partition, sorted: what two tables are compared by."""
    df = pd.read_parquet(curated / "listens")
    df["date"] = df["date"].astype(str)
    return df.sort_values(["date", "user_idx", "track_idx", "timestamp", "source_row"]).reset_index(drop=True)


def id_map(root: Path) -> dict[str, dict[str, int]]:
    version = (root / "CURRENT").read_text().strip()
    return {kind: dict(pd.read_parquet(root / version / kind)[["key", "id"]].values) for kind in ("users", "tracks")}


def ingest(raw: Path, home: Path, up_to: dt.date, spark) -> dict:
    return increments.ingest_pending(IngestConfig(input_path=str(raw)), home / "curated", home / "work", up_to=up_to,
                                     idmap_root=home / "idmap", spark=spark)


@pytest.fixture(scope="module")
def nightly_raw(spark, tmp_path_factory) -> Path:
    """A synthetic log over four days (2024-03-01 .. 04), split into date= folders by listen day."""
    tmp = tmp_path_factory.mktemp("raw")
    synth.generate(tmp / "log", n_listens=3000, n_users=60, n_tracks=400, start=D1.isoformat(), days=4, seed=11,
                   duplicate_share=0.01)
    out = increments.partition_log(spark, "listenbrainz", tmp / "log", tmp / "nightly")
    assert out["written"] == [f"date={d}" for d in (D1, D2, D3, D4)] and out["unpartitioned_rows"] == 0
    assert increments.is_partitioned(tmp / "nightly") and not increments.is_partitioned(tmp / "log")
    return tmp / "nightly"


@pytest.fixture(scope="module")
def night_by_night(spark, nightly_raw, tmp_path_factory):
    home = tmp_path_factory.mktemp("nightly")
    runs = [ingest(nightly_raw, home, day, spark) for day in (D1, D2, D3)]
    return home, runs


@pytest.fixture(scope="module")
def backfill(spark, nightly_raw, tmp_path_factory):
    home = tmp_path_factory.mktemp("backfill")
    return home, ingest(nightly_raw, home, D3, spark)


def test_backfilling_three_nights_gives_the_same_table_and_id_map_as_night_by_night(night_by_night, backfill):
    (home_a, runs), (home_b, run_b) = night_by_night, backfill
    assert [r["ingested"] for r in runs] == [["date=2024-03-01"], ["date=2024-03-02"], ["date=2024-03-03"]]
    assert run_b["ingested"] == ["date=2024-03-01", "date=2024-03-02", "date=2024-03-03"]
    a, b = curated_rows(home_a / "curated"), curated_rows(home_b / "curated")
    assert len(a) == runs[-1]["history_rows"] == run_b["history_rows"] > 1000
    pd.testing.assert_frame_equal(a, b)
    assert id_map(home_a / "idmap") == id_map(home_b / "idmap")
    assert runs[-1]["idmap_version"] == run_b["idmap_version"]
    recs_a, recs_b = increments.committed(home_a / "curated"), increments.committed(home_b / "curated")
    for name in recs_a:
        keep = ("rows_in", "rows_out", "duplicates", "quarantined", "raw_fingerprint", "idmap_version", "as_of")
        assert {k: recs_a[name][k] for k in keep} == {k: recs_b[name][k] for k in keep}
        r = recs_a[name]
        assert r["rows_in"] == r["rows_out"] + r["duplicates"] + r["quarantined"]
    # the run's totals reconcile too, and every listen is in the partition of its day
    assert run_b["rows_in"] == run_b["rows_out"] + run_b["duplicates"] + run_b["quarantined"]
    assert (pd.to_datetime(a["timestamp"]).dt.date.astype(str) == a["date"]).all()


def test_nights_after_the_run_date_are_not_ingested(night_by_night, backfill, nightly_raw):
    assert (nightly_raw / "date=2024-03-04").is_dir()
    for home in (night_by_night[0], backfill[0]):
        assert sorted(increments.committed(home / "curated")) == ["date=2024-03-01", "date=2024-03-02",
                                                                  "date=2024-03-03"]
        assert pd.to_datetime(curated_rows(home / "curated")["timestamp"], utc=True).max() < pd.Timestamp("2024-03-04",
                                                                                                           tz="UTC")


def test_a_re_run_of_a_night_ingests_nothing_and_changes_nothing(spark, night_by_night, nightly_raw):
    home, runs = night_by_night
    before = {p: p.stat().st_mtime_ns for p in sorted((home / "curated").rglob("*")) if p.is_file()}
    idmap_before = (home / "idmap" / "CURRENT").read_text()
    again = ingest(nightly_raw, home, D3, spark)
    assert again["ingested"] == [] and again["rows_in"] == 0
    assert again["partitions"] == runs[-1]["partitions"] and again["history_rows"] == runs[-1]["history_rows"]
    after = {p: p.stat().st_mtime_ns for p in sorted((home / "curated").rglob("*")) if p.is_file()}
    assert after == before and (home / "idmap" / "CURRENT").read_text() == idmap_before
    # an earlier night re-run (a retried old DAG run) sees only its own partitions
    old = ingest(nightly_raw, home, D1, spark)
    assert old["ingested"] == [] and old["partitions"] == ["date=2024-03-01"]
    assert old["history_rows"] == runs[0]["history_rows"] and old["idmap_version"] == runs[0]["idmap_version"]


def test_the_training_window_holds_only_its_days(spark, night_by_night, tmp_path):
    home, runs = night_by_night
    everything = curated_rows(home / "curated")
    window = increments.training_listens(spark, home / "curated", runs[-1]["partitions"], up_to=D3, window_days=2)
    expected = everything[pd.to_datetime(everything["timestamp"], utc=True) >= pd.Timestamp("2024-03-02", tz="UTC")]
    assert 0 < len(expected) < len(everything)
    stats = split.split(window, tmp_path / "split", SplitConfig(), has_timestamps=True, spark=spark,
                        shape=(runs[-1]["n_users_mapped"], runs[-1]["n_tracks_mapped"]),
                        idmap_version=runs[-1]["idmap_version"])
    assert stats["rows_in"] == len(expected)
    got = pd.concat([pd.read_parquet(tmp_path / "split" / s) for s in ("train", "val", "test")])
    assert pd.to_datetime(got["timestamp"], utc=True).min() >= pd.Timestamp("2024-03-02", tz="UTC")
    key = ["user_idx", "track_idx", "timestamp", "source_row"]
    assert sorted(map(tuple, got[key].values.tolist())) == sorted(map(tuple, expected[key].values.tolist()))
    full = increments.training_listens(spark, home / "curated", runs[-1]["partitions"], up_to=D3, window_days=0)
    assert full.count() == len(everything)


# ---------------------------------------------------------------- hand-made nights

def write_night(root: Path, day: dt.date, listens: list[tuple[str, str, str]]) -> Path:
    """One ListenBrainz-layout night: (user, msid, 'HH:MM' on ``day`` or a full ISO time) rows."""
    part = root / f"date={day}"
    (part / "interactions").mkdir(parents=True, exist_ok=True)
    ts = [dt.datetime.fromisoformat(t).replace(tzinfo=dt.timezone.utc) if "T" in t
          else dt.datetime.combine(day, dt.time.fromisoformat(t), tzinfo=dt.timezone.utc) for _, _, t in listens]
    pq.write_table(pa.table({"user_id": [u for u, _, _ in listens], "recording_msid": [m for _, m, _ in listens],
                             "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC"))}), part / "interactions" / "p0.parquet")
    msids = sorted({m for _, m, _ in listens})
    pq.write_table(pa.table({"recording_msid": msids, "artist_name": [f"artist {m}" for m in msids],
                             "track_name": [f"song {m}" for m in msids], "recording_mbid": [None] * len(msids)},
                            schema=pa.schema([("recording_msid", pa.string()), ("artist_name", pa.string()),
                                              ("track_name", pa.string()), ("recording_mbid", pa.string())])),
                   part / "tracks.parquet")
    return part


def test_a_listen_repeated_in_a_later_night_is_a_counted_duplicate_and_a_retried_commit_skips(spark, tmp_path):
    raw, home = tmp_path / "raw", tmp_path / "home"
    write_night(raw, D1, [("alice", "m1", "10:00"), ("alice", "m2", "11:00"), ("bob", "m1", "12:00")])
    # night 2 repeats alice's listen of night 1 (a late re-export) and holds one of its own listens twice
    write_night(raw, D2, [("alice", "m1", "2024-03-01T10:00"), ("carol", "m3", "09:00"), ("carol", "m3", "09:00"),
                          ("bob", "m2", "13:00")])
    first = ingest(raw, home, D1, spark)
    assert first["ingested"] == ["date=2024-03-01"] and first["rows_out"] == 3
    cfg = IngestConfig(input_path=str(raw))
    validated = increments.validate_pending(cfg, home / "curated", home / "work", up_to=D2, spark=spark)
    assert validated["pending"] == ["date=2024-03-02"]
    second = increments.commit_pending(validated, idmap_root=home / "idmap", spark=spark)
    rec = increments.committed(home / "curated")["date=2024-03-02"]
    assert (rec["rows_in"], rec["rows_out"], rec["duplicates"], rec["quarantined"]) == (4, 2, 2, 0)
    assert rec["duplicates_of_history"] == 1 and rec["duplicates_within_partition"] == 1
    assert second["rows_in"] == second["rows_out"] + second["duplicates"] + second["quarantined"]
    # the dedup task retried after its commit: the partition is found and skipped, nothing changes
    before = curated_rows(home / "curated")
    retry = increments.commit_pending(validated, idmap_root=home / "idmap", spark=spark)
    assert retry["ingested"] == [] and retry["skipped"] == ["date=2024-03-02"]
    pd.testing.assert_frame_equal(curated_rows(home / "curated"), before)
    assert len(before) == 5 and not before.duplicated(["user_idx", "track_idx", "timestamp"]).any()
    users = id_map(home / "idmap")["users"]
    assert users == {"alice": 0, "bob": 1, "carol": 2}  # carol is new on night 2: the next id


def test_a_raw_night_rewritten_after_ingestion_stops_the_run_with_the_fix(spark, tmp_path):
    raw, home = tmp_path / "raw", tmp_path / "home"
    night1 = write_night(raw, D1, [("alice", "m1", "10:00"), ("bob", "m2", "11:00")])
    write_night(raw, D2, [("alice", "m2", "10:00")])
    ingest(raw, home, D1, spark)
    f = night1 / "interactions" / "p0.parquet"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # touched, same bytes: fine
    assert ingest(raw, home, D1, spark)["ingested"] == []
    write_night(raw, D1, [("alice", "m1", "10:00"), ("bob", "m2", "11:00"), ("bob", "m1", "12:00")])
    with pytest.raises(increments.PartitionChanged) as err:
        ingest(raw, home, D2, spark)
    msg = str(err.value)
    assert str(night1) in msg and "modified: interactions/p0.parquet" in msg
    assert f"delete {home / 'curated' / 'listens' / 'date=2024-03-01'}" in msg
    assert "date=2024-03-02" not in increments.committed(home / "curated")  # nothing ingested past the error
    # the fix the message names: delete the curated night, run again
    shutil.rmtree(home / "curated" / "listens" / "date=2024-03-01")
    shutil.rmtree(home / "curated" / "meta" / "date=2024-03-01")
    again = ingest(raw, home, D2, spark)
    assert again["ingested"] == ["date=2024-03-01", "date=2024-03-02"]
    assert len(curated_rows(home / "curated")) == 4
    assert json.loads((home / "curated" / "dataset.json").read_text())["input_root"] == str(raw.resolve())


def test_layout_errors_name_the_folder(tmp_path):
    (tmp_path / "date=2024-03-01").mkdir()
    (tmp_path / "date=2024-3-2").mkdir()
    with pytest.raises(ValueError, match=r"date=2024-3-2.*rename it to date=2024-03-02"):
        increments.raw_partitions(tmp_path)
    shutil.rmtree(tmp_path / "date=2024-3-2")
    (tmp_path / "interactions").mkdir()
    with pytest.raises(ValueError, match=r"mixes date= partitions with other entries \['interactions'\]"):
        increments.raw_partitions(tmp_path)
    (tmp_path / "interactions").rename(tmp_path / "_old")
    assert [p.name for p in increments.raw_partitions(tmp_path)] == ["date=2024-03-01"]
