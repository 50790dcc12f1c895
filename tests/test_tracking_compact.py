"""What a sweep's runs table shows of a configuration: a few rounded metrics, each interval one tag."""

from __future__ import annotations

from pipeline.tracking import compact


def test_intervals_become_one_tag_each_and_values_are_rounded():
    metrics = {"val_map_at_100": 0.2046123456, "val_map_at_100_ci_low": 0.19729, "val_map_at_100_ci_high": 0.2121549,
               "val_coverage_at_100": 0.128131, "val_n_users": 2516, "val_n_cold_users": 38, "note": "text"}
    shown, tags = compact(metrics)
    assert shown == {"val_map_at_100": 0.20461, "val_coverage_at_100": 0.12813, "val_n_users": 2516.0}
    assert tags == {"val_map_at_100_ci": "[0.19729, 0.21215]"}


def test_a_metric_without_both_ends_gets_no_interval_tag():
    shown, tags = compact({"val_map_at_100": 0.5, "val_map_at_100_ci_low": 0.4})
    assert shown == {"val_map_at_100": 0.5} and tags == {}
