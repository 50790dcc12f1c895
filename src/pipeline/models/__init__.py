"""Recommenders behind one small interface: ``recommend(users, k, exclude=None)``.

A fitted model is a folder (``model.json`` + ``.npy`` arrays) that every later stage
(test evaluation, the index, the served pyfunc) loads with :func:`load`.
"""

from pipeline.models.base import FactorModel, PopularityModel, Recommender, load

__all__ = ["Recommender", "FactorModel", "PopularityModel", "load"]
