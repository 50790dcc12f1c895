"""Every setting of one run, defined once: :class:`RunConfig`.

Each field carries its description and its limits. From that one definition come the DAG's
``Param`` schemas (:meth:`RunConfig.param_specs`), the CLI flags that set the same thing
(:func:`add_flag`), and the checks: :meth:`RunConfig.from_params` refuses an unknown key and
an out-of-range value with a message that names the param, before any work starts. The
per-stage configs of :mod:`pipeline.config` are built from it.
"""

from __future__ import annotations

import argparse
import json
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from typing import Any

from pipeline.config import (
    INDEX_KINDS, INPUT_FORMATS, SEED_BETAS, SPLIT_STRATEGIES, AlsConfig, EvalConfig, IndexConfig, IngestConfig,
    PopularityConfig, SplitConfig, als_grid, popularity_grid,
)
from pipeline.halving import Plan, plan, rung_configs
from pipeline.health import Thresholds
from pipeline.models.configs import CONFIGS as ENGINE_CONFIGS
from pipeline.models.configs import DEFAULT_GRIDS, grids

__all__ = ["RunConfig", "FAMILIES", "add_flag"]

ENGINE_FAMILIES = tuple(ENGINE_CONFIGS)

FAMILIES = ("popularity", "als", *ENGINE_FAMILIES)


