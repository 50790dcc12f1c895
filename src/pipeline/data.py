"""Read split tables onto the driver as sparse user x item matrices (for scoring, not for ETL).

Evaluation and the single-machine engine need the interactions as a CSR matrix; Spark
stages never call this. Shapes come from the ID map, so every matrix of one run lines up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["read_matrix"]


def read_matrix(split_dir: Path, shape: tuple[int, int], *, values: str = "play_count") -> sp.csr_matrix:
    """Sum ``values`` per (user_idx, track_idx) of the Parquet folder into a CSR matrix of ``shape``."""
    import pyarrow.dataset as ds

    table = ds.dataset(str(split_dir), format="parquet").to_table(columns=["user_idx", "track_idx", values])
    users = table.column("user_idx").to_numpy()
    items = table.column("track_idx").to_numpy()
    vals = table.column(values).to_numpy().astype(np.float32)
    m = sp.coo_matrix((vals, (users, items)), shape=shape).tocsr()
    m.sum_duplicates()
    return m
