"""The stages from the command line, as a user runs them: `pipeline ingest` then `pipeline split`, on a
snapshot and on date-partitioned nights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.spark
BIN = Path(sys.executable).parent


@pytest.mark.data
def test_ingest_and_split_the_lastfm_1k_fixture(shared_data, tmp_path):
    env = {**os.environ, "PIPELINE_HOME": str(tmp_path / "home")}
    src = shared_data / "lastfm-1k-fixture" / "userid-timestamp-artid-artname-traid-traname.head5000.tsv"
    out = subprocess.run([str(BIN / "pipeline"), "ingest", "--format", "lastfm1k", "--input", str(src),
                          "--out", str(tmp_path / "ingest")], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "ingest" / "summary.json").read_text())
    assert summary["rows_in"] == 5000 == summary["rows_out"] + summary["duplicates"] + summary["quarantined"]
    assert summary["rows_by_mbid"] + summary["rows_by_name"] + summary["rows_by_source_id"] == summary["rows_out"] + \
        summary["duplicates"]
    assert summary["rows_by_name"] > 0  # 1,396 listens have no track mbid: identified by (artist, title)
    assert (tmp_path / "home" / "state" / "idmap" / "CURRENT").read_text().strip() == summary["idmap_version"]
    listens = pd.read_parquet(tmp_path / "ingest" / "listens")
    assert len(listens) == summary["rows_out"] and listens["user_idx"].nunique() == 2
    out = subprocess.run([str(BIN / "pipeline"), "split", "--input", str(tmp_path / "ingest"), "--strategy",
                          "leave_k_out", "--k", "10", "--no-test", "--out", str(tmp_path / "split")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| train |" in out.stdout and "| val |" in out.stdout
    stats = json.loads((tmp_path / "split" / "stats.json").read_text())
    per_user = listens.groupby("user_idx").size()
    assert stats["table"]["val"]["interactions"] == int(per_user.clip(upper=10).sum())  # each user's last 10
    assert sum(v["interactions"] for v in stats["table"].values()) == summary["rows_out"]


@pytest.mark.data
def test_a_temporal_split_of_untimed_data_is_a_clear_error(shared_data, tmp_path):
    env = {**os.environ, "PIPELINE_HOME": str(tmp_path / "home")}
    out = subprocess.run([str(BIN / "pipeline"), "ingest", "--format", "audioscrobbler", "--input",
                          str(shared_data / "audioscrobbler-2005-small"), "--out", str(tmp_path / "ingest")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "ingest" / "summary.json").read_text())
    assert summary["loader_stats"]["aliases_applied"] > 0 and summary["duplicates"] > 0  # aliased rows merged
    out = subprocess.run([str(BIN / "pipeline"), "split", "--input", str(tmp_path / "ingest"), "--strategy",
                          "temporal_user", "--out", str(tmp_path / "split")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 2 and "needs timestamps" in out.stderr and "random_user" in out.stderr


def test_nightly_increments_from_the_command_line(tmp_path):
    """partition → ingest --as-of night by night → split --window-days, as the README shows them."""
    env = {**os.environ, "PIPELINE_HOME": str(tmp_path / "home")}

    def pipeline(*args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([str(BIN / "pipeline"), *args], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return out

    from pipeline import synth

    synth.generate(tmp_path / "log", n_listens=6000, n_users=80, n_tracks=500, start="2024-03-01", days=7, seed=3)
    pipeline("partition", "--format", "listenbrainz", "--input", str(tmp_path / "log"), "--out", str(tmp_path / "nightly"),
             "--until", "2024-03-06")  # the 7th night has not landed yet
    nights = sorted(p.name for p in (tmp_path / "nightly").glob("date=*"))
    assert nights == [f"date=2024-03-0{d}" for d in range(1, 7)]
    curated = tmp_path / "home" / "curated" / "nightly"

    pipeline("ingest", "--format", "listenbrainz", "--input", str(tmp_path / "nightly"), "--as-of", "2024-03-03",
             "--out", str(tmp_path / "night3"))
    first = json.loads((tmp_path / "night3" / "summary.json").read_text())
    assert first["ingested"] == nights[:3] and first["partitions"] == nights[:3]
    assert first["rows_in"] == first["rows_out"] + first["duplicates"] + first["quarantined"] > 0
    ids_before = pd.read_parquet(tmp_path / "home" / "state" / "idmap" / first["idmap_version"] / "users")

    # (a re-run of a night adds nothing: tests/test_increments.py, in one Spark session)

    pipeline("ingest", "--format", "listenbrainz", "--input", str(tmp_path / "nightly"), "--as-of", "2024-03-06",
             "--out", str(tmp_path / "night6"))
    second = json.loads((tmp_path / "night6" / "summary.json").read_text())
    assert second["ingested"] == nights[3:] and second["partitions"] == nights
    assert second["history_rows"] == len(pd.read_parquet(curated / "listens"))
    ids_after = pd.read_parquet(tmp_path / "home" / "state" / "idmap" / second["idmap_version"] / "users")
    kept = ids_before.merge(ids_after, on="key", suffixes=("_before", "_after"))
    assert len(kept) == len(ids_before) and (kept["id_before"] == kept["id_after"]).all()

    pipeline("split", "--input", str(tmp_path / "night6"), "--strategy", "temporal_user", "--no-test",
             "--window-days", "2", "--out", str(tmp_path / "split"))
    listens = pd.read_parquet(curated / "listens")
    in_window = int((pd.to_datetime(listens["timestamp"], utc=True) >= pd.Timestamp("2024-03-05", tz="UTC")).sum())
    stats = json.loads((tmp_path / "split" / "stats.json").read_text())
    assert sum(v["interactions"] for v in stats["table"].values()) == in_window < len(listens)