def _setting(default: Any, doc: str, **limits: Any) -> Any:
    """A field of :class:`RunConfig`: its default, its description and its JSON-schema limits.

    For a list-valued field the limits apply to each value; ``min_items`` (default 1) and
    ``unique`` (default true) to the list. A mapping default is copied for each config.
    """
    if isinstance(default, Mapping):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata={"doc": doc, **limits})
    return field(default=default, metadata={"doc": doc, **limits})


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The settings of one DAG run (its params), checked as a whole when the run starts."""

    # -- input and validation
    input_path: str = _setting("data/demo", "Raw listens: a file or folder (relative paths are under $PIPELINE_HOME). "
                               "A folder of date=YYYY-MM-DD sub-folders is ingested as nightly increments: the "
                               "partitions up to the logical date not yet in the curated table.", minLength=1)
    input_format: str = _setting("auto", "Which loader reads input_path; auto recognises each format from its layout "
                                 "and names what it chose.", enum=list(INPUT_FORMATS))
    max_quarantine_share: float = _setting(0.01, "The run fails when more rows than this share are quarantined.",
                                           minimum=0, maximum=1)
    min_timestamp: str | None = _setting(None, "Earliest plausible listen, ISO-8601 (UTC when no zone is given); "
                                               "empty: the input format's documented floor (README, Input formats).")
    max_timestamp: str | None = _setting(None, "Latest plausible listen, ISO-8601; empty: the run's date plus "
                                               "future_tolerance_hours.")
    future_tolerance_hours: float = _setting(24.0, "How far past the run's date a listen's clock may be.", minimum=0)
    min_play_count: int = _setting(1, "Smallest plausible play count of a row.", minimum=1)
    max_play_count: int | None = _setting(None, "Largest plausible play count of a row; empty: no upper limit.",
                                          minimum=1)
    rating_mapping: str = _setting("binary", "Rated input (movielens): binary, every rating a positive; threshold, "
                                             "ratings >= rating_threshold; weight, the rating in half stars as plays.",
                                   enum=list(IngestConfig.RATING_MAPPINGS))
    rating_threshold: float = _setting(4.0, "The positive cut-off of rating_mapping=threshold.", exclusiveMinimum=0,
                                       maximum=10)
    train_window_days: int | None = _setting(0, "Date-partitioned input only: train on the listens of the last N days "
                                                "ending with the logical date (0 or empty: the full curated history).",
                                             minimum=0)
    # -- split and evaluation
    split_strategy: str = _setting("temporal_user", "How validation is split from train.", enum=list(SPLIT_STRATEGIES))
    split_fraction: float = _setting(0.8, "Train share per user (temporal_user, random_user).",
                                     exclusiveMinimum=0, maximum=1)
    test_quantile: float = _setting(0.9, "Listens at or after this quantile of time are the test window.",
                                    exclusiveMinimum=0, maximum=1)
    seed: int = _setting(0, "Seed of the random_user split and of every model fit.", minimum=0)
    k: int = _setting(100, "K of P/MAP/NDCG@K.", minimum=1, maximum=1000)
    exclude_seen: bool | None = _setting(
        None, "Drop the tracks a user heard in train from their rankings. Empty: decided at split from the log "
              "(pipeline.split.seen_protocol): true for one row per (user, track) pair (no timestamps, or "
              "ratings), where a held-out pair is never a train pair; false for a listening log, where "
              "listeners replay.")
    bootstrap_resamples: int = _setting(1000, "Bootstrap resamples of the evaluated users behind every metric's 95% "
                                              "interval (seeded by seed; the same resamples for every model).",
                                        minimum=1000)
    min_eval_users: int = _setting(100, "The run warns when fewer users than this can be evaluated on validation or "
                                        "test (their metrics mean little).", minimum=1)
    # -- the sweeps
    families: tuple[str, ...] = _setting(
        ("popularity", "als"), "Model families swept: popularity (always: the baseline and the fallback) and ALS, "
        "and any of the engines item_knn, bpr, lmf, lightfm, als_explicit (Spark ALS on ratings) and neural_mf "
        "(needs the torch extra), each on its grid in engine_grids.", enum=list(FAMILIES))
    engine_grids: dict[str, Any] = _setting(
        DEFAULT_GRIDS, "Each engine family's grid: family -> a list of products (parameter -> list of values); "
                       "every combination of each product is one configuration. Only the families listed in "
                       "families are swept; a family left out here takes its default grid.")
    betas: tuple[float, ...] = _setting(SEED_BETAS, "Damping values for the plays-per-listener baseline.", minimum=0)
    # The ALS defaults were chosen on real play counts (benchmarks/results/engines.md, issue #42):
    # log confidence, and Spark's regParam (scaled by each row's count) around 0.3.
    ranks: tuple[int, ...] = _setting((32,), "ALS grid: rank.", minimum=1, maximum=1024)
    reg_params: tuple[float, ...] = _setting((0.1, 0.3, 1.0), "ALS grid: regParam (Spark scales it by each user's "
                                             "and track's number of train pairs).", minimum=0)
    alphas: tuple[float, ...] = _setting((0.3, 1.0, 3.0), "ALS grid: alpha (confidence = 1 + alpha * f(plays), f "
                                         "set by confidence).", exclusiveMinimum=0)
    max_iters: tuple[int, ...] = _setting((15,), "ALS grid: maxIter.", minimum=1, maximum=1000)
    halving_rate: int = _setting(3, "ALS sweep by successive halving: 1 fits every configuration for max_iters; a "
                                    "rate of 2 or more fits every one for a few iterations, keeps the best "
                                    "1/rate by validation MAP@K and fits those rate times longer, in up to 3 "
                                    "rungs, the last at max_iters.", minimum=1, maximum=100)
    halving_budget: int | None = _setting(None, "Successive halving's budget: ALS iterations summed over every fit "
                                                "of the sweep; rung 0 gets as many iterations as it allows. Empty: "
                                                "max_iters / halving_rate^2 in rung 0.", minimum=1)
    als_applications: int = _setting(0, "Spark applications per ALS rung: 0 submits one per configuration (a "
                                        "cluster runs them side by side); n shares each rung's configurations "
                                        "among at most n applications, each reading train once and fitting its "
                                        "share one after another, which saves every fit Spark's start on one "
                                        "machine.", minimum=0, maximum=1024)
    confidence: str = _setting("log", "Play counts as ALS ratings: log (log1p: a track played thousands of times "
                                      "does not drown the rest) or linear.", enum=["linear", "log"])
    engine: str = _setting("spark", "ALS engine: Spark (submitted to spark_default) or implicit (single machine).",
                           enum=["spark", "implicit"])
    # -- the serving index
    recall_target: float = _setting(0.95, "Recall@K the served index must reach against exact search.",
                                     exclusiveMinimum=0, maximum=1)
    index_kinds: tuple[str, ...] = _setting(
        ("hnsw_ip", "ivf_sq8_rerank", "norm_ranges"),
        "Indexes build_index builds and measures beside exact search (always measured): also annoy_dot, "
        "annoy_angular_aug and hnsw_aug (norm-aware HNSW).",
        enum=list(INDEX_KINDS[1:]), min_items=0)
    annoy_trees: tuple[int, ...] = _setting((10, 50), "annoy: n_trees to build (search_k: 1, 10 and 50 x n_trees x K).",
                                            minimum=1)
    hnsw_M: tuple[int, ...] = _setting((16, 32), "HNSW: M (graph degree) to build.", minimum=2, maximum=512)
    hnsw_ef_construction: int = _setting(200, "HNSW: ef_construction (build effort; build time grows with it).",
                                         minimum=1)
    hnsw_ef: tuple[int, ...] = _setting((50, 100, 200, 400), "HNSW: ef (search effort) settings measured per M.",
                                        minimum=1)
    ivf_nprobe: tuple[int, ...] = _setting((16, 32, 64, 128, 256, 512),
                                           "IVF: cells probed per query, tried in order until the recall target holds.",
                                           minimum=1)
    ivf_rerank: int = _setting(4, "IVF: candidates re-ranked by their exact score, as a multiple of K.",
                               minimum=1, maximum=100)
    index_sample: int = _setting(200_000, "Tracks every index setting is measured on; above it only the winner "
                                 "is built over the whole catalogue.", minimum=1000)
    keep_runs: int = _setting(7, "Retention: run folders kept under runs/ (the newest, this run's always among them) "
                                 "and registered versions kept without an alias; older ones, and Spark spill "
                                 "left by dead applications, are removed by the retain task. Versions that carry "
                                 "an alias keep their bundles.", minimum=1)
    # -- nightly health checks (pipeline.health)
    health_checks: str = _setting("fail", "Nightly health checks against the previous nights of the same input: fail "
                                          "(a failed check fails the health task, so the night is not promoted, and "
                                          "the alert says why), flag (alert, then promote as usual) or off.",
                                  enum=["fail", "flag", "off"])
    health_min_nights: int = _setting(3, "Health: previous nights needed before a figure is checked.", minimum=1)
    health_max_ratio: float = _setting(3.0, "Health: listens, users, new users, new tracks and the top user's listens "
                                            "may differ from the previous nights' median by this factor at most "
                                            "(compared as (x+1)/(median+1)).", exclusiveMinimum=1)
    health_max_share_rise: float = _setting(0.1, "Health: the quarantined share and the test window's cold-user share "
                                                 "may exceed the previous nights' median by this much at most.",
                                            minimum=0, maximum=1)
    health_max_map_drop: float = _setting(0.3, "Health: the selected model's test MAP@K may fall below the previous "
                                               "nights' median by this fraction at most.", minimum=0, maximum=1)
    index_queries: int = _setting(200, "Validation users whose queries measure each index's recall and latency.",
                                  minimum=1)

    def __post_init__(self) -> None:
        hints = _hints()
        for f in fields(self):
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            _check(f.name, value, f.metadata)
        # the per-stage configs check what spans several params
        self.ingest("-")
        self.split()
        self.index()
        self.als_plan()
        self.popularity_configs()
        self.engine_configs()

    # -- building one

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> RunConfig:
        """From DAG params or a conf dict: unknown keys are an error; ``None`` means the default."""
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown param{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}; "
                             f"the run knows: {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in params.items() if v is not None})

    def to_params(self) -> dict[str, Any]:
        """Plain JSON values (lists, not tuples): what a DAG run's conf would hold."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def param_specs(cls) -> dict[str, dict[str, Any]]:
        """``Param(**spec)`` for every field: default, description and JSON schema (types and limits)."""
        defaults = cls().to_params()
        return {f.name: {"default": defaults[f.name], "description": f.metadata["doc"] + _limits_text(
                    f.metadata, _base_type(_hints()[f.name])[1]), **_schema(f)}
                for f in fields(cls)}

    # -- the per-stage configs

    def ingest(self, input_path: str) -> IngestConfig:
        return IngestConfig(input_path=input_path, **{name: getattr(self, name) for name in _INGEST})

    def split(self) -> SplitConfig:
        return SplitConfig(strategy=self.split_strategy, fraction=self.split_fraction,
                           test_quantile=self.test_quantile, seed=self.seed)

    def eval(self) -> EvalConfig:
        return EvalConfig(k=self.k, exclude_seen=self.exclude_seen, seed=self.seed, resamples=self.bootstrap_resamples)

    def health(self) -> Thresholds:
        return Thresholds(mode=self.health_checks, min_nights=self.health_min_nights, max_ratio=self.health_max_ratio,
                          max_share_rise=self.health_max_share_rise, max_map_drop=self.health_max_map_drop)

    def index(self) -> IndexConfig:
        return IndexConfig(recall_target=self.recall_target, n_queries=self.index_queries,
                           index_kinds=self.index_kinds, annoy_trees=self.annoy_trees, hnsw_M=self.hnsw_M,
                           hnsw_ef_construction=self.hnsw_ef_construction, hnsw_ef=self.hnsw_ef,
                           ivf_nprobe=self.ivf_nprobe, ivf_rerank=self.ivf_rerank, sample=self.index_sample)

    def als_configs(self) -> list[AlsConfig]:
        if "als" not in self.families:
            return []
        return als_grid(ranks=self.ranks, reg_params=self.reg_params, alphas=self.alphas, max_iters=self.max_iters,
                        seed=self.seed, confidence=self.confidence, engine=self.engine)

    def als_plan(self) -> Plan:
        """The ALS sweep's rungs (one rung at max_iters without halving)."""
        configs = self.als_configs()
        if self.halving_rate > 1 and len(self.max_iters) > 1:
            raise ValueError(f"param max_iters={list(self.max_iters)!r} takes one value with halving_rate="
                             f"{self.halving_rate}: the last rung's iterations (the rungs before it take fewer); "
                             "or set halving_rate 1 to fit every value in full")
        return plan(len(configs), max(self.max_iters), self.halving_rate, self.halving_budget)

    def als_rung(self, rung: int) -> list[AlsConfig]:
        """Every ALS configuration as rung ``rung`` of :meth:`als_plan` fits it (none past the plan's last)."""
        p = self.als_plan()
        if p.rate == 1:
            return self.als_configs() if rung == 0 else []
        return rung_configs(self.als_configs(), p, rung) if rung < len(p.iterations) else []

    def popularity_configs(self) -> list[PopularityConfig]:
        return popularity_grid(self.betas)

    def engine_configs(self) -> list[Any]:
        """The configurations of every engine family in ``families`` (not popularity or ALS), in that order."""
        if "popularity" not in self.families:
            raise ValueError(f"param families={list(self.families)!r} must include 'popularity': it is the baseline "
                             "every model is compared against and the answer for unknown users")
        unknown = sorted(set(self.engine_grids) - set(ENGINE_FAMILIES))
        if unknown:
            raise ValueError(f"param engine_grids names {', '.join(map(repr, unknown))}, which is not an engine "
                             f"family; its keys are among {', '.join(ENGINE_FAMILIES)}")
        out = []
        for family in (f for f in self.families if f in ENGINE_FAMILIES):
            products = self.engine_grids.get(family, DEFAULT_GRIDS[family])
            products = [products] if isinstance(products, Mapping) else products
            if not isinstance(products, list) or not all(isinstance(p, Mapping) for p in products):
                raise ValueError(f"param engine_grids[{family!r}] must be a list of products (parameter -> list of "
                                 f"values), like {json.dumps(DEFAULT_GRIDS[family][0])}")
            try:
                out += grids(family, [{n: v if isinstance(v, list) else [v] for n, v in p.items()}
                                      for p in products], seed=self.seed)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"param engine_grids[{family!r}]: {exc}") from None
        return out

    @property
    def protocol(self) -> str:
        if self.exclude_seen is None:
            return "decided at split"
        return "exclude_seen" if self.exclude_seen else "keep_seen"


