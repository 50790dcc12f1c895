"""The stages from the command line, as a user runs them: `pipeline ingest` then `pipeline split`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.data]
BIN = Path(sys.executable).parent


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
