"""End to end on rated input: a MovieLens-format `ratings.csv` with ratings from 1996 (half stars, the
latest-small layout) goes through `airflow dags test` on default ingest settings: nothing quarantined,
every user kept, and the run ends with a promoted model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pipeline_runs import airflow_env

from pipeline.paths import RunLayout

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def ratings_like_ml_latest_small(folder: Path, *, users: int = 300, movies: int = 900, seed: int = 3) -> pd.DataFrame:
    """One rating per (user, movie), half stars, 1996-03-29 .. 2018-09-24, with taste clusters to learn."""
    rng = np.random.default_rng(seed)
    cluster_of_movie = rng.integers(0, 12, movies)
    rows = []
    lo, hi = pd.Timestamp("1996-03-29T18:36:55Z").value // 10**9, pd.Timestamp("2018-09-24T14:27:30Z").value // 10**9
    for u in range(users):
        taste = rng.integers(0, 12)
        pool = np.flatnonzero(cluster_of_movie == taste)
        n = int(rng.integers(20, 60))
        picks = np.unique(np.concatenate([rng.choice(pool, size=min(len(pool), n * 2 // 3), replace=False),
                                          rng.integers(0, movies, n // 3)]))
        start = rng.integers(lo, hi - 86_400 * 365)
        times = np.sort(start + rng.integers(0, 86_400 * 365, picks.size))
        for m, t in zip(picks, times):
            rows.append((u + 1, int(m) + 1, float(rng.integers(1, 11)) / 2, int(t)))
    frame = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    folder.mkdir(parents=True)
    frame.to_csv(folder / "ratings.csv", index=False)
    pd.DataFrame({"movieId": np.arange(1, movies + 1), "title": [f"Movie {i}, The ({1990 + i % 30})" for i in range(movies)],
                  "genres": "Drama"}).to_csv(folder / "movies.csv", index=False)
    return frame


def test_a_movielens_file_from_1996_runs_to_a_promoted_model_on_defaults(tmp_path):
    home = tmp_path / "home"
    ratings = ratings_like_ml_latest_small(home / "data" / "ml")
    assert pd.to_datetime(ratings["timestamp"].min(), unit="s").year == 1996
    env = airflow_env(home)
    conf = {"input_path": str(home / "data" / "ml"), "input_format": "movielens", "exclude_seen": True,
            "split_strategy": "random_user", "ranks": [8], "reg_params": [0.1], "alphas": [2.0], "max_iters": [5],
            "betas": [10], "engine": "implicit", "index_kinds": ["hnsw_ip"], "hnsw_M": [8],
            "hnsw_ef_construction": 40}
    out = subprocess.run([str(BIN / "airflow"), "dags", "test", "music_recs_nightly", "-c", json.dumps(conf)],
                         env=env, capture_output=True, text=True, timeout=1200)
    log = out.stdout + out.stderr
    assert out.returncode == 0 and "DagRun Finished" in log and "state=failed" not in log, log[-5000:]
    lay = RunLayout(next((home / "runs").iterdir()))
    validated = json.loads(lay.ingest.validate_summary.read_text())
    assert validated["quarantined"] == 0 and validated["rows_out"] == len(ratings), validated
    ingested = json.loads(lay.ingest.summary.read_text())
    assert ingested["n_users_mapped"] == ratings["userId"].nunique()  # every user kept
    titles = pd.read_parquet(lay.ingest.tracks)["track_name"]
    assert titles.str.startswith("Movie ").all()  # movies.csv read beside the ratings
    promotion = json.loads(lay.promotion.read_text())
    assert promotion["alias"] == "champion" and promotion["version"] == "1"