def add_flag(parser: argparse.ArgumentParser, flag: str, name: str, **overrides: Any) -> None:
    """A CLI flag for the RunConfig field ``name``: its type, default, choices and help come from the field."""
    f = {f.name: f for f in fields(RunConfig)}[name]
    hint = _hints()[name]
    base, is_list = _base_type(hint)
    spec = RunConfig.param_specs()[name]
    kwargs: dict[str, Any] = {"dest": name, "default": spec["default"], "help": spec["description"]}
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = base
        if is_list:
            kwargs["nargs"] = "+"
        if "enum" in f.metadata:
            kwargs["choices"] = f.metadata["enum"]
    kwargs.update(overrides)
    parser.add_argument(flag, **kwargs)


# -- helpers

_INGEST = ("input_format", "max_quarantine_share", "min_timestamp", "max_timestamp", "future_tolerance_hours",
           "min_play_count", "max_play_count", "rating_mapping", "rating_threshold")


@cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)


def _base_type(hint: Any) -> tuple[type, bool]:
    """(scalar type, is a list) of a field's annotation: ``tuple[int, ...]`` → (int, True)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is dict:
        return dict, False
    if typing.get_origin(hint) is tuple:
        return args[0], True
    if args:  # Optional[X]
        return args[0], False
    return hint, False


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}


def _schema(f: Any) -> dict[str, Any]:
    """The Param's JSON schema: the type, and ``enum`` (the UI renders it as a choice).

    Ranges stay out of the schema on purpose: Airflow would refuse the conf with a traceback
    before any task, while ``start`` refuses it with one line that names the param. The
    description states them, so the trigger form still shows them.
    """
    base, is_list = _base_type(_hints()[f.name])
    kind: Any = _JSON_TYPES[base]
    enum = {"enum": f.metadata["enum"]} if "enum" in f.metadata else {}
    if is_list:
        return {"type": "array", "items": {"type": kind, **enum}}
    if type(None) in typing.get_args(_hints()[f.name]):
        kind = [kind, "null"]
    return {"type": kind, **enum}


def _limits_text(meta: Mapping[str, Any], is_list: bool) -> str:
    """The limits of a field in words, for its description: "Each value >= 2 and <= 512."."""
    parts = [f"{op} {meta[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
             if key in meta]
    text = " and ".join(parts)
    if is_list:
        listed = "At least one value, each once" if meta.get("min_items", 1) else "Values given once"
        return f" {listed}{', each ' + text if text else ''}."
    return f" Must be {text}." if text else ""


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """UI and CLI values to the field's type ("25" → 25, [1, 2] → (1.0, 2.0)); anything else is an error."""
    base, is_list = _base_type(hint)
    if value is None and type(None) in typing.get_args(hint):
        return None
    if base is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"param {name} is not valid JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(value, Mapping):
            raise ValueError(f"param {name}={value!r} must be a JSON object")
        return dict(value)
    if is_list:
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"param {name}={value!r} must be a list of {_JSON_TYPES[base]} values")
        return tuple(_scalar(name, v, base) for v in value)
    return _scalar(name, value, base)


