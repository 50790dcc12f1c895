"""The synthetic log: deterministic, shaped like the seed's data, with planted taste structure."""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import pandas as pd
import pytest

from pipeline import synth
from pipeline.ingest import normalize_name


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "demo"
    summary = synth.generate(out, n_listens=60_000, seed=5, chunk_rows=20_000)
    return out, summary, pd.read_parquet(out / "interactions"), pd.read_parquet(out / "tracks.parquet")


def test_same_arguments_give_byte_identical_files_and_other_seeds_differ(log, tmp_path):
    out, summary, _, _ = log
    again = synth.generate(tmp_path / "again", n_listens=60_000, seed=5, chunk_rows=20_000)
    assert again == summary and digest(tmp_path / "again") == digest(out)
    synth.generate(tmp_path / "other", n_listens=60_000, seed=6, chunk_rows=20_000)
    assert digest(tmp_path / "other") != digest(out)
    assert len(list((out / "interactions").glob("*.parquet"))) >= 3  # written in chunks


def test_schema_counts_and_time_range(log):
    _, summary, listens, tracks = log
    assert list(listens.columns) == ["user_id", "recording_msid", "timestamp"]
    assert str(listens["timestamp"].dtype) == "datetime64[us, UTC]"
    assert list(tracks.columns) == ["recording_msid", "artist_name", "track_name", "recording_mbid"]
    assert len(listens) == summary["listens"] and abs(len(listens) - 60_000) < 600
    assert listens.duplicated().sum() == summary["duplicates_planted"] > 0
    assert listens["timestamp"].min() >= pd.Timestamp("2023-01-01", tz="UTC")
    assert listens["timestamp"].max() < pd.Timestamp("2023-01-01", tz="UTC") + pd.Timedelta(days=730)
    assert set(listens["recording_msid"]) <= set(tracks["recording_msid"])
    assert abs(tracks["recording_mbid"].isna().mean() - 0.3) < 0.03


def test_heavy_tails_and_re_listens(log):
    _, _, listens, _ = log
    per_user = listens.groupby("user_id").size()
    assert per_user.max() > 20 * per_user.median()
    per_track = listens["recording_msid"].value_counts()
    assert per_track.iloc[0] > 50 * per_track.median()
    assert (per_track == 1).mean() > 0.2  # many tracks heard once
    assert listens.drop_duplicates().duplicated(["user_id", "recording_msid"]).any()  # music is re-listened


def test_name_variants_normalize_to_one_name(log):
    _, summary, _, tracks = log
    no_mbid = tracks[tracks["recording_mbid"].isna()]
    keys = no_mbid["artist_name"].map(normalize_name) + "|" + no_mbid["track_name"].map(normalize_name)
    raw = no_mbid["artist_name"] + "|" + no_mbid["track_name"]
    merged = keys.duplicated(keep=False) & ~raw.duplicated(keep=False)
    assert merged.sum() >= summary["name_variant_pairs"] > 0
    assert any(unicodedata.normalize("NFC", a) != a for a in no_mbid["artist_name"])  # decomposed accents


def test_listens_follow_planted_taste_clusters(log):
    _, _, listens, _ = log
    # each track's listeners: their users' other tracks share structure; proxy: a user's listens concentrate
    # on few of the tracks' co-listening communities, far above chance
    heavy = listens.groupby("user_id").filter(lambda g: len(g) >= 100)
    codes = heavy["recording_msid"].astype("category").cat.codes.to_numpy()
    users = heavy["user_id"].astype("category").cat.codes.to_numpy()
    m = np.zeros((users.max() + 1, codes.max() + 1), dtype=np.float32)
    np.add.at(m, (users, codes), 1)
    m = (m > 0).astype(np.float32)
    overlap = m @ m.T
    np.fill_diagonal(overlap, 0)
    sizes = m.sum(axis=1)
    jaccard = overlap / (sizes[:, None] + sizes[None, :] - overlap)
    best = jaccard.max(axis=1).mean()
    median = np.median(jaccard)
    assert best > 3 * median, (best, median)
