"""One frozen, keyword-only config per stage; each checks itself.

Configs are built from DAG params or CLI flags in one place (:func:`from_params`), so a
misspelt option or an out-of-range value fails before any work starts, with a message
that says what is wrong and what is allowed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

__all__ = [
    "INPUT_FORMATS",
    "SPLIT_STRATEGIES",
    "POPULARITY_VARIANTS",
    "IngestConfig",
    "SplitConfig",
    "EvalConfig",
    "PopularityConfig",
    "AlsConfig",
    "IndexConfig",
    "INDEX_KINDS",
    "als_grid",
    "popularity_grid",
    "from_params",
]

INDEX_KINDS = ("exact", "annoy_dot", "annoy_angular_aug", "hnsw_ip", "hnsw_aug", "ivf_sq8_rerank", "norm_ranges")
# "auto" first: the default recognises each format below from its layout (pipeline.loaders.detect)
INPUT_FORMATS = ("auto", "listenbrainz_dump", "listenbrainz_spark", "listenbrainz", "lastfm1k", "lastfm360k",
                 "msd_taste", "lfm1b", "lfm2b", "yambda", "hetrec", "audioscrobbler", "movielens", "generic")
SPLIT_STRATEGIES = ("temporal_user", "temporal_global", "leave_k_out", "random_user")
POPULARITY_VARIANTS = ("plays_per_listener", "listeners", "plays")
SEED_BETAS = (1, 10, 50, 200, 500, 1000, 10000)


def num(x: float) -> str:
    """A number as it appears in keys and labels: up to 12 significant digits, so distinct values stay distinct."""
    return f"{float(x):.12g}"


def _one_of(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, allowed))}")


def _in_range(name: str, value: float, lo: float, hi: float, *, lo_open: bool = False) -> None:
    ok = (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise ValueError(f"{name}={value!r} is out of range; it must lie in {bracket}{lo}, {hi}]")


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """Load raw listens, quarantine bad rows, resolve canonical tracks, drop duplicates, map ids.

    The plausibility limits (a row outside them is quarantined with the limit's name):

    - ``min_timestamp``: the earliest plausible listen, ISO-8601 (UTC when no zone is given).
      ``None`` means the format's documented floor, :attr:`FORMAT_MIN_TIMESTAMP` (one that
      every public release of the format passes); formats without timestamps have none.
    - ``max_timestamp``: the latest plausible listen; ``None`` means the run's date plus
      ``future_tolerance_hours`` (a clock a little ahead is not an error).
    - ``min_play_count`` / ``max_play_count``: the play-count range (``None``: no upper limit).
    - ``max_quarantine_share``: the share of rows that may break a rule before the batch fails.

    Explicit ratings (MovieLens) become confidence by ``rating_mapping``: ``binary``, every
    rating is one positive (play_count 1); ``threshold``, ratings >= ``rating_threshold`` are
    positives and lower ones are kept out (quarantined with that reason, not counted against
    ``max_quarantine_share``); ``weight``, the rating in half stars is the play count
    (0.5 -> 1, 5.0 -> 10), so ALS confidence grows with the rating.
    """

    input_path: str
    input_format: str = "auto"
    tracks_path: str | None = None
    aliases_path: str | None = None
    columns: Mapping[str, str] | None = None
    max_quarantine_share: float = 0.01
    min_timestamp: str | None = None
    max_timestamp: str | None = None
    future_tolerance_hours: float = 24.0
    min_play_count: int = 1
    max_play_count: int | None = None
    rating_mapping: str = "binary"
    rating_threshold: float = 4.0

    # The earliest listen each format's public releases hold (see README "Input formats").
    # MovieLens: ML-10M/20M/25M/32M start on 1995-01-09. ListenBrainz: its server refuses
    # listens before 2002-10-01 (LISTEN_MINIMUM_TS), and its dumps start there. Last.fm 1K,
    # LFM-1b, LFM-2b: Audioscrobbler scrobbles from 2002 (the oldest registration in 1K's profile
    # table is 2002). Yambda: relative seconds from 1970-01-01 (pipeline.loaders.tables), no floor.
    # generic: a guard against epoch-zero and default dates. The rest have no timestamps.
    FORMAT_MIN_TIMESTAMP = {
        "movielens": "1995-01-01T00:00:00Z", "lastfm1k": "2002-01-01T00:00:00Z",
        "lfm1b": "2002-01-01T00:00:00Z", "lfm2b": "2002-01-01T00:00:00Z",
        "listenbrainz": "2002-10-01T00:00:00Z", "listenbrainz_dump": "2002-10-01T00:00:00Z",
        "listenbrainz_spark": "2002-10-01T00:00:00Z", "generic": "2000-01-01T00:00:00Z",
        "yambda": None, "hetrec": None, "audioscrobbler": None, "lastfm360k": None, "msd_taste": None,
    }
    RATING_MAPPINGS = ("binary", "threshold", "weight")

    def __post_init__(self) -> None:
        if not self.input_path:
            raise ValueError("input_path is empty; give the file or folder that holds the raw listens")
        _one_of("input_format", self.input_format, INPUT_FORMATS)
        _in_range("max_quarantine_share", self.max_quarantine_share, 0.0, 1.0)
        if self.future_tolerance_hours < 0:
            raise ValueError(f"future_tolerance_hours={self.future_tolerance_hours!r} must be >= 0")
        lo, hi = (self._instant(n) for n in ("min_timestamp", "max_timestamp"))
        if lo and hi and lo >= hi:
            raise ValueError(f"min_timestamp={self.min_timestamp!r} is not before max_timestamp={self.max_timestamp!r}")
        if self.min_play_count < 1:
            raise ValueError(f"min_play_count={self.min_play_count!r} must be >= 1: a listen is played at least once")
        if self.max_play_count is not None and self.max_play_count < self.min_play_count:
            raise ValueError(f"max_play_count={self.max_play_count!r} is below min_play_count={self.min_play_count!r}; "
                             "use a larger value, or None for no upper limit")
        _one_of("rating_mapping", self.rating_mapping, self.RATING_MAPPINGS)
        if self.rating_mapping != "binary" and self.input_format not in ("movielens", "auto"):
            raise ValueError(f"rating_mapping={self.rating_mapping!r} applies to rated input (movielens); "
                             f"{self.input_format!r} has no ratings: leave it 'binary'")
        _in_range("rating_threshold", self.rating_threshold, 0.0, 10.0, lo_open=True)

    def _instant(self, name: str) -> "dt.datetime | None":
        import datetime as dt

        raw = getattr(self, name)
        if raw is None:
            return None
        try:
            t = dt.datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not an ISO-8601 date or time; write e.g. 1995-01-01 or "
                             "1995-01-01T00:00:00Z") from None
        return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)

    def timestamp_range(self, as_of: "dt.datetime") -> "tuple[dt.datetime | None, dt.datetime]":
        """The plausible listen times ``[earliest, latest]`` (UTC) of a run dated ``as_of``.

        ``earliest`` is ``min_timestamp`` or the format's floor (None: no floor); ``latest``
        is ``max_timestamp`` or ``as_of + future_tolerance_hours``.
        """
        import datetime as dt

        lo = self._instant("min_timestamp")
        if lo is None and self.input_format == "auto":
            raise ValueError("the format's floor needs the format: resolve input_format 'auto' first (loaders.resolve_format)")
        if lo is None and self.FORMAT_MIN_TIMESTAMP[self.input_format]:
            lo = dt.datetime.fromisoformat(self.FORMAT_MIN_TIMESTAMP[self.input_format].replace("Z", "+00:00"))
        as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.timezone.utc)
        hi = self._instant("max_timestamp") or as_of + dt.timedelta(hours=self.future_tolerance_hours)
        return lo, hi


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """How listens become train / validation / test (docs/contracts.md "Splits").

    ``test_quantile`` sets the held-out test window: rows at or after that quantile of all
    timestamps are the test set (``test_start``, an ISO timestamp, overrides it). Train and
    validation are split from what precedes it by ``strategy``.
    """

    strategy: str = "temporal_user"
    fraction: float = 0.8
    k: int = 1
    seed: int = 0
    cutoff: str | None = None
    cutoff_quantile: float = 0.8
    test_quantile: float | None = 0.9
    test_start: str | None = None

    def __post_init__(self) -> None:
        _one_of("strategy", self.strategy, SPLIT_STRATEGIES)
        _in_range("fraction", self.fraction, 0.0, 1.0, lo_open=True)
        if self.k < 1:
            raise ValueError(f"k={self.k!r}: leave_k_out needs k >= 1")
        _in_range("cutoff_quantile", self.cutoff_quantile, 0.0, 1.0, lo_open=True)
        if self.test_quantile is not None:
            _in_range("test_quantile", self.test_quantile, 0.0, 1.0, lo_open=True)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Top-K evaluation (docs/contracts.md "Evaluation"): K and whether seen-in-train items are dropped.

    Every per-user metric gets a 95% interval from ``resamples`` bootstrap resamples of the
    evaluated users, drawn from ``seed`` (docs/contracts.md "Intervals and decisions").
    """

    k: int = 100
    exclude_seen: bool = False
    seed: int = 0
    resamples: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 10_000:
            raise ValueError(f"k={self.k!r} is out of range; use 1 <= k <= 10000")
        if self.resamples < 1:
            raise ValueError(f"resamples={self.resamples!r} must be >= 1")