def _scalar(name: str, value: Any, base: type) -> Any:
    if base is bool:
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(value, bool):
            return value
    elif base is str:
        if isinstance(value, str):
            return value
    elif not isinstance(value, bool):
        try:
            out = base(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            pass
        else:
            if base is float or out == value or isinstance(value, str):
                return out
    raise ValueError(f"param {name}={value!r} must be {'an' if base is int else 'a'} {_JSON_TYPES[base]}")


def _check(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    """The field's JSON-schema limits, enforced in Python with a message that names the param."""
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple):
        if len(value) < meta.get("min_items", 1):
            raise ValueError(f"param {name}=[] needs at least one value")
        repeated = sorted({v for v in value if value.count(v) > 1}, key=str)
        if meta.get("unique", True) and repeated:
            raise ValueError(f"param {name}={list(value)!r} repeats {repeated[0]!r}; give each value once")
    for v in values:
        if v is None:
            continue
        shown = f"{name}={list(value)!r}" if isinstance(value, tuple) else f"{name}={value!r}"
        if "enum" in meta and v not in meta["enum"]:
            raise ValueError(f"param {shown}: {v!r} is not one of {', '.join(map(repr, meta['enum']))}")
        if "minLength" in meta and len(v) < meta["minLength"]:
            raise ValueError(f"param {shown} must not be empty")
        if "minimum" in meta and v < meta["minimum"]:
            raise ValueError(f"param {shown}: {v!r} is below the minimum {meta['minimum']}")
        if "maximum" in meta and v > meta["maximum"]:
            raise ValueError(f"param {shown}: {v!r} is above the maximum {meta['maximum']}")
        if "exclusiveMinimum" in meta and v <= meta["exclusiveMinimum"]:
            raise ValueError(f"param {shown}: {v!r} must be greater than {meta['exclusiveMinimum']}")

