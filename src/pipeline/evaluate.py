"""Scoring: a model on a split of the run (:func:`evaluate`), or any recommender's output tables.

The tables: ``pipeline evaluate --recs RECS.parquet --truth TRUTH.parquet -k 100``.
Each table has a ``user`` column and a list column ``items`` (ranked in RECS; the relevant
items in TRUTH). Every user in TRUTH with at least one item is evaluated; one missing from
RECS counts with an empty list (scores 0), never silently skipped. Users only in RECS are
ignored. Items may be any hashable values.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from pipeline.metrics import per_user_metrics, ranking_metrics

if TYPE_CHECKING:
    from pipeline.config import EvalConfig
    from pipeline.data import SplitData
    from pipeline.models import Recommender

__all__ = ["INPUT_SCHEMA", "Scores", "score", "evaluate", "evaluate_tables", "main"]


@dataclass(frozen=True)
class Scores:
    """One model on one split: the evaluated users, each per-user metric, and the averages with intervals.

    ``metrics`` holds every ``<metric>_at_<k>`` (and ``_ci_low`` / ``_ci_high`` for the per-user
    ones), coverage, ``n_users`` and ``n_cold_users``. Two models of one run are scored on the
    same users in the same order, so their per-user values pair up (:mod:`pipeline.intervals`).
    """

    users: np.ndarray
    per_user: dict[str, np.ndarray]
    metrics: dict[str, float]

    def save(self, path: Path) -> Path:
        """The per-user values as ``.npz`` (written through a temporary file and a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}")
        with open(tmp, "wb") as fh:
            np.savez(fh, users=self.users, **self.per_user)
        tmp.replace(path)
        return path

    @staticmethod
    def load_per_user(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        with np.load(path) as z:
            return z["users"], {name: z[name] for name in z.files if name != "users"}


def score(model: Recommender, data: SplitData, which: str, cfg: EvalConfig, *, spark: Any = None) -> Scores:
    """``model`` on split ``which`` for every user with >= 1 relevant track and a train history.

    Users with evaluation rows but no train history cannot be ranked by a factor model; they
    are left out for every model alike and counted in ``n_cold_users``. When ``spark`` runs on a
    cluster, a factor model's top-K is computed on the executors.
    """
    from pipeline.distributed import is_cluster, recommend_distributed
    from pipeline.intervals import bootstrap
    from pipeline.models import FactorModel

    truth = data.truth(which)
    has_train, in_train = data.train_presence
    has_truth = np.diff(truth.indptr) > 0
    users = np.flatnonzero(has_train & has_truth)
    catalogue = int(in_train.sum())
    exclude = data.train if cfg.exclude_seen else None
    if isinstance(model, FactorModel) and is_cluster(spark):
        recs = recommend_distributed(spark, model, users, cfg.k, exclude=exclude)
    else:
        recs = model.recommend(users, cfg.k, exclude=exclude)
    metrics = ranking_metrics(recs, truth[users], cfg.k, n_items=catalogue)
    rows, per_user = per_user_metrics(recs, truth[users], cfg.k)
    for name, values in per_user.items():
        ci = bootstrap(values, seed=cfg.seed, resamples=cfg.resamples)
        metrics[f"{name}_at_{cfg.k}_ci_low"], metrics[f"{name}_at_{cfg.k}_ci_high"] = ci.low, ci.high
    metrics["n_cold_users"] = int((has_truth & ~has_train).sum())
    return Scores(users=users[rows], per_user=per_user, metrics=metrics)


def evaluate(model: Recommender, data: SplitData, which: str, cfg: EvalConfig, *,
             spark: Any = None) -> dict[str, float]:
    """The metrics of :func:`score` (averages, intervals, counts)."""
    return score(model, data, which, cfg, spark=spark).metrics


INPUT_SCHEMA = """\
input: two Parquet files (a file or a folder of parts), one row per user:
  --recs   user   string or integer   the user's id
           items  list<string|int>    the recommended items, best first (only the first K count)
  --truth  user   string or integer   the same ids as in --recs
           items  list<string|int>    the user's relevant items (held-out listens); order ignored
Every user in --truth with >= 1 item is scored; one missing from --recs scores 0. Other columns
are ignored. Output: JSON with precision/recall/map/ndcg/hit_rate/mrr/coverage @K.

example:
  python -c "import pandas as pd
  pd.DataFrame({'user': ['u1', 'u2'], 'items': [['t3', 't1', 't9'], ['t2']]}).to_parquet('recs.parquet')
  pd.DataFrame({'user': ['u1', 'u2'], 'items': [['t1'], ['t5', 't2']]}).to_parquet('truth.parquet')"
  pipeline evaluate --recs recs.parquet --truth truth.parquet -k 3
"""


def _read(path: str | Path, role: str) -> Any:
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{role} table {path} does not exist")
    table = pq.read_table(path)
    missing = [c for c in ("user", "items") if c not in table.column_names]
    if missing:
        raise ValueError(f"{role} table {path} lacks column(s) {missing}; found {table.column_names}. "
                         "Expected `user` and a list column `items`")
    return table.to_pandas()


def evaluate_tables(recs_path: str | Path, truth_path: str | Path, k: int = 100) -> dict[str, float]:
    """All metrics @k of RECS against TRUTH (see module docstring)."""
    if k < 1:
        raise ValueError(f"k={k!r} must be >= 1")
    recs, truth = _read(recs_path, "recs"), _read(truth_path, "truth")
    truth = truth[truth["items"].map(lambda x: x is not None and len(x) > 0)]
    users = truth["user"].tolist()
    row = {u: i for i, u in enumerate(users)}
    item_ids: dict[Any, int] = {}

    def code(x: Any) -> int:
        return item_ids.setdefault(x, len(item_ids))

    rows, cols = [], []
    for i, items in enumerate(truth["items"]):
        for x in set(items):
            rows.append(i)
            cols.append(code(x))
    ranked = np.full((len(users), k), -1, dtype=np.int64)
    for u, items in zip(recs["user"], recs["items"]):
        i = row.get(u)
        if i is not None and items is not None:
            top = [code(x) for x in list(items)[:k]]
            ranked[i, : len(top)] = top
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(users), max(1, len(item_ids))))
    return ranking_metrics(ranked, matrix, k, n_items=len(item_ids))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pipeline evaluate", description=__doc__.splitlines()[0], epilog=INPUT_SCHEMA,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recs", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("-k", type=int, default=100)
    a = p.parse_args(argv)
    try:
        print(json.dumps(evaluate_tables(a.recs, a.truth, a.k), indent=1))
    except (FileNotFoundError, ValueError) as exc:
        print(f"pipeline evaluate: error: {exc}", file=sys.stderr)
        return 2
    return 0
