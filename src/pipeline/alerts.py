"""Alerts: a JSON message POSTed to a webhook named by the Airflow connection ``pipeline_alerts``.

The target is an ordinary Airflow connection, so it is set like any other (the UI's Admin →
Connections, a secrets backend, or ``AIRFLOW_CONN_PIPELINE_ALERTS=https://hooks.example.com/T0/B0``).
Its URL is the connection's ``extra`` field ``url`` when set, otherwise
``<conn_type>://<host>[:<port>]/<schema>``; a login and password are sent as basic auth. Without
the connection, alerts go to the task log only.

The body is ``{"text": ..., "dag_id", "run_id", "task_id", "kind", "details"}``: ``text`` is what
Slack- and Mattermost-style incoming webhooks display. Delivery is tried once, with a short
timeout; a target that cannot be reached is logged and never fails the task it reports on.

:class:`WebhookNotifier` is the DAG's ``on_failure_callback`` (every task); the ``health`` task
calls :func:`send` itself when its checks only flag the night.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.request
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier

__all__ = ["CONN_ID", "target", "send", "WebhookNotifier"]

log = logging.getLogger(__name__)

CONN_ID = "pipeline_alerts"
TIMEOUT_S = 10


def target(conn_id: str = CONN_ID) -> tuple[str, str | None] | None:
    """(URL, basic-auth header or None) of the alert connection, or None when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    url = (conn.extra_dejson or {}).get("url")
    if not url:
        scheme = conn.conn_type if conn.conn_type in ("http", "https") else "http"
        host = conn.host or ""
        url = host if "://" in host else f"{scheme}://{host}{f':{conn.port}' if conn.port else ''}"
        if conn.schema:
            url = f"{url.rstrip('/')}/{conn.schema.lstrip('/')}"
    auth = None
    if conn.login:
        auth = "Basic " + base64.b64encode(f"{conn.login}:{conn.password or ''}".encode()).decode()
    return url, auth


def send(text: str, *, kind: str, context: Mapping[str, Any] | None = None,
         details: Mapping[str, Any] | None = None, conn_id: str = CONN_ID) -> bool:
    """POST one alert; True when the target accepted it (2xx). Never raises."""
    context = context or {}
    ti = context.get("ti") or context.get("task_instance")
    body = {"text": text, "kind": kind, "dag_id": getattr(context.get("dag"), "dag_id", None),
            "run_id": context.get("run_id"), "task_id": getattr(ti, "task_id", None), "details": dict(details or {})}
    log.warning("alert (%s): %s", kind, text)
    try:
        where = target(conn_id)
    except Exception as e:  # a broken connection definition must not hide the alert's cause
        log.warning("alert not sent: the connection %r cannot be read (%s)", conn_id, e)
        return False
    if where is None:
        log.info("no alert target: define the Airflow connection %r (e.g. AIRFLOW_CONN_%s=https://...) to send "
                 "alerts to a webhook", conn_id, conn_id.upper())
        return False
    url, auth = where
    req = urllib.request.Request(url, data=json.dumps(body, default=str).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **({"Authorization": auth} if auth else {})})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            ok = 200 <= resp.status < 300
    except Exception as e:  # noqa: BLE001 - an unreachable target is reported, not raised
        log.warning("alert not delivered to %s: %s", url, e)
        return False
    log.info("alert delivered to %s", url)
    return ok


class WebhookNotifier(BaseNotifier):
    """``on_failure_callback``: a failed task's DAG, run, task and error, sent through :func:`send`."""

    def __init__(self, conn_id: str = CONN_ID) -> None:
        super().__init__()
        self.conn_id = conn_id

    def notify(self, context: Mapping[str, Any]) -> None:
        ti = context.get("ti") or context.get("task_instance")
        error = context.get("exception")
        dag_id = getattr(context.get("dag"), "dag_id", "?")
        task_id = getattr(ti, "task_id", "?")
        first = str(error).strip().splitlines()[0] if error and str(error).strip() else type(error).__name__
        text = f"{dag_id} {context.get('run_id')}: task {task_id} failed: {first}"
        send(text, kind="health" if type(error).__name__ == "HealthCheckFailed" else "task_failed",
             context=context, details={"error": str(error) if error else None,
                                       "try_number": getattr(ti, "try_number", None)},
             conn_id=self.conn_id)
