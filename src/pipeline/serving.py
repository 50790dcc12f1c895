"""The served model: a bundle folder (an index over item factors, the ID maps, a popularity fallback).

:class:`Bundle` loads one and answers top-K for user ids; :class:`MusicRecsModel` is the MLflow
pyfunc around it; :func:`recommend` asks the registered champion. ``MusicRecsModel.predict``
answers a table of user ids with their top-K original track keys; an unknown user gets the
popularity list, flagged ``fallback=True``. :mod:`pipeline.indexing` builds bundles and
:mod:`pipeline.promotion` registers them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import tracking

__all__ = ["MODEL_NAME", "MusicRecsModel", "Bundle", "recommend"]

MODEL_NAME = "music-recs"


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


def recommend(user_ids: list[str], k: int = 10, *, model_uri: str = f"models:/{MODEL_NAME}@champion") -> Any:
    """Answer from the registered champion (loads the pyfunc)."""
    import mlflow.pyfunc
    import pandas as pd

    tracking.client()
    model = mlflow.pyfunc.load_model(model_uri)
    return model.predict(pd.DataFrame({"user_id": [str(u) for u in user_ids]}), params={"k": k})
