"""The served model: an index over item factors, the ID maps, and a popularity fallback.

``build_index_stage`` tunes annoy and HNSW against exact search and packs a *bundle* folder;
``promote_stage`` logs the bundle as an MLflow pyfunc, registers a new version of
``music-recs`` and moves the ``champion`` alias only when the candidate's test MAP@K is at
least the incumbent's, re-scored on the same test set (else the version gets ``challenger``).
``MusicRecsModel.predict`` answers a table of user ids with their top-K original track keys;
an unknown user gets the popularity list, flagged ``fallback=True``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import tracking
from pipeline.config import EvalConfig, IndexConfig
from pipeline.paths import atomic_dir, atomic_write_text

__all__ = ["MODEL_NAME", "MusicRecsModel", "Bundle", "build_index_stage", "promote_stage", "recommend"]

log = logging.getLogger(__name__)
MODEL_NAME = "music-recs"
FALLBACK_DEPTH = 1000


class Bundle:
    """A loaded bundle folder: answers top-K for user ids."""

    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.meta = json.loads((self.path / "bundle.json").read_text())
        users = pq.read_table(self.path / "users.parquet").to_pydict()
        self.user_index = dict(zip(users["user_id"], users["user_idx"]))
        # an Arrow table sorted by track_idx, looked up by binary search: at 23M tracks a pandas frame
        # of three string columns would be ~6 GB of Python objects
        self.tracks = pq.read_table(self.path / "tracks.parquet")
        self._track_idx = self.tracks.column("track_idx").to_numpy()
        self.fallback = np.load(self.path / "fallback.npy")
        self.user_factors = None
        self.index = None
        if (self.path / "index").exists():
            from pipeline import ann

            self.user_factors = np.load(self.path / "user_factors.npy", mmap_mode="r")
            self.index = ann.load_index(self.path / "index")

    def _track_rows(self, items: np.ndarray) -> list[dict[str, Any]]:
        if items.size == 0:
            return []
        pos = np.searchsorted(self._track_idx, items)
        found = (pos < len(self._track_idx)) & (self._track_idx[np.minimum(pos, len(self._track_idx) - 1)] == items)
        if not found.all():
            raise KeyError(f"track_idx {items[~found][:5].tolist()} not in {self.path / 'tracks.parquet'}: "
                           "the bundle's track table does not match its model; rebuild the bundle")
        return self.tracks.take(pos).select(["track_key", "artist_name", "track_name"]).to_pylist()

    def recommend(self, user_ids: list[str], k: int = 10) -> "Any":
        """Long table: user_id, rank, track (original key), artist_name, track_name, fallback."""
        import pandas as pd

        rows = []
        for uid in user_ids:
            idx = self.user_index.get(str(uid))
            if idx is None or self.index is None:
                items, fallback = self.fallback[:k], True
            else:
                items, fallback = np.asarray(self.index.query(np.asarray(self.user_factors[idx]), k)), False
            for rank, t in enumerate(self._track_rows(np.asarray(items)[np.asarray(items) >= 0])):
                rows.append({"user_id": str(uid), "rank": rank + 1, "track": t["track_key"],
                             "artist_name": t["artist_name"], "track_name": t["track_name"], "fallback": fallback})
        return pd.DataFrame(rows, columns=["user_id", "rank", "track", "artist_name", "track_name", "fallback"])


try:
    import mlflow.pyfunc as _pyfunc

    _Base = _pyfunc.PythonModel
except ImportError:  # pragma: no cover - mlflow is a hard dependency; keeps the module importable for docs
    _Base = object  # type: ignore[assignment,misc]


class MusicRecsModel(_Base):  # type: ignore[misc,valid-type]
    """MLflow pyfunc: ``predict(DataFrame[user_id], params={"k": 10})`` → top-K tracks per user."""

    def load_context(self, context: Any) -> None:
        self.bundle = Bundle(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        import pandas as pd

        k = int((params or {}).get("k", 10))
        if isinstance(model_input, pd.DataFrame):
            col = "user_id" if "user_id" in model_input.columns else model_input.columns[0]
            users = [str(u) for u in model_input[col].tolist()]
        else:
            users = [str(u) for u in model_input]
        return self.bundle.recommend(users, k)


def _pack(ctx: Mapping[str, Any], best: Mapping[str, Any], model: Any, out: Path, k: int) -> None:
    """Copy what the server needs next to the index: ID maps, user factors, fallback, the model."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import models
    from pipeline.sweep import SplitData, leaderboard

    rdir = Path(ctx["run_dir"])
    data = SplitData(rdir / "split")
    train = data.train
    known = np.flatnonzero(np.diff(train.indptr) > 0)
    root = Path(ctx["idmap_root"]) / data.stats["idmap_version"]
    users = pq.read_table(root / "users").to_pandas()
    users = users[users["id"].isin(known)]
    pq.write_table(pa.table({"user_id": users["key"].astype(str).tolist(), "user_idx": users["id"].astype("int32").tolist()}),
                   out / "users.parquet")
    pq.write_table(pq.read_table(rdir / "ingest" / "tracks").sort_by("track_idx"), out / "tracks.parquet")
    pops = [r for r in leaderboard([rdir / "popularity"], k) if r["status"] == "ok"]
    if not pops:
        raise RuntimeError("no popularity baseline finished: the served model needs one for unknown users")
    pop = models.load(Path(pops[0]["model_dir"]))
    np.save(out / "fallback.npy", pop.recommend(np.zeros(1, dtype=np.int64), FALLBACK_DEPTH)[0])
    shutil.copytree(best["model_dir"], out / "model")
    if isinstance(model, models.FactorModel):
        np.save(out / "user_factors.npy", np.asarray(model.user_factors, dtype=np.float32))


