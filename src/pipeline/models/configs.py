"""One frozen, keyword-only config per engine family beyond popularity and implicit-feedback ALS.

Each config checks itself, and names itself three ways, as ``AlsConfig`` does:

* ``key``: stable and folder-safe, every field included (``bpr-factors64-lr0.01-reg0.01-iters100-seed0``);
* ``label``: the readable map index of the Airflow task, unique within a grid
  (``bpr factors=64 lr=0.01 reg=0.01 iters=100``);
* ``params()``: what MLflow records, with ``model`` naming the family and ``objective`` what it optimises.

:func:`grid` expands lists of values into configs (:func:`grids` a union of such products);
``DEFAULT_GRIDS`` is each family's grid for the nightly sweep (``benchmarks/engines.py`` compares
it with a wider reference grid).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal


__all__ = [
    "ItemKnnConfig", "BprConfig", "LmfConfig", "LightFmConfig", "ExplicitAlsConfig", "NeuralMfConfig",
    "CONFIGS", "DEFAULT_GRIDS", "grid", "grids", "default_grid",
]

TRANSFORMS = ("raw", "log1p", "binary")  # the input transforms (pipeline.models.inputs)
SIMILARITIES = ("cosine", "bm25", "tfidf")
LIGHTFM_LOSSES = ("warp", "bpr", "warp-kos")


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed; {allowed}")


def _check_transform(cfg: Any) -> None:
    _require(cfg.transform in TRANSFORMS, "transform", cfg.transform, f"choose one of {TRANSFORMS}")


class _Named:
    """``key``, ``label`` and ``params()`` from the dataclass fields; ``SHORT`` abbreviates them."""

    family: ClassVar[str]
    objective: ClassVar[str] = "ranking"
    SHORT: ClassVar[Mapping[str, str]] = {}

    def _shown(self) -> list[tuple[str, Any]]:
        """The fields that tell configs of one grid apart (all but ``seed``), with their short names."""
        return [(self.SHORT.get(f.name, f.name), getattr(self, f.name)) for f in fields(self)  # type: ignore[arg-type]
                if f.name != "seed"]

    @property
    def key(self) -> str:
        parts = [f"{n}{_fmt(v)}" for n, v in self._shown()] + [f"seed{self.seed}"]  # type: ignore[attr-defined]
        return "-".join([self.family.replace("_", "-"), *parts])

    @property
    def label(self) -> str:
        return " ".join([self.family, *(f"{n}={_fmt(v)}" for n, v in self._shown())])

    def params(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return {"model": self.family, "objective": self.objective, **values}


@dataclass(frozen=True, kw_only=True)
class ItemKnnConfig(_Named):
    """Item-item neighbours (``implicit.nearest_neighbours``): score(u, i) = Σ_j history(u, j) · sim(j, i).

    ``neighbours`` is the library's ``K`` (neighbours kept per item); ``bm25_k1``/``bm25_b`` apply
    to ``bm25`` only; ``transform`` maps the play counts the similarity and the scores are built from.
    """

    family: ClassVar[str] = "item_knn"
    SHORT: ClassVar[Mapping[str, str]] = {"neighbours": "K", "bm25_k1": "k1", "bm25_b": "b", "transform": "input"}

    similarity: Literal["cosine", "bm25", "tfidf"] = "bm25"
    neighbours: int = 100
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    transform: Literal["raw", "log1p", "binary"] = "log1p"
    seed: int = 0  # unused (the fit is deterministic); kept so every family is keyed alike

    def __post_init__(self) -> None:
        _require(self.similarity in SIMILARITIES, "similarity", self.similarity, f"choose one of {SIMILARITIES}")
        _require(1 <= self.neighbours <= 100_000, "neighbours", self.neighbours, "use 1 <= neighbours <= 100000")
        _require(self.bm25_k1 > 0, "bm25_k1", self.bm25_k1, "it must be > 0")
        _require(0 <= self.bm25_b <= 1, "bm25_b", self.bm25_b, "it must lie in [0, 1]")
        _check_transform(self)
        if self.similarity != "bm25" and (self.bm25_k1, self.bm25_b) != (1.2, 0.75):
            raise ValueError(f"bm25_k1/bm25_b only apply to similarity 'bm25', not {self.similarity!r}")

    def _shown(self) -> list[tuple[str, Any]]:
        shown = super()._shown()
        return shown if self.similarity == "bm25" else [(n, v) for n, v in shown if n not in ("k1", "b")]


def _check_sgd(cfg: Any) -> None:
    _require(1 <= cfg.factors <= 1024, "factors", cfg.factors, "use 1 <= factors <= 1024")
    _require(cfg.learning_rate > 0, "learning_rate", cfg.learning_rate, "it must be > 0")
    _require(cfg.iterations >= 1, "iterations", cfg.iterations, "it must be >= 1")


@dataclass(frozen=True, kw_only=True)
class BprConfig(_Named):
    """Bayesian personalised ranking (``implicit.bpr``); reads which tracks were played, not how often."""

    family: ClassVar[str] = "bpr"
    SHORT: ClassVar[Mapping[str, str]] = {"learning_rate": "lr", "regularization": "reg", "iterations": "iters"}

    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        _check_sgd(self)
        _require(self.regularization >= 0, "regularization", self.regularization, "it must be >= 0")


@dataclass(frozen=True, kw_only=True)
class LmfConfig(_Named):
    """Logistic matrix factorisation (``implicit.lmf``); the transformed plays weigh the positives."""

    family: ClassVar[str] = "lmf"
    SHORT: ClassVar[Mapping[str, str]] = {"learning_rate": "lr", "regularization": "reg", "iterations": "iters",
                                          "neg_prop": "neg", "transform": "input"}

    factors: int = 30
    learning_rate: float = 1.0
    regularization: float = 0.6
    iterations: int = 30
    neg_prop: int = 30
    transform: Literal["raw", "log1p", "binary"] = "log1p"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_sgd(self)
        _require(self.regularization >= 0, "regularization", self.regularization, "it must be >= 0")
        _require(self.neg_prop >= 1, "neg_prop", self.neg_prop, "it must be >= 1")
        _check_transform(self)


@dataclass(frozen=True, kw_only=True)
class LightFmConfig(_Named):
    """LightFM (``import lightfm``, from the ``rectools-lightfm`` build) with a ranking loss, no side features.

    ``transform`` gives the sample weights (every played track is a positive); ``alpha`` is the
    L2 penalty on both user and item embeddings; ``epochs`` passes over the data.
    """

    family: ClassVar[str] = "lightfm"
    SHORT: ClassVar[Mapping[str, str]] = {"components": "factors", "learning_rate": "lr", "max_sampled": "sampled",
                                          "transform": "input"}

    loss: Literal["warp", "bpr", "warp-kos"] = "warp"
    components: int = 64
    learning_rate: float = 0.05
    alpha: float = 0.0
    max_sampled: int = 10
    epochs: int = 30
    transform: Literal["raw", "log1p", "binary"] = "binary"
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.loss in LIGHTFM_LOSSES, "loss", self.loss, f"choose one of {LIGHTFM_LOSSES}")
        _require(1 <= self.components <= 1024, "components", self.components, "use 1 <= components <= 1024")
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate, "it must be > 0")
        _require(self.alpha >= 0, "alpha", self.alpha, "it must be >= 0")
        _require(self.max_sampled >= 1, "max_sampled", self.max_sampled, "it must be >= 1")
        _require(self.epochs >= 1, "epochs", self.epochs, "it must be >= 1")
        _check_transform(self)


@dataclass(frozen=True, kw_only=True)
class ExplicitAlsConfig(_Named):
    """Spark ALS on ratings (``implicitPrefs=False``): minimises squared error on the observed ratings.

    The rating of (user, track) is its ``transform``-ed play count (MovieLens stars pass through
    ``raw``); ``reg_param`` is Spark's, scaled by each row's count of ratings (ALS-WR).
    """

    family: ClassVar[str] = "als_explicit"
    objective: ClassVar[str] = "rating"
    SHORT: ClassVar[Mapping[str, str]] = {"reg_param": "reg", "max_iter": "iters", "transform": "input"}

    rank: int = 10
    reg_param: float = 0.1
    max_iter: int = 10
    transform: Literal["raw", "log1p"] = "log1p"
    nonnegative: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        _require(1 <= self.rank <= 1024, "rank", self.rank, "use 1 <= rank <= 1024")
        _require(self.reg_param >= 0, "reg_param", self.reg_param, "it must be >= 0")
        _require(1 <= self.max_iter <= 1000, "max_iter", self.max_iter, "use 1 <= max_iter <= 1000")
        _require(self.transform in ("raw", "log1p"), "transform", self.transform,
                 "choose 'raw' or 'log1p' (a binary rating has nothing to regress)")


@dataclass(frozen=True, kw_only=True)
class NeuralMfConfig(_Named):
    """Neural MF: NCF's generalised-MF branch (He et al. 2017) in torch, an optional extra.

    Trained with binary cross-entropy on the played tracks and ``negatives`` sampled unplayed
    tracks per played one, Adam with ``learning_rate`` and ``l2`` weight decay, ``batch`` pairs a step.
    """

    family: ClassVar[str] = "neural_mf"
    SHORT: ClassVar[Mapping[str, str]] = {"learning_rate": "lr", "negatives": "neg"}

    factors: int = 32
    learning_rate: float = 0.001
    epochs: int = 20
    negatives: int = 4
    batch: int = 1024
    l2: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _require(1 <= self.factors <= 1024, "factors", self.factors, "use 1 <= factors <= 1024")
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate, "it must be > 0")
        _require(self.epochs >= 1, "epochs", self.epochs, "it must be >= 1")
        _require(self.negatives >= 1, "negatives", self.negatives, "it must be >= 1")
        _require(self.batch >= 1, "batch", self.batch, "it must be >= 1")
        _require(self.l2 >= 0, "l2", self.l2, "it must be >= 0")


CONFIGS: dict[str, type] = {c.family: c for c in
                            (ItemKnnConfig, BprConfig, LmfConfig, LightFmConfig, ExplicitAlsConfig, NeuralMfConfig)}

# The nightly sweep's grid per family, a union of products (field -> values): small, and meant
# to reach >= 90% of the reference grid's best MAP@100 on HetRec 2k in both protocols
# (benchmarks/engines.py, benchmarks/results/engines.md; in the nightly DAG itself,
# benchmarks/engines_dag.py and engines-dag.md: LightFM's lr 0.05 at 30 epochs reached only 0.898
# of the reference with exclude_seen there, so it gives way to 60 epochs at lr 0.02).
DEFAULT_GRIDS: dict[str, list[dict[str, Sequence[Any]]]] = {
    "item_knn": [{"similarity": ["bm25"], "neighbours": [100], "transform": ["raw"]},
                 {"similarity": ["cosine"], "neighbours": [500], "transform": ["log1p"]}],
    "bpr": [{"factors": [128], "learning_rate": [0.005, 0.01], "regularization": [0.01], "iterations": [100]}],
    "lmf": [{"factors": [32], "learning_rate": [2.0], "regularization": [1.5, 3.0], "iterations": [60],
             "transform": ["binary"]}],
    "lightfm": [{"loss": ["warp"], "components": [128], "learning_rate": [0.02], "epochs": [30, 60],
                 "transform": ["binary"]}],
    "als_explicit": [{"rank": [10, 32], "reg_param": [0.1], "max_iter": [10], "transform": ["raw", "log1p"]}],
    "neural_mf": [{"factors": [64], "learning_rate": [0.001], "epochs": [20]}],
}


def grid(family: str, **values: Sequence[Any]) -> list[Any]:
    """Every combination of ``values`` (field -> list) as configs of ``family``, in a stable order."""
    if family not in CONFIGS:
        raise ValueError(f"family={family!r} is not an engine family; choose one of {', '.join(CONFIGS)}")
    cls = CONFIGS[family]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{family} has no parameter(s) {unknown}; its parameters are {sorted(known)}")
    names = list(values)
    return [cls(**dict(zip(names, combo))) for combo in itertools.product(*(values[n] for n in names))]


def grids(family: str, products: Sequence[Mapping[str, Sequence[Any]]], *, seed: int = 0) -> list[Any]:
    """The union of several :func:`grid` products with one seed, duplicates dropped, in order."""
    configs = [c for values in products for c in grid(family, **values, seed=[seed])]
    return list({c.key: c for c in configs}.values())


def default_grid(family: str, *, seed: int = 0) -> list[Any]:
    """``family``'s nightly grid (``DEFAULT_GRIDS``) with one seed."""
    return grids(family, DEFAULT_GRIDS[family], seed=seed)
