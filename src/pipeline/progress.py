"""One recognisable log line per stage with its key figure, for a person watching a run.

A stage calls :func:`note` once, when it has its result (``validate`` its kept and quarantined
rows, ``promote`` the version and alias). The line is an ordinary INFO record of the logger
``pipeline.progress`` whose message is the marker and a JSON object, so it reads the same in an
Airflow task log, in a spark-submit job's output and in a terminal, and :func:`read_note` finds
it again in any of them (``pipeline demo`` prints it beside the task that logged it).
"""

from __future__ import annotations

import json
import logging
from typing import NamedTuple

__all__ = ["MARKER", "Note", "note", "read_note"]

MARKER = "pipeline-progress"

_log = logging.getLogger("pipeline.progress")
_decoder = json.JSONDecoder()


class Note(NamedTuple):
    figure: str
    ok: bool  # False: the stage finished, but what it did failed (a sweep configuration that raised)


def note(figure: str, *, ok: bool = True) -> None:
    """Log the stage's key figure (one short line, e.g. ``"29,851 rows kept, 0 quarantined"``)."""
    _log.info("%s %s", MARKER, json.dumps({"figure": figure, "ok": ok}))


def read_note(line: str) -> Note | None:
    """The note a :func:`note` call put in this log line, or ``None`` when the line holds none."""
    at = line.find(MARKER + " {")
    if at < 0:
        return None
    try:
        record, _ = _decoder.raw_decode(line, at + len(MARKER) + 1)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("figure"), str):
        return None
    return Note(record["figure"], record.get("ok") is not False)