def build_index_stage(ctx: Mapping[str, Any], best: Mapping[str, Any], cfg: IndexConfig, *, k: int) -> dict[str, Any]:
    """Tune the indexes on validation users of the best model and pack the serving bundle."""
    from pipeline import ann, models
    from pipeline.sweep import SplitData

    rdir = Path(ctx["run_dir"])
    model = models.load(Path(best["model_dir"]))
    data = SplitData(rdir / "split")
    info: dict[str, Any] = {"model_key": best["key"], "params": best["params"], "k": k,
                            "idmap_version": data.stats["idmap_version"], "dag_run_id": ctx["dag_run_id"]}
    with atomic_dir(rdir / "bundle") as out:
        out.mkdir(parents=True)
        _pack(ctx, best, model, out, k)
        if isinstance(model, models.FactorModel):
            val = data.truth("val")
            users = np.flatnonzero((np.diff(val.indptr) > 0) & (np.diff(data.train.indptr) > 0))
            rng = np.random.default_rng(0)
            queries_idx = rng.choice(users, size=min(cfg.n_queries, len(users)), replace=False)
            items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
            choice = ann.tune(items, np.asarray(model.user_factors[queries_idx], dtype=np.float32), k=k,
                              recall_target=cfg.recall_target, out_dir=rdir / "index_tuning",
                              kinds=cfg.kinds, annoy_trees=cfg.annoy_trees, hnsw_M=cfg.hnsw_M,
                              hnsw_ef_construction=cfg.hnsw_ef_construction, hnsw_ef=cfg.hnsw_ef,
                              relevant=val[queries_idx])
            ann.save_index(choice, items, out / "index")
            ann.plot_tradeoffs(choice.table, rdir / "index_tuning" / "tradeoffs.png")
            for f in choice.files.values():  # the chosen one is in the bundle; the others were only measured
                Path(f).unlink(missing_ok=True)
            info["index"] = json.loads((out / "index" / "index.json").read_text())
            info["tuning"] = choice.table
        else:
            info["index"] = None
        (out / "bundle.json").write_text(json.dumps(info, indent=1, default=str))
    c = tracking.client()
    tuning = rdir / "index_tuning"
    if tuning.exists():
        atomic_write_text(tuning / "tuning.json", json.dumps(info.get("tuning"), indent=1, default=str))
        for name in ("tuning.json", "tradeoffs.png"):  # the table and its plot; the served index is in the bundle
            if (tuning / name).exists():
                c.log_artifact(ctx["parent_run_id"], str(tuning / name), "index")
    if info["index"]:
        idx = info["index"]
        c.set_tag(ctx["parent_run_id"], "pipeline.index_kind", str(idx.get("kind")))
        tracking.log_metrics(ctx["parent_run_id"], {f"index_{m}": v for m, v in idx.items()
                                                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {"bundle_dir": str(rdir / "bundle"), "index": info["index"]}


def _incumbent_map(version: Any, ctx: Mapping[str, Any], cfg: EvalConfig) -> float | None:
    """Re-score the current champion on this run's test set (ids are append-only, so they still mean the same)."""
    import mlflow

    from pipeline import models
    from pipeline.sweep import SplitData, evaluate

    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL_NAME}/{version.version}"))
    found = list(path.rglob("bundle.json"))
    if not found:
        return None
    model = models.load(found[0].parent / "model")
    data = SplitData(Path(ctx["run_dir"]) / "split")
    n_users, n_tracks = data.shape
    if isinstance(model, models.FactorModel):
        def pad(a: np.ndarray, n: int) -> np.ndarray:
            a = np.asarray(a)
            return np.concatenate([a, np.zeros((n - len(a),) + a.shape[1:], a.dtype)]) if len(a) < n else a[:n]
        model = models.FactorModel(pad(model.user_factors, n_users), pad(model.item_factors, n_tracks),
                                   pad(model.item_mask, n_tracks), model.params)
    else:
        model = models.PopularityModel(np.concatenate([model.scores, np.zeros(max(0, n_tracks - len(model.scores)))])[:n_tracks],
                                       model.params)
    return evaluate(model, data, "test", cfg)[f"map_at_{cfg.k}"]


def promote_stage(ctx: Mapping[str, Any], best: Mapping[str, Any], test: Mapping[str, Any],
                  index: Mapping[str, Any], cfg: EvalConfig) -> dict[str, Any]:
    """Register the bundle as a new ``music-recs`` version; move ``champion`` last, and only if not worse."""
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    c = tracking.client()
    parent = ctx["parent_run_id"]
    metric = f"test_map_at_{cfg.k}"
    candidate = float(test["metrics"][metric])
    run_key = ctx.get("run_key", ctx["dag_run_id"])
    existing = c.search_model_versions(f"name = '{MODEL_NAME}' and tags.`pipeline.run_key` = '{run_key}'")
    if existing:
        version = existing[0]
    else:
        bundle = Bundle(Path(index["bundle_dir"]))
        example = pd.DataFrame({"user_id": list(bundle.user_index)[:2] or ["unknown"]})
        signature = infer_signature(example, bundle.recommend(example["user_id"].tolist(), 10), params={"k": 10})
        with mlflow.start_run(run_id=parent):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=MusicRecsModel(), artifacts={"bundle": index["bundle_dir"]},
                signature=signature, pip_requirements=[],
                metadata={"idmap_version": bundle.meta["idmap_version"], "config_key": best["key"]},
            )
        version = mlflow.register_model(info.model_uri, MODEL_NAME, tags={
            "airflow.dag_run_id": ctx["dag_run_id"], "pipeline.run_key": run_key, "pipeline.config_key": best["key"],
            metric: str(candidate), "pipeline.index_kind": str((index.get("index") or {}).get("kind", "none")),
        })
    try:
        incumbent = c.get_model_version_by_alias(MODEL_NAME, "champion")
    except MlflowException:
        incumbent = None
    decision: dict[str, Any] = {"version": str(version.version), "candidate_" + metric: candidate}
    if incumbent is None or incumbent.version == version.version:
        alias, why = "champion", "no champion yet" if incumbent is None else "already champion"
    else:
        score = _incumbent_map(incumbent, ctx, cfg)
        decision["incumbent_version"] = str(incumbent.version)
        decision["incumbent_" + metric] = score
        if score is None or candidate >= score:
            alias, why = "champion", f"test MAP@{cfg.k} {candidate:.5f} >= incumbent v{incumbent.version} {score}"
        else:
            alias, why = "challenger", f"test MAP@{cfg.k} {candidate:.5f} < incumbent v{incumbent.version} {score:.5f}"
    decision.update(alias=alias, reason=why)
    c.set_tag(parent, "pipeline.promotion", f"v{version.version} -> {alias}: {why}")
    c.set_model_version_tag(MODEL_NAME, version.version, "pipeline.promotion", why)
    c.set_registered_model_alias(MODEL_NAME, alias, version.version)  # the last step
    tracking.finish(parent)
    atomic_write_text(Path(ctx["run_dir"]) / "promotion.json", json.dumps(decision, indent=1))
    return decision


def recommend(user_ids: list[str], k: int = 10, *, model_uri: str = f"models:/{MODEL_NAME}@champion") -> Any:
    """Answer from the registered champion (loads the pyfunc)."""
    import mlflow.pyfunc
    import pandas as pd

    tracking.client()
    model = mlflow.pyfunc.load_model(model_uri)
    return model.predict(pd.DataFrame({"user_id": [str(u) for u in user_ids]}), params={"k": k})
