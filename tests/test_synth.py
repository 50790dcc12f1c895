"""The synthetic log: deterministic, shaped like the seed's data, with planted taste structure."""

from __future__ import annotations

import hashlib
import importlib.util
import unicodedata
from pathlib import Path

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


def test_demo_track_table_is_written_in_chunks_with_the_same_content(log, tmp_path):
    import pyarrow.parquet as pq

    _, summary, _, tracks = log
    again = synth.generate(tmp_path / "chunked", n_listens=60_000, seed=5, chunk_rows=20_000, track_chunk=2_000)
    assert again == summary and pq.ParquetFile(tmp_path / "chunked" / "tracks.parquet").num_row_groups >= 3
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "chunked" / "tracks.parquet"), tracks)


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


# ---- the seed's shape at a scale parameter (`pipeline synth --shape seed --listens N`) ----


@pytest.fixture(scope="module")
def seed_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "seed"
    summary = synth.generate(out, shape="seed", n_listens=400_000, seed=5, chunk_rows=100_000, track_chunk=20_000)
    return out, summary, pd.read_parquet(out / "interactions"), pd.read_parquet(out / "tracks.parquet")


def test_seed_shape_is_deterministic_and_streams_both_tables(seed_log, tmp_path):
    out, summary, _, _ = seed_log
    kw = dict(shape="seed", n_listens=400_000, chunk_rows=100_000, track_chunk=20_000)
    again = synth.generate(tmp_path / "again", seed=5, **kw)
    assert again == summary and digest(tmp_path / "again") == digest(out)
    synth.generate(tmp_path / "other", seed=6, **kw)
    assert digest(tmp_path / "other") != digest(out)
    assert len(list((out / "interactions").glob("*.parquet"))) >= 4
    import pyarrow.parquet as pq
    assert pq.ParquetFile(out / "tracks.parquet").num_row_groups >= 3  # track table written chunk by chunk


def test_seed_shape_statistics(seed_log):
    """What a user checks against the seed: users, tracks per listen, single-listen tracks, duplicates, MBIDs."""
    _, summary, listens, tracks = seed_log
    assert summary["shape"] == "seed" and len(listens) == summary["listens"] and abs(len(listens) - 400_000) < 100
    per_user = listens.groupby("user_id").size()
    assert len(per_user) == summary["users"] == 800  # listens / 500, at most 8,000
    assert per_user.median() >= 100 and per_user.max() > 20 * per_user.median()  # heavy-tailed histories
    per_track = listens.drop_duplicates()["recording_msid"].value_counts()
    # the track table holds exactly the heard tracks: ~0.13 per listen (the seed: 23M / 179M)
    assert set(per_track.index) == set(tracks["recording_msid"]) and len(tracks) == summary["tracks"]
    assert 0.11 < len(tracks) / len(listens) < 0.16
    single = (per_track == 1).mean()
    assert single == pytest.approx(summary["single_listen_share"], abs=1e-4)
    assert 0.38 < single < 0.52  # seed: "over 45%"; ~41% at this size, 47% at 20M listens (module docstring)
    assert per_track.iloc[0] > 500 * per_track.median()  # power-law popularity
    dups = listens.duplicated().sum()
    assert dups == summary["duplicates_planted"] and 0 < dups / len(listens) < 3e-4  # seed: ~15k of 179M
    assert abs(tracks["recording_mbid"].isna().mean() - 0.3) < 0.02
    assert tracks["recording_msid"].is_unique


def test_seed_shape_name_variants_normalize_to_one_name(seed_log):
    _, summary, _, tracks = seed_log
    no_mbid = tracks[tracks["recording_mbid"].isna()]
    keys = no_mbid["artist_name"].map(normalize_name) + "|" + no_mbid["track_name"].map(normalize_name)
    raw = no_mbid["artist_name"] + "|" + no_mbid["track_name"]
    assert (keys.duplicated(keep=False) & ~raw.duplicated(keep=False)).sum() >= summary["name_variant_pairs"] > 0


def test_seed_shape_keeps_the_planted_structure_als_beats_popularity(seed_log):
    """Per user, the last 20% of listens held out: implicit ALS's MAP@100 far above the best popularity's."""
    als, pop = als_and_popularity(seed_log[2])
    assert als > 1.5 * pop, (als, pop)