@dataclass(frozen=True, kw_only=True)
class PopularityConfig:
    """A non-personalized baseline (docs/contracts.md "Popularity baselines")."""

    variant: str = "plays_per_listener"
    beta: float = 0.0

    def __post_init__(self) -> None:
        _one_of("variant", self.variant, POPULARITY_VARIANTS)
        if self.beta < 0:
            raise ValueError(f"beta={self.beta!r} must be >= 0")
        if self.variant != "plays_per_listener" and self.beta:
            raise ValueError(f"beta only applies to plays_per_listener, not {self.variant!r}")

    @property
    def key(self) -> str:
        """A stable, folder-safe name for this configuration."""
        if self.variant == "plays_per_listener":
            return f"pop-{self.variant}-beta{num(self.beta)}"
        return f"pop-{self.variant}"

    @property
    def label(self) -> str:
        return f"{self.variant} beta={num(self.beta)}" if self.variant == "plays_per_listener" else self.variant

    def params(self) -> dict[str, Any]:
        return {"model": "popularity", "variant": self.variant, "beta": self.beta}


@dataclass(frozen=True, kw_only=True)
class AlsConfig:
    """Implicit-feedback ALS (docs/contracts.md "ALS"); confidence = 1 + alpha * f(plays)."""

    rank: int = 20
    reg_param: float = 0.01
    alpha: float = 0.5
    max_iter: int = 10
    seed: int = 0
    confidence: Literal["linear", "log"] = "linear"
    engine: Literal["spark", "implicit"] = "spark"

    def __post_init__(self) -> None:
        if not 1 <= self.rank <= 1024:
            raise ValueError(f"rank={self.rank!r} is out of range; use 1 <= rank <= 1024")
        if self.reg_param < 0:
            raise ValueError(f"reg_param={self.reg_param!r} must be >= 0")
        if self.alpha <= 0:
            raise ValueError(f"alpha={self.alpha!r} must be > 0")
        if not 1 <= self.max_iter <= 1000:
            raise ValueError(f"max_iter={self.max_iter!r} is out of range; use 1 <= max_iter <= 1000")
        _one_of("confidence", self.confidence, ("linear", "log"))
        _one_of("engine", self.engine, ("spark", "implicit"))

    @property
    def key(self) -> str:
        """A stable, folder-safe name for this configuration."""
        return (
            f"als-{self.engine}-r{self.rank}-reg{num(self.reg_param)}-a{num(self.alpha)}"
            f"-it{self.max_iter}-{self.confidence}-s{self.seed}"
        )

    @property
    def label(self) -> str:
        """The readable map index and MLflow run name: every field but the seed, so it is unique in a grid."""
        return (f"{self.engine} rank={self.rank} reg={num(self.reg_param)} alpha={num(self.alpha)} "
                f"iters={self.max_iter} {self.confidence}")

    def params(self) -> dict[str, Any]:
        return {
            "model": "als",
            "engine": self.engine,
            "rank": self.rank,
            "reg_param": self.reg_param,
            "alpha": self.alpha,
            "max_iter": self.max_iter,
            "confidence": self.confidence,
            "seed": self.seed,
        }


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    """The serving index: which kinds and settings are built and measured, and the recall target.

    Every setting is built over all item factors, so on a catalogue of millions of tracks the
    grid is what build_index costs (HNSW M=32 over 1.2M tracks: 3 min on 2 cores). ``exact`` is
    always measured: it is the reference and the fallback.
    """

    recall_target: float = 0.95
    n_queries: int = 200
    index_kinds: tuple[str, ...] = INDEX_KINDS
    annoy_trees: tuple[int, ...] = (10, 50)
    hnsw_M: tuple[int, ...] = (16, 32)
    hnsw_ef_construction: int = 200
    hnsw_ef: tuple[int, ...] = (50, 100, 200, 400)
    ivf_nprobe: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    ivf_rerank: int = 4
    sample: int = 200_000

    def __post_init__(self) -> None:
        _in_range("recall_target", self.recall_target, 0.0, 1.0, lo_open=True)
        if self.n_queries < 1:
            raise ValueError(f"n_queries={self.n_queries!r} must be >= 1")
        for kind in self.index_kinds:
            _one_of("index_kinds", kind, INDEX_KINDS)
        for name in ("annoy_trees", "hnsw_M", "hnsw_ef", "ivf_nprobe"):
            values = getattr(self, name)
            if not values or any(int(v) < 1 for v in values):
                raise ValueError(f"{name}={list(values)!r} must be a non-empty list of integers >= 1")
        if self.hnsw_ef_construction < 1:
            raise ValueError(f"hnsw_ef_construction={self.hnsw_ef_construction!r} must be >= 1")
        if self.ivf_rerank < 1:
            raise ValueError(f"ivf_rerank={self.ivf_rerank!r} must be >= 1")
        if self.sample < 1000:
            raise ValueError(f"sample={self.sample!r} must be >= 1000")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds to build, ``exact`` first (always measured)."""
        return ("exact", *(k for k in INDEX_KINDS[1:] if k in self.index_kinds))


def als_grid(
    *,
    ranks: Sequence[int],
    reg_params: Sequence[float],
    alphas: Sequence[float],
    max_iters: Sequence[int] = (10,),
    seed: int = 0,
    confidence: str = "linear",
    engine: str = "spark",
) -> list[AlsConfig]:
    """The full grid over rank x regParam x alpha x maxIter, in a stable order."""
    return [
        AlsConfig(rank=r, reg_param=float(g), alpha=float(a), max_iter=it, seed=seed,
                  confidence=confidence, engine=engine)  # type: ignore[arg-type]
        for r, g, a, it in itertools.product(ranks, reg_params, alphas, max_iters)
    ]


def popularity_grid(betas: Sequence[float] = SEED_BETAS) -> list[PopularityConfig]:
    """The three variants, ``plays_per_listener`` once per damping beta."""
    configs = [PopularityConfig(variant="plays_per_listener", beta=float(b)) for b in betas]
    return configs + [PopularityConfig(variant="listeners"), PopularityConfig(variant="plays")]


def from_params(cls: type, params: Mapping[str, Any], **overrides: Any) -> Any:
    """Build ``cls`` from ``params``; a key ``cls`` does not know is an error that lists the known ones.

    Values that arrive as strings or lists from the UI are coerced to the field's type.
    """
    names = {f.name: f for f in fields(cls)}
    unknown = sorted((set(params) | set(overrides)) - set(names))
    if unknown:
        raise ValueError(f"unknown setting{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} for "
                         f"{cls.__name__}; known: {', '.join(sorted(names))}")
    kwargs = {k: v for k, v in {**params, **overrides}.items() if v is not None}
    for name, value in list(kwargs.items()):
        default = names[name].default
        if isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        elif isinstance(default, bool) and isinstance(value, str):
            kwargs[name] = value.strip().lower() in {"1", "true", "yes", "on"}
        elif isinstance(default, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
            kwargs[name] = float(value)
        elif isinstance(default, int) and not isinstance(default, bool) and isinstance(value, str):
            kwargs[name] = int(value)
    return cls(**kwargs)

