"""Fast unit tests of the pure parts: configs, canonical track keys, split arithmetic, popularity."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.config import INPUT_FORMATS, AlsConfig, EvalConfig, IngestConfig, PopularityConfig, SplitConfig, als_grid, from_params, popularity_grid
from pipeline.ingest import normalize_name, track_key
from pipeline.models import PopularityModel
from pipeline.models.popularity import scores, track_stats_matrix
from pipeline.split import n_train


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Beyonce\u0301   Knowles ", "beyoncé knowles"),  # NFD accent → NFKC composed, trimmed, collapsed
        ("Beyoncé Knowles", "beyoncé knowles"),
        ("ＡＢＣ", "abc"),  # full-width → NFKC
        ("Straße", "strasse"),  # casefold, not lower
        ("   ", None),
        (None, None),
    ],
)
def test_normalize_name(raw, expected):
    assert normalize_name(raw) == expected


def test_track_key_prefers_mbid_then_names_then_source_id():
    assert track_key(" ABC-1 ", "A", "T", "m1") == "mbid:abc-1"
    assert track_key(None, "The  Band", "Song ", "m1") == "name:the band\x1fsong"
    assert track_key("", "The Band", None, "m1") == "src:m1"
    assert track_key(None, None, None, None) is None
    # two spellings of one song collapse to one key
    assert track_key(None, "Sigur Ro\u0301s", "Hoppípolla", "a") == track_key(None, "sigur rós ", "HOPPÍPOLLA", "b")


@pytest.mark.parametrize("n", range(0, 40))
def test_n_train_is_exact_ceiling(n):
    assert n_train(n, 0.8) == math.ceil(n * 4 / 5)
    assert n_train(n, 0.7) == -(-n * 7 // 10)  # 0.7 * 10 is 7 here, not 8 as in floating point


def test_configs_reject_bad_values_with_the_allowed_ones():
    with pytest.raises(ValueError, match="choose one of"):
        SplitConfig(strategy="by_moon_phase")
    with pytest.raises(ValueError, match="input_format"):
        IngestConfig(input_path="x", input_format="xml")
    with pytest.raises(ValueError, match="rank"):
        AlsConfig(rank=0)
    with pytest.raises(ValueError, match="beta only applies"):
        PopularityConfig(variant="plays", beta=10)
    with pytest.raises(ValueError, match="k="):
        EvalConfig(k=0)


@pytest.mark.parametrize("kwargs,match", [
    ({"min_timestamp": "last tuesday"}, "min_timestamp='last tuesday' is not an ISO-8601 date"),
    ({"min_timestamp": "2010-01-01", "max_timestamp": "2009-12-31"}, "is not before max_timestamp"),
    ({"min_play_count": 0}, "min_play_count=0 must be >= 1"),
    ({"max_play_count": 0}, "max_play_count=0 is below min_play_count=1"),
    ({"rating_mapping": "stars"}, "rating_mapping='stars' is not supported"),
    ({"rating_mapping": "weight", "input_format": "hetrec"}, "'hetrec' has no ratings"),
    ({"rating_threshold": 0}, "rating_threshold=0 is out of range"),
])
def test_ingest_limits_reject_bad_values_naming_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        IngestConfig(**{"input_path": "x", "input_format": "movielens", **kwargs})


def test_timestamp_limits_default_to_the_formats_floor_and_the_runs_date():
    as_of = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    floors = {fmt: IngestConfig(input_path="x", input_format=fmt).timestamp_range(as_of)[0]
              for fmt in IngestConfig.FORMAT_MIN_TIMESTAMP}
    assert set(floors) == set(INPUT_FORMATS) - {"auto"}  # every format states its floor (None: no timestamps)
    assert floors["movielens"] == dt.datetime(1995, 1, 1, tzinfo=dt.timezone.utc)  # ML-10M and later start 1995-01-09
    assert floors["listenbrainz"] == dt.datetime(2002, 10, 1, tzinfo=dt.timezone.utc)
    assert floors["hetrec"] is None and floors["audioscrobbler"] is None
    lo, hi = IngestConfig(input_path="x", min_timestamp="1990-06-01", max_timestamp="2020-01-01T12:00:00+02:00",
                          ).timestamp_range(as_of)
    assert lo == dt.datetime(1990, 6, 1, tzinfo=dt.timezone.utc) and hi == dt.datetime(2020, 1, 1, 10, tzinfo=dt.timezone.utc)
    assert IngestConfig(input_path="x", input_format="lastfm1k", future_tolerance_hours=2
                        ).timestamp_range(as_of)[1] == as_of + dt.timedelta(hours=2)
    with pytest.raises(ValueError, match="resolve input_format 'auto' first"):
        IngestConfig(input_path="x").timestamp_range(as_of)


def test_from_params_coerces_ui_values_and_refuses_unknown_keys():
    cfg = from_params(AlsConfig, {"rank": "25", "reg_param": 1, "alpha": "0.5"})
    assert cfg == AlsConfig(rank=25, reg_param=1.0, alpha=0.5)
    assert from_params(EvalConfig, {"exclude_seen": "true"}).exclude_seen is True
    with pytest.raises(ValueError, match="unknown setting 'colour' for AlsConfig; known: alpha, confidence"):
        from_params(AlsConfig, {"rank": 25, "colour": "red"})


def test_grids_cover_every_combination_with_readable_labels():
    grid = als_grid(ranks=[10, 20, 25], reg_params=[0.001, 0.01, 0.1], alphas=[0.1, 0.5, 0.8, 1.2])
    assert len(grid) == 36 and len({c.key for c in grid}) == 36
    assert grid[0].label == "spark rank=10 reg=0.001 alpha=0.1 iters=10 linear"
    pops = popularity_grid()
    assert [c.key for c in pops][-2:] == ["pop-listeners", "pop-plays"]
    assert len(pops) == 9


def test_popularity_scores_follow_the_definitions_and_break_ties_by_track_id():
    # users x tracks play counts
    m = sp.csr_matrix(np.array([[5, 1, 0, 2], [5, 0, 0, 2], [0, 0, 0, 1]], dtype=np.float32))
    plays, listeners = track_stats_matrix(m)
    assert plays.tolist() == [10, 1, 0, 5] and listeners.tolist() == [2, 1, 0, 3]
    ppl = scores(plays, listeners, PopularityConfig(variant="plays_per_listener", beta=1))
    np.testing.assert_allclose(ppl, [10 / 3, 1 / 2, 0, 5 / 4])
    assert scores(plays, listeners, PopularityConfig(variant="listeners")).tolist() == [2, 1, 0, 3]
    # tracks 1 and 2 tie at 1 listener each after rescoring: the lower id goes first
    tied = PopularityModel(np.array([1.0, 3.0, 3.0, 0.5]))
    assert tied.recommend(np.array([0, 1]), 3).tolist() == [[1, 2, 0], [1, 2, 0]]
    # exclude_seen drops a user's own tracks from their list only
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    assert tied.recommend(np.array([0, 1]), 2, exclude=seen).tolist() == [[2, 0], [1, 2]]


def test_input_paths_must_stay_under_the_data_roots(monkeypatch, tmp_path):
    from pipeline.stages import resolve_input

    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    monkeypatch.delenv("PIPELINE_DATA_ROOTS", raising=False)
    assert resolve_input("data/demo") == (tmp_path / "data" / "demo").resolve()
    with pytest.raises(ValueError, match="outside the data roots"):
        resolve_input("data/../../etc/passwd")
    with pytest.raises(ValueError, match="PIPELINE_DATA_ROOTS"):
        resolve_input("/etc")
    monkeypatch.setenv("PIPELINE_DATA_ROOTS", f"/srv/listens:{tmp_path}/data")
    assert resolve_input("/srv/listens/2026-11-01") == Path("/srv/listens/2026-11-01").resolve()


def test_a_stage_hands_its_freed_memory_back_when_it_returns(tmp_path, monkeypatch):
    """Tasks sharing one process (``airflow dags test``) must not each start beside the last one's heap."""
    from pipeline.stages import RunRef, _stage

    def rss_mb() -> int:
        return next(int(line.split()[1]) // 1024 for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmRSS"))

    held: list[bytes] = []

    @_stage
    def grow_and_free(ref):
        chunks = [bytes(2000 + i % 7) for i in range(150_000)]  # ~300 MB in glibc's heap, not Python's arenas
        held.append(chunks[-1])  # the heap's top stays in use, so free() alone cannot shrink it
        before = rss_mb()
        del chunks
        return before, rss_mb()

    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    grown, freed = grow_and_free(RunRef(dag_id="d", dag_run_id="r", run_key="k"))
    assert freed > grown - 100, "free() alone returned the heap; the test no longer shows anything"
    assert rss_mb() < grown - 200
