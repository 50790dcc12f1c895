"""Validation end to end on a messy file: bad rows are quarantined with a reason, counts reconcile,
and a batch with too many bad rows stops the run, naming the failed expectations."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from pipeline import ingest
from pipeline.config import IngestConfig
from pipeline.validate import ValidationFailed

pytestmark = pytest.mark.spark

AS_OF = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
MAPPING = {"user_id": "user", "artist_name": "artist", "track_name": "title", "timestamp": "ts", "play_count": "n"}


def messy_csv(path, n_good=200):
    good = [f"u{i % 7},Artist {i % 5},Song {i % 11},2024-03-{1 + i % 28:02d}T10:00:00Z,1" for i in range(n_good)]
    bad = [
        ",Artist,Song,2024-03-01T10:00:00Z,1",          # null user
        "u1,Artist,Song,2024-03-01T10:00:00Z,0",        # zero count
        "u1,Artist,Song,2024-03-01T10:00:00Z,-2",       # negative count
        "u1,Artist,Song,2024-03-01T10:00:00Z,lots",     # non-numeric count
        "u1,Artist,Song,2031-01-01T00:00:00Z,1",        # in the future
        "u1,Artist,Song,1990-01-01T00:00:00Z,1",        # implausibly old
        "u1,Artist,Song,not a date,1",                  # unparseable
        "u2,,,2024-03-01T10:00:00Z,1",                  # no track at all
    ]
    dup = good[:3]                                      # exact duplicates
    path.write_text("user,artist,title,ts,n\n" + "\n".join(good + bad + dup) + "\n")
    return len(good) + len(bad) + len(dup), len(bad), len(dup)


def test_bad_rows_are_quarantined_with_reasons_and_counts_reconcile(spark, tmp_path):
    total, n_bad, n_dup = messy_csv(tmp_path / "listens.csv")
    cfg = IngestConfig(input_path=str(tmp_path / "listens.csv"), input_format="generic", columns=MAPPING,
                       max_quarantine_share=0.05)
    s = ingest.ingest(cfg, tmp_path / "out", idmap_root=tmp_path / "idmap", spark=spark, as_of=AS_OF)
    assert s["rows_in"] == total == s["rows_out"] + s["duplicates"] + s["quarantined"]
    assert s["quarantined"] == n_bad and s["duplicates"] >= n_dup
    reasons = s["quarantined_by_reason"]
    assert reasons["user_id: null or blank"] == 1
    assert reasons["play_count: below min_play_count 1"] == 2
    assert reasons["play_count: not an integer 'lots'"] == 1
    assert any(r.startswith("timestamp: after max_timestamp") for r in reasons)
    assert any(r.startswith("timestamp: before") for r in reasons)
    assert reasons["timestamp: unparseable 'not a date'"] == 1
    q = pd.read_parquet(tmp_path / "out" / "quarantine")
    assert len(q) == n_bad and q["reason"].notna().all() and set(q["source_row"]) >= {200}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["quarantined"] == n_bad


def test_a_batch_over_the_threshold_fails_listing_the_expectations(spark, tmp_path):
    messy_csv(tmp_path / "listens.csv", n_good=20)
    cfg = IngestConfig(input_path=str(tmp_path / "listens.csv"), input_format="generic", columns=MAPPING)
    with pytest.raises(ValidationFailed) as err:
        ingest.validate_stage(cfg, tmp_path / "out", spark=spark, as_of=AS_OF)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"validation of {tmp_path / 'listens.csv'} failed: 8 of 31 rows")
    # each rule broken, with its count, an example reason and the setting or fix that would admit the rows
    assert "2 row(s) 'play_count: below min_play_count 1'" in message
    assert "1 row(s) 'timestamp: before min_timestamp 2000-01-01T00:00:00Z' (to admit them set " \
           "min_timestamp=1990-01-01T00:00:00Z)" in message
    assert "1 row(s) 'user_id: null or blank' (give every row a user id)" in message
    assert "2 row(s) e.g. 'play_count: not an integer 'lots'' (2 kinds)" in message  # and 'not a date'

    assert "timestamp: after max_timestamp 2025-01-02T00:00:00Z" in message and "max_timestamp=2031-01-01T00:00:00Z" in message
    assert "max_quarantine_share=0.01" in message and "raising max_quarantine_share to 0.2581" in message
    failed = {f["expectation"] + "(" + (f["column"] or "") + ")" for f in err.value.failed}
    assert {"expect_column_values_to_be_between(play_count)", "expect_column_values_to_not_be_null(user_id)",
            "expect_column_values_to_be_null(broken_rule)"} <= failed
    # nothing is lost even when the run stops: the quarantine and the report are written
    assert len(pd.read_parquet(tmp_path / "out" / "quarantine")) == 8
    assert (tmp_path / "out" / "validation.json").exists()


STARS = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]


def ratings_1996(path):
    """ratings.csv from 1996 on: users 1-4 rate every half star; user 5 rated only 1.0 and 2.0."""
    rows = [(u, 10 * u + i, r) for u in range(1, 5) for i, r in enumerate(STARS)] + [(5, 60, 1.0), (5, 61, 2.0)]
    path.mkdir()
    (path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{m},{r},{828_000_000 + 3_600 * i}\n" for i, (u, m, r) in enumerate(rows)))
    return rows


@pytest.mark.parametrize("mapping", ["binary", "threshold", "weight"])
def test_ratings_become_confidence_by_the_documented_mapping(spark, tmp_path, mapping):
    rows = ratings_1996(tmp_path / "ml")
    cfg = IngestConfig(input_path=str(tmp_path / "ml"), input_format="movielens", rating_mapping=mapping)
    s = ingest.validate_stage(cfg, tmp_path / "out", spark=spark, as_of=AS_OF)
    kept = pd.read_parquet(tmp_path / "out" / "validated").sort_values("source_row")
    expected = {"binary": [(m, 1) for _, m, _ in rows],
                "threshold": [(m, 1) for _, m, r in rows if r >= 4.0],
                "weight": [(m, int(r * 2)) for _, m, r in rows]}[mapping]
    assert list(zip(kept["source_track_id"].astype(int), kept["play_count"])) == expected
    assert s["rows_in"] == len(rows) == s["rows_out"] + s["quarantined"]
    if mapping == "threshold":  # low ratings are kept out by design: quarantined with the reason, and no failure
        assert s["success"] and s["quarantined_by_reason"] == {"rating: below rating_threshold 4 (not a positive)": 30}
        assert s["rules"]["rating_threshold"]["users_lost"] == s["users_lost"] == 1
        assert s["rules"]["rating_threshold"]["users_lost_sample"] == ["5"]
    else:  # the 1996 ratings pass the MovieLens floor: nothing quarantined, every user kept
        assert s["quarantined"] == 0 and s["users_lost"] == 0 and kept["user_id"].nunique() == 5
