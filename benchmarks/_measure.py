"""Wall time and peak resident memory of a block, this process and its children (the Spark JVM) included."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil


@dataclass
class Measured:
    seconds: float = 0.0
    peak_mb: float = 0.0


def _tree_rss() -> int:
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


@contextlib.contextmanager
def measure() -> Iterator[Measured]:
    """``with measure() as m: ...`` then ``m.seconds`` and ``m.peak_mb`` (sampled every 50 ms)."""
    m = Measured()
    stop = threading.Event()
    peak = [_tree_rss()]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss())
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        stop.set()
        t.join()
        m.peak_mb = max(peak[0], _tree_rss()) / 2**20


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)
