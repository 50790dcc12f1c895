"""Nightly health checks: tonight's data and model against the previous nights of the same input.

The DAG's ``health`` task runs after ``test_eval`` and before ``promote``. It measures the night
(:class:`Night`), compares each figure with the median of the previous nights in the history
(at least ``health_min_nights`` of them; before that every check passes and says why), and
appends the night to the history:

============================  =====================================================  ======================
figure                        what it is                                             fails when
============================  =====================================================  ======================
``listens``                   listens kept tonight                                   (x+1)/(median+1) above
``users``                     users with a listen tonight                            ``health_max_ratio``
                                                                                     or below its inverse
``new_users``                 users the ID map first saw tonight                     (x+1)/(median+1) above
``new_tracks``                tracks the ID map first saw tonight                    ``health_max_ratio``
``top_user_listens``          the most listens of one user tonight                   (a fall is no alarm)
``quarantine_share``          rows quarantined / rows in                             above median +
``cold_share``                test-window users without a train history / all        ``health_max_share_rise``
``test_map``                  test MAP@K of tonight's selected model                 below median x
                                                                                     (1 - ``health_max_map_drop``)
============================  =====================================================  ======================

A night of nightly increments is the partitions the run ingested (or, on a re-run, the newest one
up to its date); when a run ingests several, the counts are per partition. A snapshot input is
one night per run.

The history is one JSON line per run key in ``<home>/state/health/<dag>--<input>.jsonl``: a re-run
replaces its own line, and nights of another input are never compared. ``promote`` adds the
champion's test MAP@K on each night's window, which the trend plot draws beside the selected
model's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.paths import atomic_write_text, file_lock, pipeline_home

__all__ = ["FIGURES", "Thresholds", "Night", "Check", "Report", "HealthCheckFailed", "night_from_ingest",
           "add_model_figures", "evaluate", "History", "trend_plot"]

log = logging.getLogger(__name__)

# figure -> (what it is, how it is compared)
FIGURES: dict[str, tuple[str, str]] = {
    "listens": ("listens kept", "ratio"),
    "users": ("users with a listen", "ratio"),
    "new_users": ("users first seen", "rise"),
    "new_tracks": ("tracks first seen", "rise"),
    "top_user_listens": ("the most listens of one user", "rise"),
    "quarantine_share": ("share of rows quarantined", "share"),
    "cold_share": ("share of test-window users without a train history", "share"),
    "test_map": ("test MAP@K of the selected model", "drop"),
}


class HealthCheckFailed(RuntimeError):
    """A nightly check failed and ``health_checks`` is ``fail``: the night is not promoted."""


@dataclass(frozen=True)
class Thresholds:
    mode: str = "fail"  # fail | flag | off
    min_nights: int = 3
    max_ratio: float = 3.0
    max_share_rise: float = 0.1
    max_map_drop: float = 0.3


@dataclass
class Night:
    """One night's figures (:data:`FIGURES`) and where they come from."""

    run_key: str
    label: str  # the partitions (date=...) or the run key
    partitions: int
    figures: dict[str, float]
    champion_test_map: float | None = None
    promoted: str | None = None
    failed: list[str] = field(default_factory=list)  # the figures whose checks failed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Night:
        return cls(**{k: d.get(k) for k in ("run_key", "label", "partitions", "figures", "champion_test_map",
                                              "promoted")}, failed=list(d.get("failed") or []))


@dataclass(frozen=True)
class Check:
    figure: str
    value: float
    baseline: float | None  # the median of the previous nights (None: too few of them)
    allowed: str  # the range that passes, in words
    ok: bool

    def line(self) -> str:
        what = FIGURES[self.figure][0]
        if self.baseline is None:
            return f"{self.figure} {_fmt(self.value)} ({what}): {self.allowed}"
        return (f"{self.figure} {_fmt(self.value)} ({what}) against a median of {_fmt(self.baseline)}: "
                f"{'ok' if self.ok else 'FAILED'}, allowed {self.allowed}")


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) >= 1 else f"{x:.4g}"


# ---------------------------------------------------------------- measuring a night


