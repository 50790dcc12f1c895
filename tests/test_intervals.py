"""Per-user bootstrap intervals: seeded, paired across models, and honest about noise."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.intervals import bootstrap, paired_difference


def test_the_same_seed_and_users_give_the_same_resamples():
    rng = np.random.default_rng(1)
    a = rng.random(500)
    assert bootstrap(a, seed=7) == bootstrap(a, seed=7)
    assert bootstrap(a, seed=7) != bootstrap(a, seed=8)
    ci = bootstrap(a, seed=7)
    assert ci.low < a.mean() < ci.high and ci.mean == pytest.approx(a.mean())


def test_a_model_against_itself_differs_by_exactly_zero_and_not_beyond_noise():
    a = np.random.default_rng(2).random(300)
    d = paired_difference(a, a, seed=0)
    assert (d.mean, d.low, d.high) == (0.0, 0.0, 0.0) and not d.above_zero


def test_the_interval_covers_the_true_mean_about_95_percent_of_the_time():
    truth, covered = 0.3, 0
    for s in range(100):
        hits = (np.random.default_rng(1000 + s).random(400) < truth).astype(float)
        ci = bootstrap(hits, seed=s, resamples=1000)
        covered += ci.low <= truth <= ci.high
    assert 88 <= covered <= 99, covered


def test_pairing_sees_a_small_consistent_gain_that_unpaired_intervals_would_miss():
    rng = np.random.default_rng(3)
    base = rng.random(2000)  # users differ a lot from one another ...
    better = base + 0.01 + rng.normal(0, 0.005, base.size)  # ... the model is a little better for each of them
    d = paired_difference(better, base, seed=0)
    assert d.above_zero and d.low == pytest.approx(0.01, abs=0.002)
    a, b = bootstrap(better, seed=0), bootstrap(base, seed=1)
    assert a.low < b.high  # unpaired, the two intervals overlap: "within noise"


def test_fewer_users_give_wider_intervals():
    rng = np.random.default_rng(4)
    wide, narrow = bootstrap(rng.random(50), seed=0), bootstrap(rng.random(5000), seed=0)
    assert (wide.high - wide.low) > 5 * (narrow.high - narrow.low)


def test_paired_values_must_cover_the_same_users():
    with pytest.raises(ValueError, match="need the same users"):
        paired_difference(np.zeros(3), np.zeros(4), seed=0)
