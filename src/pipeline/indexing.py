"""The serving bundle: the selected model's index, tuned against exact search, beside what answers need.

:func:`build_bundle` reads the model, the split, the run's track names and the ID map, and
writes one folder (atomically): the chosen index (``index/``, with its sha256), the known
users' ids and factors, the track table, the popularity fallback and a copy of the model.
It returns what ``bundle.json`` holds. No MLflow here: the stage logs the result.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import IndexConfig
from pipeline.data import SplitData
from pipeline.paths import atomic_dir

__all__ = ["FALLBACK_DEPTH", "build_bundle"]

FALLBACK_DEPTH = 1000  # tracks kept of the popularity list answered to unknown users


def build_bundle(
    *, model_dir: Path, data: SplitData, tracks: Path, idmap_root: Path, fallback_model_dir: Path, out: Path,
    tuning_dir: Path, cfg: IndexConfig, k: int, info: Mapping[str, Any],
) -> dict[str, Any]:
    """Tune the indexes on validation users of the model and pack the bundle folder ``out``.

    ``info`` (the model's key, params, the DAG run) goes into ``bundle.json`` with the index
    choice and the whole tuning table. Every tuning index but the chosen one is deleted.
    """
    from pipeline import ann, models

    model = models.load(Path(model_dir))
    meta: dict[str, Any] = {**info, "k": k, "idmap_version": data.stats["idmap_version"], "index": None}
    with atomic_dir(out) as tmp:
        tmp.mkdir(parents=True)
        _pack(model, Path(model_dir), data, Path(tracks), Path(idmap_root), Path(fallback_model_dir), tmp)
        if isinstance(model, models.FactorModel):
            val = data.truth("val")
            users = np.flatnonzero((np.diff(val.indptr) > 0) & (np.diff(data.train.indptr) > 0))
            queries = np.random.default_rng(0).choice(users, size=min(cfg.n_queries, len(users)), replace=False)
            items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
            choice = ann.tune(items, np.asarray(model.user_factors[queries], dtype=np.float32), k=k,
                              recall_target=cfg.recall_target, out_dir=Path(tuning_dir), kinds=cfg.kinds,
                              annoy_trees=cfg.annoy_trees, hnsw_M=cfg.hnsw_M,
                              hnsw_ef_construction=cfg.hnsw_ef_construction, hnsw_ef=cfg.hnsw_ef,
                              relevant=val[queries])
            ann.save_index(choice, items, tmp / "index")
            ann.plot_tradeoffs(choice.table, Path(tuning_dir) / "tradeoffs.png")
            for f in choice.files.values():  # the chosen one is in the bundle; the others were only measured
                Path(f).unlink(missing_ok=True)
            meta["index"] = json.loads((tmp / "index" / "index.json").read_text())
            meta["tuning"] = choice.table
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=1, default=str))
    return meta


def _pack(model: Any, model_dir: Path, data: SplitData, tracks: Path, idmap_root: Path, fallback_model_dir: Path,
          out: Path) -> None:
    """Copy what the server needs next to the index: ID maps, user factors, fallback, the model."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import idmap, models

    known = np.flatnonzero(np.diff(data.train.indptr) > 0)
    users = pq.read_table(idmap.table_path(idmap_root, data.stats["idmap_version"], "users")).to_pandas()
    users = users[users["id"].isin(known)]
    pq.write_table(pa.table({"user_id": users["key"].astype(str).tolist(),
                             "user_idx": users["id"].astype("int32").tolist()}), out / "users.parquet")
    pq.write_table(pq.read_table(tracks).sort_by("track_idx"), out / "tracks.parquet")
    fallback = models.load(fallback_model_dir)
    np.save(out / "fallback.npy", fallback.recommend(np.zeros(1, dtype=np.int64), FALLBACK_DEPTH)[0])
    shutil.copytree(model_dir, out / "model")
    if isinstance(model, models.FactorModel):
        np.save(out / "user_factors.npy", np.asarray(model.user_factors, dtype=np.float32))
