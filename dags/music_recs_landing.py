"""
### music_recs_landing

Lands the nights of a raw listening log as `date=YYYY-MM-DD` folders under the landing root, each
in one atomic rename, and updates the asset `music_recs_landed_listens` when a night landed.
`music_recs_nightly`, when scheduled on that asset (`MUSIC_RECS_SCHEDULE=asset` or `cron_or_asset`
where the DAG processor runs), starts on it and trains on what landed: the event names the landing
root and its format, and carries `nightly_conf`, the params of the run it starts.

Not scheduled: whatever delivers the raw log triggers it (the REST API, or "Trigger" in the UI)
with the night as its logical date. Nights after the logical date wait; a folder already landed
is never rewritten; a run that lands nothing is skipped, and the asset is not updated.

`airflow dags trigger music_recs_landing --logical-date 2026-01-01T06:00:00Z -c '{"source": "data/demo"}'`
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from pipeline.assets import LANDED


@dag(
    dag_id="music_recs_landing",
    schedule=None,
    start_date=pendulum.datetime(2020, 1, 1, tz="UTC"),  # any night of a log may land
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["music-recs"],
    params={
        "source": Param("data/demo", type="string", description="The raw log (ListenBrainz layout: interactions/ "
                        "and tracks.parquet); relative paths are under $PIPELINE_HOME."),
        "landing": Param("data/nightly", type="string", description="The landing root: one date=YYYY-MM-DD folder "
                         "per night; the nightly DAG's input_path."),
        "input_format": Param("listenbrainz", type="string", enum=["listenbrainz"],
                              description="The raw log's format (the nightly run's input_format)."),
        "nightly_conf": Param({}, type="object", description="Params of the nightly run this landing starts "
                              "(as in its Trigger form); input_path and input_format come from above."),
    },
)
def music_recs_landing():
    @task(outlets=[LANDED])
    def land(params=None, **context) -> dict:
        import datetime as dt

        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline import stages

        day = context.get("logical_date") or dt.datetime.now(dt.timezone.utc)
        landed = stages.land(params["source"], params["landing"], params["input_format"],
                             day.astimezone(dt.timezone.utc).date())
        if not landed["written"]:
            raise AirflowSkipException(f"no new night up to {day.date()}: the asset is not updated")
        context["outlet_events"][LANDED].extra = {
            "input_path": str(stages.resolve_input(params["landing"])), "input_format": params["input_format"],
            "partitions": landed["written"], "conf": dict(params["nightly_conf"] or {})}
        return landed

    land()


music_recs_landing()
