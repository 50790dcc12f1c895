"""What an engine is handed: the train matrix under an input transform, and its catalogue.

Play counts are heavy-tailed (HetRec 2k: 1 to 352,698 plays of one artist by one user), and
libraries that read the values as weights (item-kNN, logistic MF, LightFM's sample weights)
behave very differently on raw counts, ``log1p`` counts or a binary matrix, so the transform
is a parameter of those engines.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.models.configs import TRANSFORMS

__all__ = ["TRANSFORMS", "transform", "catalogue_mask"]



def transform(train: sp.csr_matrix, name: str) -> sp.csr_matrix:
    """A float32 CSR copy of ``train`` with every stored play count ``r`` mapped to r, log1p(r) or 1."""
    if name not in TRANSFORMS:
        raise ValueError(f"transform={name!r} is not supported; choose one of {', '.join(TRANSFORMS)}")
    out = sp.csr_matrix(train, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    out.sort_indices()
    if name == "log1p":
        out.data = np.log1p(out.data)
    elif name == "binary":
        out.data = np.ones_like(out.data)
    return out


def catalogue_mask(train: sp.csr_matrix) -> np.ndarray:
    """Which tracks have at least one train interaction: the only ones a model may recommend."""
    return np.diff(sp.csc_matrix(train).indptr) > 0
