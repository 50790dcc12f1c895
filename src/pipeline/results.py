"""The sweep's results, read back: the leaderboard and the selected configuration.

Every configuration of both sweeps leaves a ``result.json`` (:mod:`pipeline.sweep`); these
functions only read them, so selection, testing and serving need nothing from training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SELECT_METRIC", "leaderboard", "select_best", "best_popularity", "paired_comparisons", "few_users",
           "grid_axes", "grid_edges"]

SELECT_METRIC = "val_map_at_{k}"


def leaderboard(result_dirs: Sequence[Path], k: int) -> list[dict[str, Any]]:
    """Every ``result.json`` under the given folders, best validation MAP@k first (failed ones last)."""
    rows = []
    for d in result_dirs:
        for f in sorted(Path(d).glob("*/result.json")):
            rows.append(json.loads(f.read_text()))
    metric = SELECT_METRIC.format(k=k)
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (-r["metrics"][metric], r["key"]))
    return ok + [r for r in rows if r["status"] != "ok"]


def select_best(board: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """The configuration with the highest validation MAP@k (ties: key order)."""
    ok = [r for r in board if r["status"] == "ok"]
    if not ok:
        raise RuntimeError("no configuration finished: every model of the sweep failed; see their result.json")
    return ok[0]


def best_popularity(popularity_dir: Path, k: int) -> dict[str, Any] | None:
    """The best finished popularity configuration by validation MAP@k, or None when none finished."""
    ok = [r for r in leaderboard([popularity_dir], k) if r["status"] == "ok"]
    return ok[0] if ok else None


def paired_comparisons(board: list[dict[str, Any]], k: int, *, seed: int, resamples: int) -> dict[str, Any]:
    """The leader's paired difference in validation MAP@k to the runner-up and to the best popularity model.

    Each is the mean difference over the same validation users and its 95% bootstrap interval;
    ``beyond_noise`` when the interval lies above zero.
    """
    from pipeline.evaluate import Scores
    from pipeline.intervals import paired_difference

    ok = [r for r in board if r["status"] == "ok"]
    if not ok:
        return {}
    leader = ok[0]
    others = {"runner_up": ok[1] if len(ok) > 1 else None,
              "best_popularity": next((r for r in ok[1:] if r["params"].get("model") == "popularity"), None)}
    users, mine = Scores.load_per_user(Path(leader["per_user"]))
    out = {}
    for role, other in others.items():
        if other is None:
            continue
        their_users, theirs = Scores.load_per_user(Path(other["per_user"]))
        if not np.array_equal(users, their_users):
            raise ValueError(f"{leader['key']} and {other['key']} were scored on different users; "
                             "re-run the sweep on one split")
        d = paired_difference(mine["map"], theirs["map"], seed=seed, resamples=resamples)
        out[role] = {"key": other["key"], "label": other["label"], f"diff_map_at_{k}": d.mean,
                     "ci_low": d.low, "ci_high": d.high, "beyond_noise": d.above_zero}
    return out


def few_users(n_users: int, n_cold: int, which: str, minimum: int) -> str | None:
    """A warning when fewer than ``minimum`` users could be evaluated on ``which`` (None otherwise)."""
    if n_users >= minimum:
        return None
    return (f"only {n_users} users could be evaluated on {which} (fewer than min_eval_users={minimum}): "
            f"{n_cold} more had {which} listens but no train history (cold), and the rest of the users had no "
            f"listens in the {which} window; its metrics and intervals are wide, a longer window or more data "
            "would narrow them")


def grid_axes(cfg: Any) -> dict[str, dict[str, tuple[Sequence[Any], str]]]:
    """A run's grids as :func:`grid_edges` reads them: family -> parameter -> (values, the DAG param).

    ALS's iterations are an axis only without successive halving (its rungs stop configurations
    early by design); an engine family's values are the union over its grid's products.
    """
    axes: dict[str, dict[str, tuple[Sequence[Any], str]]] = {"als": {
        "rank": (cfg.ranks, "ranks"), "reg_param": (cfg.reg_params, "reg_params"), "alpha": (cfg.alphas, "alphas"),
        **({"max_iter": (cfg.max_iters, "max_iters")} if cfg.halving_rate == 1 else {})}}
    for c in cfg.engine_configs():
        family = axes.setdefault(c.family, {})
        for name, value in c.params().items():
            if name not in ("model", "objective", "seed"):
                values, _ = family.get(name, ((), ""))
                family[name] = ((*values, value), f"engine_grids['{c.family}'] {name}")
    return axes


def grid_edges(board: Sequence[dict[str, Any]], axes: dict[str, dict[str, tuple[Sequence[Any], str]]],
               families: Sequence[str]) -> list[str]:
    """Where the best configuration of each of ``families`` sits on an edge of its grid, one line each.

    ``axes`` is family -> parameter -> (the grid's values, the DAG param that sets them); an axis
    with fewer than two numeric values has no edge to report. The line names the param to widen.
    """
    ok = [r for r in board if r["status"] == "ok"]
    out = []
    for family in dict.fromkeys(families):
        best = next((r for r in ok if r["params"].get("model") == family), None)
        if best is None:
            continue
        for name, (values, setting) in axes.get(family, {}).items():
            grid = sorted({v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)})
            value = best["params"].get(name)
            if len(grid) < 2 or value not in (grid[0], grid[-1]):
                continue
            side, beyond = ("largest", "above") if value == grid[-1] else ("smallest", "below")
            out.append(f"{best['label']} is the best {family} configuration and its {name}={value:g} is the "
                       f"{side} value of its grid ({', '.join(f'{v:g}' for v in grid)}): widen {setting} "
                       f"{beyond} it")
    return out
