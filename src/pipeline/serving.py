"""The served model: a bundle folder (an index over item factors, the ID maps, a popularity fallback).

:class:`Bundle` loads one and answers top-K for user ids; :class:`MusicRecsModel` is the MLflow
pyfunc around it; :func:`recommend` asks the registered champion. ``MusicRecsModel.predict``
answers a table of user ids (and, optionally, the listens each sends) with their top-K
original track keys; each row says its ``source`` (see :class:`Bundle`). :mod:`pipeline.indexing`
builds bundles and :mod:`pipeline.promotion` registers them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import tracking

__all__ = ["MODEL_NAME", "COLUMNS", "MusicRecsModel", "Bundle", "recommend", "signature"]

MODEL_NAME = "music-recs"


COLUMNS = ["user_id", "rank", "track", "artist_name", "track_name", "source", "fallback"]


class Bundle:
    """A loaded bundle folder: answers top-K for user ids, and for users who send their listens.

    Which source answers whom (every answer row says it in ``source``):

    - ``folded_in``: a user who sends ``listens`` (track keys as in the ``track`` column), known
      or not, to a factor model: the user step against the trained item factors
      (:mod:`pipeline.foldin`), then the served index;
    - ``item_to_item``: such a user of an item-kNN model (no user vectors): the sent tracks'
      neighbours, scored as the model scores a train history;
    - ``precomputed``: a known user without listens: tonight's exact top-N from the bundle's table,
      without touching the index (N = max(the run's K, 100): an answer is at most N long);
    - ``popularity``: anyone else, and every user of a popularity model.

    Under the run's ``exclude_seen`` protocol no answer holds a track of the user's history (the
    train history of a known user, the sent listens of a folded-in one).
    """

    def __init__(self, path: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.meta = json.loads((self.path / "bundle.json").read_text())
        self.exclude_seen = self.meta.get("protocol") == "exclude_seen"
        users = pq.read_table(self.path / "users.parquet").to_pydict()
        self.user_index = dict(zip(users["user_id"], users["user_idx"]))
        # an Arrow table sorted by track_idx, looked up by binary search: at 23M tracks a pandas frame
        # of three string columns would be ~6 GB of Python objects
        # in one chunk: Table.take over a Parquet file's many row groups concatenates them on every call
        # (190 ms per answer at 21.8M tracks); large_string so that one chunk may pass 2 GB of text
        tracks = pq.read_table(self.path / "tracks.parquet")
        wide = pa.schema([f.with_type(pa.large_string()) if pa.types.is_string(f.type) else f for f in tracks.schema])
        self.tracks = tracks.cast(wide).combine_chunks()
        self._track_idx = self.tracks.column("track_idx").to_numpy()
        with np.load(self.path / "track_keys.npz") as z:
            self._key_hash, self._key_row = z["hash"], z["row"]
        self.fallback = np.load(self.path / "fallback.npy")
        self.history = None
        if (self.path / "history.npz").exists():
            with np.load(self.path / "history.npz") as z:
                self.history = (z["indptr"], z["indices"])
        self.precomputed: dict[int, np.ndarray] = {}
        if (self.path / "precomputed.parquet").exists():
            table = pq.read_table(self.path / "precomputed.parquet")
            depth = int(self.meta["precomputed_depth"])
            lists = table.column("items").combine_chunks().flatten().to_numpy().reshape(-1, depth)
            self.precomputed = dict(zip(table.column("user_idx").to_numpy().tolist(), lists))
        self.index = self.item_factors = self.gram = self.neighbours = None
        if json.loads((self.path / "model" / "model.json").read_text())["kind"] == "item_knn":
            from pipeline import models

            self.neighbours = models.load(self.path / "model")
        if (self.path / "index").exists():
            from pipeline import ann, models

            self.index = ann.load_index(self.path / "index")  # refuses an altered index file (sha256)
            self.item_factors = models.load(self.path / "model").item_factors
            self.gram = np.load(self.path / "gram.npy")

    # -- tracks

    def _track_rows(self, items: np.ndarray) -> list[dict[str, Any]]:
        if items.size == 0:
            return []
        # in the table's own dtype: searching int64 keys in the int32 column would copy all of it (35 ms at 22M)
        items = np.asarray(items).astype(self._track_idx.dtype, copy=False)
        pos = np.searchsorted(self._track_idx, items)
        found = (pos < len(self._track_idx)) & (self._track_idx[np.minimum(pos, len(self._track_idx) - 1)] == items)
        if not found.all():
            raise KeyError(f"track_idx {items[~found][:5].tolist()} not in {self.path / 'tracks.parquet'}: "
                           "the bundle's track table does not match its model; rebuild the bundle")
        return self.tracks.take(pos).select(["track_key", "artist_name", "track_name"]).to_pylist()

    def track_indices(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(distinct track indices, times each was sent) of the keys this model knows; others are skipped."""
        from pipeline.indexing import pd_hash

        if not keys:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        wanted = pd_hash(np.asarray(keys, dtype=object))
        pos = np.minimum(np.searchsorted(self._key_hash, wanted), len(self._key_hash) - 1)
        hit = self._key_hash[pos] == wanted
        rows = self._key_row[pos[hit]]
        stored = self.tracks.column("track_key").take(rows).to_pylist()
        rows = rows[[a == b for a, b in zip(stored, np.asarray(keys, dtype=object)[hit])]]  # no hash collision
        items, plays = np.unique(self._track_idx[rows], return_counts=True)
        return items.astype(np.int64), plays.astype(np.float64)

    # -- answers

    def _seen(self, idx: int | None) -> np.ndarray:
        if self.history is None or idx is None or idx + 1 >= len(self.history[0]):
            return np.zeros(0, dtype=np.int64)
        indptr, indices = self.history
        return indices[indptr[idx] : indptr[idx + 1]]

    def _query(self, vector: np.ndarray, k: int, seen: np.ndarray) -> np.ndarray:
        """The index's top ``k`` for ``vector``, tracks in ``seen`` dropped (asked for that many more)."""
        items = np.asarray(self.index.query(np.asarray(vector, dtype=np.float32), k + len(seen)))
        items = items[items >= 0]
        return items[~np.isin(items, seen)][:k] if len(seen) else items[:k]

    def _item_to_item(self, items: np.ndarray, plays: np.ndarray, k: int) -> np.ndarray:
        """An item-kNN model's top ``k`` for sent tracks: their transformed plays times the similarities."""
        import scipy.sparse as sp

        from pipeline.models.inputs import transform

        n = self.neighbours.similarity.shape[0]
        row = sp.csr_matrix((plays, (np.zeros(items.size, dtype=np.int64), items)), shape=(1, n))
        row = transform(row, self.neighbours.params.get("transform", "raw"))
        ranked = self.neighbours.recommend_history(row, k, exclude=row if self.exclude_seen else None)[0]
        return ranked[ranked >= 0]

    def answer(self, user_id: str, k: int, listens: list[str] | None = None) -> tuple[np.ndarray, str]:
        """(track indices, source) for one user."""
        idx = self.user_index.get(str(user_id))
        if listens and self.index is not None:
            from pipeline.foldin import fold_in

            items, plays = self.track_indices(list(listens))
            if items.size:
                vector = fold_in(self.item_factors, self.gram, items, plays, self.meta["params"])
                return self._query(vector, k, items if self.exclude_seen else np.zeros(0, np.int64)), "folded_in"
        if listens and self.neighbours is not None:
            items, plays = self.track_indices(list(listens))
            if items.size:
                return self._item_to_item(items, plays, k), "item_to_item"
        seen = np.zeros(0, dtype=np.int64)
        if self.exclude_seen:
            seen = self.track_indices(list(listens))[0] if listens else self._seen(idx)
        if idx in self.precomputed:
            return self.precomputed[idx][:k], "precomputed"
        items = self.fallback[~np.isin(self.fallback, seen)] if len(seen) else self.fallback
        return items[:k], "popularity"

    def recommend(self, user_ids: list[str], k: int = 10, listens: list[list[str] | None] | None = None) -> "Any":
        """Long table: user_id, rank, track (original key), artist_name, track_name, source, fallback.

        ``listens[i]`` (optional) are the track keys user ``i`` sent; ``fallback`` is true for
        the popularity answers.
        """
        import pandas as pd

        rows = []
        for i, uid in enumerate(user_ids):
            sent = listens[i] if listens is not None else None
            items, source = self.answer(str(uid), k, list(sent) if sent is not None else None)
            items = np.asarray(items)
            for rank, t in enumerate(self._track_rows(items[items >= 0])):
                rows.append({"user_id": str(uid), "rank": rank + 1, "track": t["track_key"],
                             "artist_name": t["artist_name"], "track_name": t["track_name"], "source": source,
                             "fallback": source == "popularity"})
        return pd.DataFrame(rows, columns=COLUMNS)


try:
    import mlflow.pyfunc as _pyfunc

    _Base = _pyfunc.PythonModel
except ImportError:  # pragma: no cover - mlflow is a hard dependency; keeps the module importable for docs
    _Base = object  # type: ignore[assignment,misc]


class MusicRecsModel(_Base):  # type: ignore[misc,valid-type]
    """MLflow pyfunc: ``predict(DataFrame[user_id, listens?], params={"k": 10})`` → top-K tracks per user.

    ``listens`` (optional, a list of track keys per row) folds the user in from those listens.
    """

    def load_context(self, context: Any) -> None:
        self.bundle = Bundle(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        import pandas as pd

        k = int((params or {}).get("k", 10))
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame({"user_id": list(model_input)})
        col = "user_id" if "user_id" in model_input.columns else model_input.columns[0]
        users = [str(u) for u in model_input[col].tolist()]
        listens = None
        if "listens" in model_input.columns:
            listens = [None if v is None or (np.isscalar(v) and pd.isna(v)) else [str(x) for x in v]
                       for v in model_input["listens"].tolist()]
        return self.bundle.recommend(users, k, listens)


def signature() -> Any:
    """The pyfunc's schema: ``user_id`` and an optional ``listens`` list in, the long answer table out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec(DataType.string, "user_id"), ColSpec(Array(DataType.string), "listens", required=False)])
    outputs = Schema([ColSpec(DataType.string, "user_id"), ColSpec(DataType.long, "rank"),
                      ColSpec(DataType.string, "track"), ColSpec(DataType.string, "artist_name"),
                      ColSpec(DataType.string, "track_name"), ColSpec(DataType.string, "source"),
                      ColSpec(DataType.boolean, "fallback")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=ParamSchema([ParamSpec("k", DataType.long, 10)]))


def recommend(user_ids: list[str], k: int = 10, *, listens: list[str] | None = None,
              model_uri: str = f"models:/{MODEL_NAME}@champion") -> Any:
    """Answer from the registered champion (loads the pyfunc); ``listens`` folds every user in from them."""
    import mlflow.pyfunc
    import pandas as pd

    tracking.client()
    model = mlflow.pyfunc.load_model(model_uri)
    frame = pd.DataFrame({"user_id": [str(u) for u in user_ids]})
    if listens:
        frame["listens"] = [list(listens)] * len(frame)
    return model.predict(frame, params={"k": k})
