"""Nightly health checks: each figure against the previous nights' median; the history and its plot."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline.health import FIGURES, History, Night, Report, Thresholds, add_model_figures, evaluate, \
    night_from_ingest, trend_plot


def _night(key, **over):
    figures = {"listens": 1000.0, "users": 100.0, "new_users": 5.0, "new_tracks": 40.0, "top_user_listens": 60.0,
               "quarantine_share": 0.01, "cold_share": 0.2, "test_map": 0.10}
    return Night(key, key, 1, {**figures, **over})


def test_a_normal_night_passes_and_each_kind_of_drift_fails_its_own_check():
    th = Thresholds()
    previous = [_night(f"d{i}", listens=900.0 + 100 * i) for i in range(4)]
    assert not Report(_night("ok"), evaluate(_night("ok"), previous, th)).failed
    drifts = {"top_user_listens": 600.0, "listens": 100.0, "users": 500.0, "quarantine_share": 0.2,
              "cold_share": 0.35, "test_map": 0.06, "new_tracks": 400.0, "new_users": 30.0}
    for figure, value in drifts.items():
        report = Report(_night("x"), evaluate(_night("x", **{figure: value}), previous, th))
        assert [c.figure for c in report.failed] == [figure], (figure, report.summary())
        assert figure in report.summary() and "FAILED" in report.summary()
    # fewer new users or tracks, or a quieter top listener, is no alarm
    calm = _night("x", new_users=0.0, new_tracks=0.0, top_user_listens=1.0)
    assert all(c.ok for c in evaluate(calm, previous, th))


def test_thresholds_are_the_params_and_too_few_nights_check_nothing():
    previous = [_night(f"d{i}") for i in range(3)]
    night = _night("x", top_user_listens=200.0)  # 3.3x the median
    assert [c.figure for c in evaluate(night, previous, Thresholds())] == list(FIGURES)
    assert [c.figure for c in evaluate(night, previous, Thresholds()) if not c.ok] == ["top_user_listens"]
    assert all(c.ok for c in evaluate(night, previous, Thresholds(max_ratio=4.0)))
    unchecked = evaluate(night, previous[:2], Thresholds())
    assert all(c.ok and c.baseline is None for c in unchecked)
    assert Report(night, unchecked).summary() == "not checked yet: 2 previous night(s), health_min_nights=3"


def test_history_replaces_a_rerun_in_place_and_keeps_inputs_apart(tmp_path):
    h = History("dag", "/data/a", home=tmp_path)
    for key in ("n1", "n2", "n3"):
        h.record(_night(key))
    h.record(_night("n2", listens=5.0))  # a re-run of n2
    assert [n.run_key for n in h.nights()] == ["n1", "n2", "n3"]
    assert h.nights()[1].figures["listens"] == 5.0
    assert [n.run_key for n in h.before("n3")] == ["n1", "n2"]
    h.record_promotion("n3", "champion", 0.12)
    assert (h.nights()[2].promoted, h.nights()[2].champion_test_map) == ("champion", 0.12)
    h.record(Night("n4", "n4", 1, {"listens": 1.0}, failed=["listens"]))
    assert h.nights()[3].failed == ["listens"] and h.nights()[0].failed == []
    assert History("dag", "/data/b", home=tmp_path).nights() == []


def test_a_night_of_increments_is_its_partitions_counted_per_partition(tmp_path):
    curated = tmp_path / "curated"
    for day, users in (("date=2026-01-01", [1, 1, 2]), ("date=2026-01-02", [1] * 10 + [2, 3])):
        part = curated / "listens" / day
        part.mkdir(parents=True)
        pd.DataFrame({"user_idx": users, "track_idx": range(len(users))}).to_parquet(part / "part-0.parquet")
        (part / "_partition.json").write_text(json.dumps({"rows_in": len(users) + 1, "rows_out": len(users),
                                                          "quarantined": 1, "users_added": 1, "tracks_added": 2}))
    summary = {"increments": True, "curated": str(curated), "partitions": ["date=2026-01-01", "date=2026-01-02"]}
    both = night_from_ingest("r", {**summary, "ingested": ["date=2026-01-01", "date=2026-01-02"]}, None)
    assert both.partitions == 2 and both.label == "date=2026-01-01 .. date=2026-01-02"
    assert both.figures["listens"] == 7.5 and both.figures["users"] == 2.5 and both.figures["top_user_listens"] == 10
    rerun = night_from_ingest("r", {**summary, "ingested": []}, None)  # nothing new: the newest partition
    assert rerun.label == "date=2026-01-02" and rerun.figures["listens"] == 12
    assert rerun.figures["quarantine_share"] == pytest.approx(1 / 13)
    add_model_figures(rerun, {"test_map_at_10": 0.2, "test_n_users": 30, "test_n_cold_users": 10}, 10)
    assert rerun.figures["cold_share"] == 0.25 and rerun.figures["test_map"] == 0.2


def test_trend_plot_draws_every_night(tmp_path):
    nights = [_night(f"date=2026-01-{i:02d}", test_map=0.1 + i / 100) for i in range(1, 31)]
    nights[5].champion_test_map = 0.11
    nights[-1].failed = ["listens"]
    out = trend_plot(nights, 100, tmp_path / "trend.png")
    assert out.stat().st_size > 10_000
