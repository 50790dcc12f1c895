"""The sweep's results, read back: the leaderboard and the selected configuration.

Every configuration of both sweeps leaves a ``result.json`` (:mod:`pipeline.sweep`); these
functions only read them, so selection, testing and serving need nothing from training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["SELECT_METRIC", "leaderboard", "select_best", "best_popularity"]

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
