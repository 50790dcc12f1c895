"""Successive halving over the ALS grid: every configuration for a few iterations, the best share on.

With ``halving_rate`` η ≥ 2 the sweep runs in at most :data:`RUNGS` rungs. Rung 0 fits every
configuration of the grid for ``r0`` iterations; each later rung keeps the best ``1/η`` of the
previous one by validation MAP@K (at least one) and fits it for η times as many iterations, the
last rung for ``max_iter``. The seed's 36-point grid at 10 iterations with η = 3: 36 fits of 2
iterations, 12 of 6, 4 of 10: 184 iterations instead of 360.

Spark's ALS cannot start from earlier factors, so a configuration that continues is fitted again
from the same seeded start for more iterations: its model is exactly the one it would have been
with those iterations from the beginning, and the budget counts every iteration of every fit.

The budget (``halving_budget``) is in ALS iterations summed over the sweep's fits, which is what
the sweep's time follows and does not vary with the machine. It sets ``r0``: the most iterations
of rung 0 whose whole plan fits in it. Without a budget ``r0`` is ``max_iter / η²``, at least
:data:`MIN_FIRST_RUNG`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.config import AlsConfig

__all__ = ["RUNGS", "MIN_FIRST_RUNG", "Plan", "plan", "rung_configs", "survivors"]

RUNGS = 3  # rungs the DAG wires (als_sweep, als_rung_1, als_rung_2); a plan may use fewer
# Without a budget rung 0 fits at least 2 iterations. After 1 iteration ALS has solved each side once
# against random factors, and its ranking does not predict the final one: on HetRec 2k the seed grid
# halved from 1 iteration dropped every rank-25 point (the full grid's winner among them) and chose
# the full grid's 9th, worse beyond noise; from 2 iterations it chose the full grid's winner
# (benchmarks/results/halving.md).
MIN_FIRST_RUNG = 2


@dataclass(frozen=True)
class Plan:
    """How many configurations each rung fits and for how many iterations."""

    rate: int
    configs: tuple[int, ...]
    iterations: tuple[int, ...]

    @property
    def cost(self) -> int:
        """ALS iterations summed over every fit of the plan."""
        return sum(n * r for n, r in zip(self.configs, self.iterations))

    @property
    def full_cost(self) -> int:
        """The same grid with every configuration fitted once for ``max_iter``."""
        return self.configs[0] * self.iterations[-1]

    def __str__(self) -> str:
        steps = " → ".join(f"{n} at {r} iteration{'s' * (r != 1)}" for n, r in zip(self.configs, self.iterations))
        return f"successive halving (rate {self.rate}): {steps}; {self.cost} of {self.full_cost} iterations"


def _plan(n: int, max_iter: int, rate: int, r0: int) -> Plan:
    configs, iterations = [], []
    for rung in range(RUNGS):
        r = max_iter if rung == RUNGS - 1 else min(max_iter, r0 * rate**rung)
        configs.append(max(1, math.ceil(n / rate**rung)))
        iterations.append(r)
        if r == max_iter:
            break
    return Plan(rate, tuple(configs), tuple(iterations))


def plan(n_configs: int, max_iter: int, rate: int, budget: int | None = None) -> Plan:
    """The rungs for ``n_configs`` configurations; ``rate`` 1 is the plain grid (one rung at ``max_iter``)."""
    if rate < 1:
        raise ValueError(f"param halving_rate={rate!r} must be >= 1 (1: no halving)")
    if rate == 1 or n_configs <= 1:  # one configuration has nothing to halve: the plain grid
        return Plan(1, (n_configs,), (max_iter,))
    if budget is None:
        first = max(MIN_FIRST_RUNG, round(max_iter / rate ** (RUNGS - 1)))
        return _plan(n_configs, max_iter, rate, min(max_iter, first))
    fitting = [p for p in (_plan(n_configs, max_iter, rate, r0) for r0 in range(1, max_iter + 1)) if p.cost <= budget]
    if not fitting:
        least = _plan(n_configs, max_iter, rate, 1)
        raise ValueError(f"param halving_budget={budget} is below the cheapest halving of these {n_configs} ALS "
                         f"configurations ({least}); raise halving_budget to at least {least.cost}, raise "
                         "halving_rate, or sweep fewer configurations")
    return fitting[-1]


def rung_configs(configs: Sequence[AlsConfig], p: Plan, rung: int) -> list[AlsConfig]:
    """Every configuration as fitted in ``rung`` (its ``max_iter`` set to the rung's iterations)."""
    return [replace(c, max_iter=p.iterations[rung]) for c in configs]


def survivors(results: Sequence[Mapping[str, Any]], n: int, metric: str) -> list[Mapping[str, Any]]:
    """The ``n`` best finished results by ``metric`` (ties: key order); a failed one never continues."""
    ok = [r for r in results if r.get("status") == "ok"]
    return sorted(ok, key=lambda r: (-r["metrics"][metric], r["key"]))[:n]
