"""Recommenders behind one small interface: ``recommend(users, k, exclude=None)``.

A fitted model is a folder (``model.json`` + ``.npy`` arrays) that every later stage
(test evaluation, the index, the served pyfunc) loads with :func:`load`.

The names below load on first use, so that the configs (:mod:`pipeline.models.configs`, read
when the DAG file is parsed) come without numpy and scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Recommender", "FactorModel", "PopularityModel", "load"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("pipeline.models.base"), name)
    raise AttributeError(f"module 'pipeline.models' has no attribute {name!r}")
