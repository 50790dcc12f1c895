"""Data-aware scheduling: the landed listens and the served model as Airflow assets.

- :data:`LANDED` is updated by ``music_recs_landing`` whenever a night lands (new ``date=``
  folders under the landing root). Its event's ``extra`` says where and in which format, and
  carries the params for the nightly run it triggers.
- :data:`MODEL` is updated by the nightly DAG's ``promote`` (the version and the alias it got).

``music_recs_nightly`` is scheduled by :func:`nightly_schedule`, chosen with the environment
variable ``MUSIC_RECS_SCHEDULE`` where the DAG is parsed (the DAG processor's):

- ``cron`` (the default): 03:00 UTC every night;
- ``asset``: whenever :data:`LANDED` is updated, and never otherwise;
- ``cron_or_asset``: both.

A run started by the asset and given no conf of its own trains on what landed
(:func:`run_params`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset

__all__ = ["LANDED", "MODEL", "SCHEDULES", "CRON", "nightly_schedule", "run_params"]

LANDED = Asset(name="music_recs_landed_listens", uri="music-recs://listens/landed")
MODEL = Asset(name="music_recs_model", uri="music-recs://models/music-recs")
CRON = "0 3 * * *"
SCHEDULES = ("cron", "asset", "cron_or_asset")


def nightly_schedule(env: Mapping[str, str] = os.environ) -> Any:
    """The nightly DAG's ``schedule`` for ``MUSIC_RECS_SCHEDULE`` (cron when unset)."""
    choice = env.get("MUSIC_RECS_SCHEDULE", "cron").strip() or "cron"
    if choice == "cron":
        return CRON
    if choice == "asset":
        return [LANDED]
    if choice == "cron_or_asset":
        from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

        return AssetOrTimeSchedule(timetable=CronTriggerTimetable(CRON, timezone="UTC"), assets=[LANDED])
    raise ValueError(f"MUSIC_RECS_SCHEDULE={choice!r}: expected one of {', '.join(SCHEDULES)}")


def run_params(params: Mapping[str, Any] | None, conf: Mapping[str, Any] | None,
               events: Mapping[Any, Any] | None) -> dict[str, Any]:
    """The params of a nightly run: as given, or, for a run the landing asset started without a conf of its
    own, the newest landing event's input (``input_path``, ``input_format``) and its ``conf``."""
    params = dict(params or {})
    if conf or not events:
        return params
    try:
        landed = list(events[LANDED])
    except KeyError:
        return params
    if not landed:
        return params
    extra = dict(max(landed, key=lambda e: e.timestamp).extra or {})
    return {**params, **{k: extra[k] for k in ("input_path", "input_format") if k in extra},
            **dict(extra.get("conf") or {})}
