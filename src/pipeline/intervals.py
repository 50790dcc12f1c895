"""Per-user bootstrap intervals, and differences that are larger than noise.

docs/contracts.md "Intervals and decisions": resample the evaluated users with replacement
(seeded, at least 1,000 resamples), take the mean of the per-user metric in each resample, and
report the 2.5% and 97.5% quantiles. The resamples depend only on the number of users and the
seed, so every model of a run, scored on the same users in the same order, gets the same
resamples: the interval of a difference of per-user values is a paired one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RESAMPLES", "Interval", "bootstrap", "paired_difference"]

RESAMPLES = 1000
_CHUNK = 100  # resamples drawn at a time: a chunk of (100 x users) indices, not all of them at once


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% bootstrap interval."""

    mean: float
    low: float
    high: float

    @property
    def above_zero(self) -> bool:
        """The whole interval lies above zero: "better beyond noise" for a difference."""
        return self.low > 0

    def __str__(self) -> str:
        return f"{self.mean:+.5f} [{self.low:+.5f}, {self.high:+.5f}]"


def bootstrap(values: np.ndarray, *, seed: int, resamples: int = RESAMPLES, level: float = 0.95) -> Interval:
    """The mean of ``values`` (one per evaluated user) and its percentile bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    if resamples < 1:
        raise ValueError(f"resamples={resamples!r} must be >= 1")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        stop = min(resamples, start + _CHUNK)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(values.mean()), float(low), float(high))


def paired_difference(a: np.ndarray, b: np.ndarray, *, seed: int, resamples: int = RESAMPLES) -> Interval:
    """The interval of mean(a) - mean(b) over the same users (same order), resampled together."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users: {a.shape} != {b.shape}")
    return bootstrap(a - b, seed=seed, resamples=resamples)
