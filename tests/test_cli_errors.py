"""Every `pipeline` subcommand on bad input: one clear line on stderr, a non-zero exit, no traceback.

Real subprocesses of the installed CLI, as a user runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def ratings_from_1990(path: Path) -> Path:
    """A MovieLens ratings.csv in which user 3 rated only before the 1995 floor: validation must fail."""
    rows = [f"1,{m},4.0,{946684800 + m * 86400}" for m in range(1, 40)]        # 2000
    rows += [f"2,{m},3.5,{820454400 + m * 86400}" for m in range(1, 40)]       # 1996
    rows += [f"3,{m},2.0,{631152000 + m * 86400}" for m in range(1, 6)]        # 1990: before 1995
    path.mkdir(parents=True, exist_ok=True)
    (path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of bad inputs, one per kind of expected failure."""
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.tsv").write_text("")
    (d / "commas.tsv").write_text("user_000001,2009-05-04T23:08:57Z,x,Artist,,Title\n")
    (d / "truncated" / "interactions").mkdir(parents=True)
    (d / "truncated" / "interactions" / "part-0.parquet").write_bytes(b"PAR1 cut off")
    (d / "truncated" / "tracks.parquet").write_bytes(b"PAR1 cut off")
    (d / "not_parquet.parquet").write_text("user,items\nu1,a\n")
    nanos = d / "nanos" / "interactions"  # what pandas writes after timestamp arithmetic
    nanos.mkdir(parents=True)
    import pandas as pd

    listens = pd.DataFrame({"user_id": ["u1"], "recording_msid": ["m1"],
                            "timestamp": pd.to_datetime(["2026-01-01T00:00:00.000000001Z"])})
    listens.to_parquet(nanos / "part-0.parquet", version="2.6")
    listens[["recording_msid"]].to_parquet(d / "nanos" / "tracks.parquet")
    (d / "ingest_no_summary").mkdir()
    (d / "ingest_bad_summary").mkdir()
    (d / "ingest_bad_summary" / "summary.json").write_text("{not json")
    (d / "ingest_no_listens").mkdir()
    (d / "ingest_no_listens" / "summary.json").write_text(
        '{"has_timestamps": true, "n_users_mapped": 2, "n_tracks_mapped": 2, "idmap_version": "v1"}')
    (d / "run_without_context").mkdir()
    ratings_from_1990(d / "ml")
    return d


# (subcommand arguments, a fragment the error line must hold); {bad} is the folder above, {home} PIPELINE_HOME
CASES = [
    ("synth --out {bad}/synth --listens 0", "n_listens=0 must be >= 1"),
    ("synth --out {bad}/empty.tsv/x --listens 100", "empty.tsv"),
    ("ingest --format xml --input {bad}/empty.tsv --out {bad}/o", "argument --format: invalid choice: 'xml'"),
    ("ingest --format generic --columns {{bad --input {bad}/empty.tsv --out {bad}/o", "Expecting property name"),
    ("ingest --format lastfm1k --input {bad}/missing.tsv --out {bad}/o", "missing.tsv does not exist"),
    ("ingest --format lastfm1k --input {bad}/empty.tsv --out {bad}/o", "has no rows"),
    ("ingest --format lastfm1k --input {bad}/commas.tsv --out {bad}/o", "no '\\t' separator found"),
    ("ingest --format listenbrainz --input {bad}/truncated --out {bad}/o", "not a readable Parquet file"),
    ("ingest --format listenbrainz --input {bad}/nanos --out {bad}/o", "coerce_timestamps='us'"),
    ("ingest --format movielens --input {bad}/ml --out {bad}/o-ml",
     "5 row(s) 'timestamp: before min_timestamp 1995-01-01T00:00:00Z' (to admit them set "
     "min_timestamp=1990-01-02T00:00:00Z; 1 user(s) have no other rows and would be lost entirely (3))"),
    ("ingest --format listenbrainz --input {bad}/ml --as-of 2024-01-01 --out {bad}/o", "--as-of and --curated apply"),
    ("partition --format hetrec --input {bad}/ml --out {bad}/p", "reads the listenbrainz layout only"),
    ("partition --input {bad}/missing --out {bad}/p", "does not exist"),
    ("split --input {bad}/missing --out {bad}/s", "summary.json"),
    ("split --input {bad}/ingest_bad_summary --out {bad}/s", "summary.json"),
    ("split --input {bad}/ingest_no_listens --out {bad}/s", "listens"),
    ("split --input {bad}/ingest_no_listens --strategy sideways --out {bad}/s", "argument --strategy: invalid choice: 'sideways'"),
    ("evaluate --recs {bad}/missing.parquet --truth {bad}/missing.parquet", "does not exist"),
    ("evaluate --recs {bad}/not_parquet.parquet --truth {bad}/not_parquet.parquet", "not_parquet.parquet"),
    ("evaluate --recs {bad}/missing.parquet --truth {bad}/missing.parquet -k 0", "k=0 must be >= 1"),
    ("recommend --user u1 --model models:/no-such-model@champion", "no-such-model"),
    ("recommend --user u1 --model {bad}/no-such-folder", "no-such-folder"),
    ("recommend --user u1", "cannot answer from the model models:/music-recs@champion: Registered Model"),
    ("report --run-dir {bad}/run_without_context", "context.json"),
    ("report", "no runs under"),
]


@pytest.mark.spark
@pytest.mark.parametrize("args,fragment", CASES, ids=[c[0].split(" --")[0] + ":" + c[1][:30] for c in CASES])
def test_bad_input_is_one_clear_line_and_no_traceback(bad, tmp_path, args, fragment):
    env = {**os.environ, "PIPELINE_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = args.format(bad=bad, home=tmp_path / "home").split(" ")
    out = subprocess.run([str(BIN / "pipeline"), *argv], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0, out.stdout[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-4000:]
    command = argv[0]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith(f"pipeline {command}: error:")]
    assert len(errors) == 1, out.stderr[-4000:]
    assert fragment in errors[0], errors[0]