def _user_counts(parquet_dirs: Iterable[Path]) -> tuple[int, int]:
    """(distinct users, the most listens of one user) over the listens in ``parquet_dirs``."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    users, top = 0, 0
    for d in parquet_dirs:
        col = ds.dataset(str(d), format="parquet").to_table(columns=["user_idx"]).column("user_idx")
        if len(col):
            counts = pc.value_counts(col).field("counts")
            users, top = users + len(counts), max(top, pc.max(counts).as_py())
    return users, top


def night_from_ingest(run_key: str, summary: Mapping[str, Any], listens: Path | None) -> Night:
    """Tonight's data figures from the dedup stage's summary (snapshot or nightly increments)."""
    if summary.get("increments"):
        curated = Path(summary["curated"]) / "listens"
        names = list(summary.get("ingested") or []) or summary["partitions"][-1:]
        records = [json.loads((curated / n / "_partition.json").read_text()) for n in names]
        per = len(records)
        users = [_user_counts([curated / n]) for n in names]
        figures = {
            "listens": sum(r["rows_out"] for r in records) / per,
            "users": sum(u for u, _ in users) / per,
            "new_users": sum(r["users_added"] for r in records) / per,
            "new_tracks": sum(r["tracks_added"] for r in records) / per,
            "top_user_listens": float(max(t for _, t in users)),
            "quarantine_share": _share(sum(r["quarantined"] for r in records), sum(r["rows_in"] for r in records)),
        }
        label = names[0] if per == 1 else f"{names[0]} .. {names[-1]}"
        return Night(run_key, label, per, figures)
    n_users, top = _user_counts([listens]) if listens else (0, 0)
    figures = {"listens": float(summary["rows_out"]), "users": float(n_users),
               "new_users": float(summary.get("users_added", 0)), "new_tracks": float(summary.get("tracks_added", 0)),
               "top_user_listens": float(top), "quarantine_share": _share(summary["quarantined"], summary["rows_in"])}
    return Night(run_key, run_key, 1, figures)


def _share(part: float, whole: float) -> float:
    return float(part) / whole if whole else 0.0


def add_model_figures(night: Night, test_metrics: Mapping[str, Any], k: int) -> Night:
    """The selected model's test MAP@K and the test window's cold share (from test_eval's metrics)."""
    n, cold = float(test_metrics.get("test_n_users", 0)), float(test_metrics.get("test_n_cold_users", 0))
    night.figures["cold_share"] = _share(cold, n + cold)
    night.figures["test_map"] = float(test_metrics[f"test_map_at_{k}"])
    return night


# ---------------------------------------------------------------- comparing


def evaluate(night: Night, previous: list[Night], th: Thresholds) -> list[Check]:
    """Each figure of ``night`` against the median of ``previous`` (the nights before it, oldest first)."""
    checks = []
    for name, (_, how) in FIGURES.items():
        if name not in night.figures:
            continue
        value = float(night.figures[name])
        past = [float(p.figures[name]) for p in previous if name in p.figures]
        if len(past) < th.min_nights:
            checks.append(Check(name, value, None, f"not checked: {len(past)} previous night(s), "
                                                   f"health_min_nights={th.min_nights}", True))
            continue
        med = statistics.median(past)
        if how in ("ratio", "rise"):
            ratio = (value + 1) / (med + 1)
            ok = ratio <= th.max_ratio and (how == "rise" or ratio >= 1 / th.max_ratio)
            allowed = (f"{'within' if how == 'ratio' else 'up to'} {th.max_ratio:g}x (health_max_ratio; "
                       f"this night is {ratio:.2f}x)")
        elif how == "share":
            ok = value <= med + th.max_share_rise
            allowed = f"up to {med + th.max_share_rise:.4g} (median + health_max_share_rise {th.max_share_rise:g})"
        else:
            floor = med * (1 - th.max_map_drop)
            ok = value >= floor
            allowed = f"at least {floor:.4g} (median less health_max_map_drop {th.max_map_drop:g})"
        checks.append(Check(name, value, med, allowed, ok))
    return checks


# ---------------------------------------------------------------- the history


class History:
    """The nights of one DAG on one input: ``<home>/state/health/<dag>--<input>.jsonl``."""

    def __init__(self, dag_id: str, input_path: str, *, home: Path | None = None) -> None:
        tail = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(input_path).name)[:40] or "input"
        digest = hashlib.sha256(str(input_path).encode()).hexdigest()[:8]
        self.path = (home or pipeline_home()) / "state" / "health" / f"{dag_id}--{tail}-{digest}.jsonl"

    def nights(self) -> list[Night]:
        if not self.path.exists():
            return []
        return [Night.from_json(json.loads(line)) for line in self.path.read_text().splitlines() if line.strip()]

    def before(self, run_key: str) -> list[Night]:
        """The nights recorded before ``run_key`` (in the order they were first recorded)."""
        out = []
        for n in self.nights():
            if n.run_key == run_key:
                break
            out.append(n)
        return out

    def record(self, night: Night) -> None:
        """Add ``night``, or replace the line of its run key in place (a re-run keeps its position)."""
        self._update(night.run_key, lambda old: night)

    def record_promotion(self, run_key: str, alias: str, champion_test_map: float | None) -> None:
        def merge(old: Night | None) -> Night | None:
            if old is None:
                return None
            old.promoted, old.champion_test_map = alias, champion_test_map
            return old

        self._update(run_key, merge)

    def _update(self, run_key: str, change) -> None:
        with file_lock(self.path.with_suffix(".lock")):
            nights = self.nights()
            at = next((i for i, n in enumerate(nights) if n.run_key == run_key), None)
            new = change(None if at is None else nights[at])
            if new is None:
                return
            if at is None:
                nights.append(new)
            else:
                nights[at] = new
            atomic_write_text(self.path, "".join(json.dumps(n.to_json()) + "\n" for n in nights))


