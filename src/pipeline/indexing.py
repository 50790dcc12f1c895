"""The serving bundle: the selected model's index, tuned against exact search, beside what answers need.

:func:`build_bundle` reads the model, the split, the run's track names and the ID map, and
writes one folder (atomically): the chosen index (``index/``, with its sha256), the known
users' ids, factors and exact top-N lists, the track table (and a hash of each track key, to
read the tracks a folded-in user sends), the popularity fallback, YᵀY for fold-in, the users'
train history when the run excludes seen tracks, and a copy of the model. It returns what
``bundle.json`` holds. No MLflow here: the stage logs the result.
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
PRECOMPUTED_MIN = 100  # known users' exact lists are max(K, this) deep: what a caller may ask for


def build_bundle(
    *, model_dir: Path, data: SplitData, tracks: Path, idmap_root: Path, fallback_model_dir: Path, out: Path,
    tuning_dir: Path, cfg: IndexConfig, k: int, exclude_seen: bool, info: Mapping[str, Any],
) -> dict[str, Any]:
    """Tune the indexes on validation users of the model and pack the bundle folder ``out``.

    ``info`` (the model's key, params, the DAG run) goes into ``bundle.json`` with the index
    choice, the whole tuning table and the run's protocol (``exclude_seen``: no answer may hold
    a track of the user's history). Every tuning index but the chosen one is deleted. Known
    users' exact lists are max(``k``, 100) deep: at least the depth the model was selected at.
    """
    from pipeline import ann, models

    model = models.load(Path(model_dir))
    meta: dict[str, Any] = {**info, "k": k, "idmap_version": data.stats["idmap_version"], "index": None,
                            "protocol": "exclude_seen" if exclude_seen else "keep_seen", "precomputed_depth": 0}
    with atomic_dir(out) as tmp:
        tmp.mkdir(parents=True)
        _pack(model, Path(model_dir), data, Path(tracks), Path(idmap_root), Path(fallback_model_dir), tmp)
        if exclude_seen:
            train = data.train
            np.savez(tmp / "history.npz", indptr=train.indptr, indices=train.indices)
        if not isinstance(model, models.PopularityModel):  # factor models and item-kNN: one list per user
            meta["precomputed_depth"] = _precompute(model, data, max(k, PRECOMPUTED_MIN), exclude_seen,
                                                    tmp / "precomputed.parquet")
        if isinstance(model, models.FactorModel):
            items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
            vectors, relevant = _queries(items, data, info.get("params") or {}, cfg.n_queries)
            choice = ann.tune(items, vectors, k=k,
                              recall_target=cfg.recall_target, out_dir=Path(tuning_dir), kinds=cfg.kinds,
                              annoy_trees=cfg.annoy_trees, hnsw_M=cfg.hnsw_M,
                              hnsw_ef_construction=cfg.hnsw_ef_construction, hnsw_ef=cfg.hnsw_ef,
                              ivf_nprobe=cfg.ivf_nprobe, ivf_rerank=cfg.ivf_rerank, sample=cfg.sample,
                              relevant=relevant)
            ann.save_index(choice, items, tmp / "index")
            ann.plot_tradeoffs(choice.explored, Path(tuning_dir) / "tradeoffs.png")
            for f in choice.files.values():  # the chosen one is in the bundle; the others were only measured
                Path(f).unlink(missing_ok=True)
            meta["index"] = json.loads((tmp / "index" / "index.json").read_text())
            meta["tuning"] = choice.table
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=1, default=str))
    return meta


def _queries(items: np.ndarray, data: SplitData, params: Mapping[str, Any], n: int) -> tuple[np.ndarray, Any]:
    """The index's tuning queries and their relevant tracks: what the index will be asked in service.

    Known users are answered from the precomputed lists; the index answers folded-in vectors. So
    the queries are users folded in from their validation-window listens alone (vectors the model
    never trained, :mod:`pipeline.foldin` for the model's family), scored on their test-window tracks.
    """
    from pipeline.foldin import fold_in, gram

    val, test = data.truth("val"), data.truth("test")
    rng = np.random.default_rng(0)
    users = np.flatnonzero((np.diff(val.indptr) > 0) & (np.diff(test.indptr) > 0))
    users = np.sort(rng.choice(users, size=min(n, len(users)), replace=False))
    yty = gram(items)
    vectors = [fold_in(items, yty, val[u].indices, val[u].data, params) for u in users]
    return np.asarray(vectors, dtype=np.float32).reshape(len(users), items.shape[1]), test[users]


def _pack(model: Any, model_dir: Path, data: SplitData, tracks: Path, idmap_root: Path, fallback_model_dir: Path,
          out: Path) -> None:
    """Copy what the server needs next to the index: ID maps, user factors, fallback, the model."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import idmap, models

    known = np.flatnonzero(data.train_presence[0])
    users = pq.read_table(idmap.table_path(idmap_root, data.stats["idmap_version"], "users")).to_pandas()
    users = users[users["id"].isin(known)]
    pq.write_table(pa.table({"user_id": users["key"].astype(str).tolist(),
                             "user_idx": users["id"].astype("int32").tolist()}), out / "users.parquet")
    table = pq.read_table(tracks).sort_by("track_idx")
    pq.write_table(table, out / "tracks.parquet")
    hashes = pd_hash(table.column("track_key").to_numpy(zero_copy_only=False))
    order = np.argsort(hashes, kind="stable")
    np.savez(out / "track_keys.npz", hash=hashes[order], row=order.astype(np.int64))
    fallback = models.load(fallback_model_dir)
    np.save(out / "fallback.npy", fallback.recommend(np.zeros(1, dtype=np.int64), FALLBACK_DEPTH)[0])
    shutil.copytree(model_dir, out / "model")
    if isinstance(model, models.FactorModel):
        from pipeline.foldin import gram

        np.save(out / "gram.npy", gram(model.item_factors))


def pd_hash(keys: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash of each track key (pandas' SipHash with its fixed key): the lookup of sent keys."""
    import pandas as pd

    return pd.util.hash_array(np.asarray(keys, dtype=object), categorize=False)


def _precompute(model: Any, data: SplitData, depth: int, exclude_seen: bool, path: Path) -> int:
    """Every known user's exact top-``depth`` (the test evaluation's scoring code), as a Parquet table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    known = np.flatnonzero(data.train_presence[0])
    lists = model.recommend(known, depth, exclude=data.train if exclude_seen else None)
    items = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(lists, dtype=np.int32).ravel()), depth)
    pq.write_table(pa.table({"user_idx": pa.array(known.astype(np.int32)), "items": items}), path)
    return depth