def als_and_popularity(listens: pd.DataFrame) -> tuple[float, float]:
    """MAP@100 of implicit ALS and of popularity by listeners, each user's last 20% of listens held out."""
    import scipy.sparse as sp

    from pipeline.config import AlsConfig
    from pipeline.metrics import ranking_metrics
    from pipeline.models import als_implicit
    from pipeline.topk import topk, topk_for_scores

    df = listens.sort_values(["user_id", "timestamp", "recording_msid"], kind="stable")
    u = df["user_id"].astype("category").cat.codes.to_numpy()
    i = df["recording_msid"].astype("category").cat.codes.to_numpy()
    pos = df.groupby("user_id", observed=True).cumcount().to_numpy()
    n = np.bincount(u)[u]
    is_train = pos < np.ceil(0.8 * n)
    shape = (u.max() + 1, i.max() + 1)

    def matrix(sel):
        m = sp.csr_matrix((np.ones(sel.sum(), np.float32), (u[sel], i[sel])), shape=shape)
        m.sum_duplicates()
        return m

    train, truth = matrix(is_train), matrix(~is_train)
    model = als_implicit.fit(train, AlsConfig(rank=32, reg_param=0.1, alpha=1.0, max_iter=10, engine="implicit"))
    als = ranking_metrics(topk(model.user_factors, model.item_factors, 100), truth, 100)["map_at_100"]
    listeners = np.asarray((train > 0).sum(axis=0)).ravel()
    pop = ranking_metrics(topk_for_scores(listeners, 100, n_users=shape[0]), truth, 100)["map_at_100"]
    return als, pop


# ---- the calibrated shape (`--shape calibrated`): the seed shape with listeners who repeat themselves ----

# the range the real logs in ../shared/data span (benchmarks/shape_stats.py, benchmarks/results/shape-stats.md)
REAL_RANGE = {"top10": (0.409, 0.558), "distinct/listens": (0.011, 0.453), "top 1% share": (0.074, 0.617),
              "gini": (0.537, 0.939), "repeat rate": (0.761, 0.999)}


@pytest.fixture(scope="module")
def calibrated_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "calibrated"
    summary = synth.generate(out, shape="calibrated", n_listens=400_000, seed=5, chunk_rows=100_000,
                             track_chunk=20_000)
    return out, summary, pd.read_parquet(out / "interactions"), pd.read_parquet(out / "tracks.parquet")


def shape_statistics(listens: pd.DataFrame) -> dict[str, float]:
    """benchmarks/shape_stats.py's statistics of a log, per track: the definitions its table uses."""
    spec = importlib.util.spec_from_file_location("shape_stats", Path(__file__).resolve().parents[1] / "benchmarks"
                                                  / "shape_stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pairs = listens.rename(columns={"user_id": "user", "recording_msid": "item"}).assign(plays=1)
    stats = module.shape(pairs[["user", "item", "plays"]])
    return {k: stats[k] for k in REAL_RANGE}


def test_calibrated_shape_lies_within_the_real_logs_and_the_seed_shape_does_not(seed_log, calibrated_log):
    calibrated = shape_statistics(calibrated_log[2])
    outside = {k: round(v, 3) for k, v in calibrated.items() if not REAL_RANGE[k][0] <= v <= REAL_RANGE[k][1]}
    assert not outside, (outside, REAL_RANGE)
    seed = shape_statistics(seed_log[2])  # listeners who repeat themselves far less than real ones
    assert seed["repeat rate"] < REAL_RANGE["repeat rate"][0] and seed["distinct/listens"] > 0.6
    summary = calibrated_log[1]
    assert summary["shape"] == "calibrated" and summary["users"] == 800 and abs(summary["listens"] - 400_000) < 100
    assert 0.45 < summary["single_listen_share"] < 0.65  # the seed: "over 45%" of tracks heard once


def test_calibrated_shape_is_deterministic_and_als_still_beats_popularity(calibrated_log, tmp_path):
    out, _, listens, _ = calibrated_log
    again = synth.generate(tmp_path / "again", shape="calibrated", n_listens=400_000, seed=5, chunk_rows=100_000,
                           track_chunk=20_000)
    assert digest(tmp_path / "again") == digest(out) and again == calibrated_log[1]
    als, pop = als_and_popularity(listens)
    assert als > 1.5 * pop, (als, pop)


def test_seed_shape_names_tell_millions_of_tracks_apart():
    """At the seed's size ~7M tracks have no MBID and are keyed by name: their names must not collide
    (a name space of 1M pairs merged most of them into one another)."""
    import pyarrow as pa

    from pipeline.synth import _seed_track_names

    n = 3_000_000
    artist, title = _seed_track_names(np.arange(n, dtype=np.uint64), n // 10, seed=0)
    pairs = pa.table({"a": artist, "t": title}).group_by(["a", "t"]).aggregate([]).num_rows
    assert pairs / n > 0.999, f"{n - pairs:,} of {n:,} tracks share a name with another"
