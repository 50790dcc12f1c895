"""Promotion in the MLflow Model Registry: register the bundle, then decide its alias.

:func:`decide_alias` is the whole rule, a pure function: a new version becomes ``champion``
when there is none yet, or when its test MAP@K is at least the incumbent's re-scored on the
same test window (ids are append-only, so they still mean the same); else ``challenger``.
:func:`promote` does the registry work around it: one version per run key (a retried task
registers nothing new), the incumbent re-scored, the alias moved last.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import tracking
from pipeline.config import EvalConfig
from pipeline.data import SplitData
from pipeline.evaluate import Scores
from pipeline.intervals import Interval, paired_difference
from pipeline.paths import atomic_write_text
from pipeline.serving import MODEL_NAME, Bundle, MusicRecsModel

__all__ = ["Decision", "decide_alias", "promote"]


@dataclass(frozen=True)
class Decision:
    alias: str  # "champion" or "challenger"
    reason: str


def decide_alias(*, k: int, version: str, incumbent_version: str | None, difference: Interval | None) -> Decision:
    """The alias a newly registered ``version`` gets, and why.

    ``difference`` is the paired difference candidate − incumbent in test MAP@K on this run's
    test users, with its interval (None when the incumbent could not be re-scored: a version
    without a bundle).
    """
    if incumbent_version is None:
        return Decision("champion", "no champion yet")
    if incumbent_version == version:
        return Decision("champion", "already champion")
    if difference is None:
        return Decision("champion", f"incumbent v{incumbent_version} has no bundle to re-score")
    if difference.above_zero:
        return Decision("champion", f"test MAP@{k} better than incumbent v{incumbent_version} beyond noise: "
                                    f"difference {difference}")
    return Decision("challenger", f"test MAP@{k} not better than incumbent v{incumbent_version} beyond noise: "
                                  f"difference {difference}")


def promote(*, bundle_dir: Path, split: SplitData, cfg: EvalConfig, candidate: float,
            candidate_per_user: tuple[np.ndarray, np.ndarray], config_key: str, parent_run_id: str, run_key: str,
            dag_run_id: str, out: Path) -> dict[str, Any]:
    """Register ``bundle_dir`` as a ``music-recs`` version (once per ``run_key``) and set its alias.

    ``candidate_per_user`` is (test users, their MAP@K) of the bundle's model. Writes the decision
    to ``out`` (JSON) and tags the parent run and the version with it.
    """
    from mlflow.exceptions import MlflowException

    c = tracking.client()
    metric = f"test_map_at_{cfg.k}"
    existing = c.search_model_versions(f"name = '{MODEL_NAME}' and tags.`pipeline.run_key` = '{run_key}'")
    version = existing[0] if existing else _register(bundle_dir, parent_run_id, tags={
        "airflow.dag_run_id": dag_run_id, "pipeline.run_key": run_key, "pipeline.config_key": config_key,
        metric: str(candidate), "pipeline.index_kind": _index_kind(bundle_dir)})
    try:
        incumbent = c.get_model_version_by_alias(MODEL_NAME, "champion")
    except MlflowException:
        incumbent = None
    rival = incumbent is not None and incumbent.version != version.version
    record: dict[str, Any] = {"version": str(version.version), "candidate_" + metric: candidate}
    difference = None
    if rival:
        theirs = _rescore(incumbent.version, split, cfg)
        record.update({"incumbent_version": str(incumbent.version),
                       "incumbent_" + metric: None if theirs is None else theirs.metrics[f"map_at_{cfg.k}"]})
        if theirs is not None:
            users, mine = candidate_per_user
            if not np.array_equal(users, theirs.users):
                raise ValueError(f"the candidate and incumbent v{incumbent.version} were scored on different test "
                                 "users; re-run test_eval")
            difference = paired_difference(mine, theirs.per_user["map"], seed=cfg.seed, resamples=cfg.resamples)
            record["difference_" + metric] = {"mean": difference.mean, "ci_low": difference.low,
                                              "ci_high": difference.high}
            tracking.log_metrics(parent_run_id, {f"promotion_{metric}_diff": difference.mean,
                                                 f"promotion_{metric}_diff_ci_low": difference.low,
                                                 f"promotion_{metric}_diff_ci_high": difference.high})
    decision = decide_alias(k=cfg.k, version=str(version.version),
                            incumbent_version=None if incumbent is None else str(incumbent.version),
                            difference=difference)
    record.update(asdict(decision))
    c.set_tag(parent_run_id, "pipeline.promotion", f"v{version.version} -> {decision.alias}: {decision.reason}")
    c.set_model_version_tag(MODEL_NAME, version.version, "pipeline.promotion", decision.reason)
    c.set_registered_model_alias(MODEL_NAME, decision.alias, version.version)  # the last step
    tracking.finish(parent_run_id)
    atomic_write_text(out, json.dumps(record, indent=1))
    return record


def _index_kind(bundle_dir: Path) -> str:
    meta = json.loads((Path(bundle_dir) / "bundle.json").read_text())
    return str((meta.get("index") or {}).get("kind", "none"))


def _register(bundle_dir: Path, parent_run_id: str, *, tags: Mapping[str, str]) -> Any:
    """Log the bundle as a pyfunc model under the parent run and register it as a new version."""
    import mlflow

    from pipeline.serving import signature

    bundle = Bundle(Path(bundle_dir))  # loads as the server will: a broken bundle is never registered
    with mlflow.start_run(run_id=parent_run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=MusicRecsModel(), artifacts={"bundle": str(bundle_dir)},
            signature=signature(), pip_requirements=[],
            metadata={"idmap_version": bundle.meta["idmap_version"], "config_key": tags["pipeline.config_key"]},
        )
    return mlflow.register_model(info.model_uri, MODEL_NAME, tags=dict(tags))


def _rescore(version: str, split: SplitData, cfg: EvalConfig) -> Scores | None:
    """The registered ``version`` scored on this split's test window, its matrices padded to today's ID map."""
    import mlflow

    from pipeline import models
    from pipeline.evaluate import score

    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL_NAME}/{version}"))
    found = list(path.rglob("bundle.json"))
    if not found:
        return None
    model = models.load(found[0].parent / "model")
    n_users, n_tracks = split.shape
    if isinstance(model, models.FactorModel):
        model = models.FactorModel(_pad(model.user_factors, n_users), _pad(model.item_factors, n_tracks),
                                   _pad(model.item_mask, n_tracks), model.params)
    elif isinstance(model, models.PopularityModel):
        model = models.PopularityModel(_pad(model.scores, n_tracks), model.params)
    else:  # item-kNN: its similarities and the train history it scores from
        from pipeline.models.item_knn import ItemKnnModel

        model = ItemKnnModel(_resize(model.similarity, (n_tracks, n_tracks)),
                             _resize(model.history, (n_users, n_tracks)), _pad(model.item_mask, n_tracks), model.params)
    return score(model, split, "test", cfg)


def _resize(m: Any, shape: tuple[int, int]) -> Any:
    """A sparse matrix cut or zero-padded to ``shape`` (as :func:`_pad` for dense rows)."""
    m = m.tocsr()[: shape[0], : shape[1]].tocsr()
    m.resize(shape)
    return m


def _pad(a: Any, n: int) -> np.ndarray:
    """``a`` cut or zero-padded to ``n`` rows (the ID map only grows: new users and tracks score nothing)."""
    a = np.asarray(a)
    return np.concatenate([a, np.zeros((n - len(a),) + a.shape[1:], a.dtype)]) if len(a) < n else a[:n]
