"""A split folder read onto the driver as sparse user x item matrices (for scoring, not for ETL).

Evaluation, serving and the single-machine engines need the interactions as CSR matrices;
Spark stages never call this. Shapes come from the ID map, so every matrix of one run lines up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["SplitData", "read_matrix"]


def read_matrix(split_dir: Path, shape: tuple[int, int], *, values: str = "play_count") -> sp.csr_matrix:
    """Sum ``values`` per (user_idx, track_idx) of the Parquet folder into a CSR matrix of ``shape``."""
    import pyarrow.dataset as ds
    import scipy.sparse as sp

    table = ds.dataset(str(split_dir), format="parquet").to_table(columns=["user_idx", "track_idx", values])
    users = table.column("user_idx").to_numpy()
    items = table.column("track_idx").to_numpy()
    vals = table.column(values).to_numpy().astype(np.float32)
    m = sp.coo_matrix((vals, (users, items)), shape=shape).tocsr()
    m.sum_duplicates()
    return m


@dataclass
class SplitData:
    """The train / val / test matrices of one split folder, read on first use."""

    split_dir: Path

    SETS = ("train", "val", "test")

    def path(self, which: str) -> Path:
        """The Parquet folder of one set (``train``, ``val`` or ``test``)."""
        if which not in self.SETS:
            raise ValueError(f"split set {which!r} does not exist; choose one of {', '.join(self.SETS)}")
        return Path(self.split_dir) / which

    @property
    def train_path(self) -> Path:
        return self.path("train")

    @property
    def stats_path(self) -> Path:
        return Path(self.split_dir) / "stats.json"

    @cached_property
    def stats(self) -> dict[str, Any]:
        return json.loads(self.stats_path.read_text())

    @property
    def shape(self) -> tuple[int, int]:
        n_users, n_tracks = self.stats["shape"]
        return int(n_users), int(n_tracks)

    @cached_property
    def train(self) -> sp.csr_matrix:
        return read_matrix(self.train_path, self.shape)

    @cached_property
    def train_presence(self) -> tuple[np.ndarray, np.ndarray]:
        """(users, tracks): boolean masks of the users and the tracks with at least one train row.

        Taken from :attr:`train` when it was already read; otherwise streamed from the Parquet two
        integer columns at a time, so scoring without ``exclude_seen`` never builds the matrix (at
        the seed's scale 129M rows: a minute and several GB on the driver for two masks).
        """
        n_users, n_tracks = self.shape
        if "train" in self.__dict__:
            m = self.__dict__["train"]
            return np.diff(m.indptr) > 0, np.bincount(m.indices, minlength=n_tracks) > 0
        import pyarrow.dataset as ds

        users, tracks = np.zeros(n_users, dtype=bool), np.zeros(n_tracks, dtype=bool)
        for batch in ds.dataset(str(self.train_path), format="parquet").to_batches(columns=["user_idx", "track_idx"]):
            users[batch.column("user_idx").to_numpy()] = True
            tracks[batch.column("track_idx").to_numpy()] = True
        return users, tracks

    def truth(self, which: str) -> sp.csr_matrix:
        return read_matrix(self.path(which), self.shape)