# ---------------------------------------------------------------- the trend plot


def trend_plot(nights: list[Night], k: int, out: Path) -> Path:
    """Test MAP@K (the selected model, and the champion on each night's window), listens, the shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(len(nights)))
    labels = [n.label for n in nights]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax = axes[0]
    ax.plot(x, [n.figures.get("test_map") for n in nights], "o-", label="selected that night")
    champ = [(i, n.champion_test_map) for i, n in enumerate(nights) if n.champion_test_map is not None]
    if champ:
        ax.plot(*zip(*champ), "s--", label="champion after promotion")
    bad = [i for i, n in enumerate(nights) if n.failed]
    if bad:
        ax.plot(bad, [nights[i].figures.get("test_map") for i in bad], "x", color="red", markersize=12, mew=2,
                label="checks failed")
    ax.set_ylabel(f"test MAP@{k}")
    ax.legend(loc="best", fontsize=8)
    ax = axes[1]
    for name in ("listens", "top_user_listens"):
        ax.plot(x, [n.figures.get(name) for n in nights], "o-", label=name.replace("_", " "))
    ax.set_ylabel("per night")
    ax.set_yscale("log")
    ax.legend(loc="best", fontsize=8)
    ax = axes[2]
    for name in ("quarantine_share", "cold_share"):
        ax.plot(x, [n.figures.get(name) for n in nights], "o-", label=name.replace("_", " "))
    ax.set_ylabel("share")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize=8)
    step = max(1, len(x) // 12)
    axes[-1].set_xticks(x[::step], labels[::step], rotation=30, ha="right", fontsize=8)
    fig.suptitle("Nightly health")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


@dataclass
class Report:
    night: Night
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        if self.failed:
            return f"{len(self.failed)} of {len(self.checks)} checks failed: " + "; ".join(
                c.line() for c in self.failed)
        checked = sum(c.baseline is not None for c in self.checks)
        if checked:
            return f"all {checked} checks passed"
        return self.checks[0].allowed.replace("not checked:", "not checked yet:") if self.checks else "no figures"

    def to_json(self) -> dict[str, Any]:
        return {"night": self.night.to_json(), "failed": [c.figure for c in self.failed],
                "checks": [{**asdict(c), "line": c.line()} for c in self.checks], "summary": self.summary()}
