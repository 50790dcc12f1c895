#!/usr/bin/env python3
"""Look at the Airflow UI in a real browser after a run: the DAG's graph, a task's log, with screenshots.

    apt-get install -y chromium && .venv/bin/pip install playwright      # once; no browser download
    .venv/bin/airflow api-server --port 8093 &                          # on the run's AIRFLOW_HOME
    .venv/bin/python scripts/ui_check.py --airflow-url http://127.0.0.1:8093 \\
        --passwords var/airflow/simple_auth_manager_passwords.json.generated --out var/screenshots

Checks, failing with one line when one does not hold:
- the Graph view of music_recs_nightly draws the data's way (start → validate → … → promote), saved
  as ``airflow-graph.png``;
- the latest run's ``validate`` task shows its log (its key figure is in it) and not "Could not
  read served logs", saved as ``task-log.png``;
- with ``--data-docs``: the Great Expectations page renders styled (Bootstrap's font) with every
  network request blocked, saved as ``data-docs.png``;
- with ``--mlflow-url``: the MLflow UI's registry page (``/#/models``) lists music-recs, saved as
  ``mlflow-registry.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path

DAG = "music_recs_nightly"
FLOW = ["start", "validate", "dedup_and_map", "split", "popularity_sweep", "als_configs", "als_sweep",
        "select_best", "test_eval", "build_index", "promote"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--airflow-url", default="http://127.0.0.1:8093")
    p.add_argument("--user", default="admin")
    p.add_argument("--password", help="the user's password (else read from --passwords)")
    p.add_argument("--passwords", type=Path, default=Path("var/airflow/simple_auth_manager_passwords.json.generated"))
    p.add_argument("--browser", default="/usr/bin/chromium")
    p.add_argument("--mlflow-url", help="also open the MLflow UI's model registry (e.g. http://127.0.0.1:5000)")
    p.add_argument("--data-docs", type=Path, help="also open a run's Data Docs page (ingest/data_docs/validation.html) "
                                                  "with the network blocked")
    p.add_argument("--out", type=Path, default=Path("var/screenshots"))
    a = p.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("ui_check: error: playwright is not installed; run .venv/bin/pip install playwright", file=sys.stderr)
        return 2
    password = a.password or json.loads(a.passwords.read_text())[a.user]
    a.out.mkdir(parents=True, exist_ok=True)
    url = a.airflow_url.rstrip("/")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=a.browser, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1800, "height": 1000})
        page.goto(f"{url}/auth/login", wait_until="networkidle")
        page.fill("input[name=username]", a.user)
        page.fill("input[name=password]", password)
        page.keyboard.press("Enter")
        page.wait_for_timeout(3000)

        page.goto(f"{url}/dags/{DAG}", wait_until="networkidle")
        page.get_by_role("button", name="Show Graph (Press g)").click()
        page.wait_for_timeout(3000)
        nodes = page.locator(".react-flow__node").all_inner_texts()
        missing = [t for t in FLOW if not any(n.split("\n")[0].startswith(t) for n in nodes)]
        if missing:
            return _fail(f"the graph lacks the tasks {missing}; it shows {[n.split(chr(10))[0] for n in nodes]}")
        edges = page.locator(".react-flow__edge").count()
        page.screenshot(path=str(a.out / "airflow-graph.png"))
        print(f"graph: {len(nodes)} tasks, {edges} edges -> {a.out / 'airflow-graph.png'}")

        run_id = _latest_run(page, url)
        page.goto(f"{url}/dags/{DAG}/runs/{urllib.parse.quote(run_id, safe='')}/tasks/validate",
                  wait_until="networkidle")
        page.wait_for_timeout(5000)
        text = page.locator("body").inner_text()
        page.screenshot(path=str(a.out / "task-log.png"))
        if "Could not read served logs" in text:
            return _fail(f"the validate task's Logs tab says 'Could not read served logs' (run {run_id})")
        if "rows kept" not in text:
            return _fail(f"the validate task's Logs tab shows no log of the stage (run {run_id})")
        print(f"task log: validate of {run_id} readable -> {a.out / 'task-log.png'}")
        if a.data_docs:
            offline = browser.new_page(viewport={"width": 1400, "height": 900})
            offline.route("http*://**", lambda route: route.abort())  # what a machine without internet sees
            offline.goto(a.data_docs.resolve().as_uri(), wait_until="load")
            offline.wait_for_timeout(1500)
            font = offline.evaluate("getComputedStyle(document.body).fontFamily")
            offline.screenshot(path=str(a.out / "data-docs.png"))
            if "Times" in font or "system" not in font:
                return _fail(f"the Data Docs page renders unstyled offline (body font {font!r})")
            print(f"data docs: styled offline -> {a.out / 'data-docs.png'}")
        if a.mlflow_url:
            page.goto(f"{a.mlflow_url.rstrip('/')}/#/models", wait_until="load")
            page.wait_for_timeout(4000)
            page.screenshot(path=str(a.out / "mlflow-registry.png"))
            if "music-recs" not in page.locator("body").inner_text():
                return _fail(f"the MLflow registry at {a.mlflow_url}/#/models does not list music-recs")
            print(f"mlflow: music-recs in the registry -> {a.out / 'mlflow-registry.png'}")
        browser.close()
    return 0


def _latest_run(page, url: str) -> str:
    """The newest run id of the DAG, through the UI's own REST API (same session)."""
    answer = page.request.get(f"{url}/api/v2/dags/{DAG}/dagRuns?order_by=-run_after&limit=1")
    runs = answer.json().get("dag_runs", []) if answer.ok else []
    if not runs:
        raise SystemExit(f"ui_check: error: no run of {DAG} at {url} (HTTP {answer.status}); run make demo first")
    return runs[0]["dag_run_id"]


def _fail(message: str) -> int:
    print(f"ui_check: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
