#!/usr/bin/env python3
"""Look at the Airflow and MLflow UIs and the Data Docs in a real browser after a run, as a person would.

    apt-get install -y chromium && .venv/bin/pip install playwright      # once; no browser download
    scripts/airflow.sh run api-server &                                 # the README's Airflow UI line
    .venv/bin/mlflow ui --backend-store-uri sqlite:///$PWD/var/mlflow/mlflow.db --port 5000 &
    .venv/bin/python scripts/ui_check.py --mlflow-url http://127.0.0.1:5000 \\
        --data-docs var/runs/<run>/ingest/data_docs/validation.html --out var/screenshots

Checks, failing with one line when one does not hold:
- Airflow (skipped with ``--no-airflow``): the Graph view of music_recs_nightly draws the data's way
  (start → validate → … → promote), ``airflow-graph.png``; the latest run's ``validate`` task page shows
  its log (its key figure, not "Could not read served logs"), ``task-log.png``, and its Details tab the
  plugin's "MLflow run" link, ``task-details.png``;
- with ``--data-docs``, the page opened with every network request blocked: styled (Bootstrap's font),
  a drawn status icon in every Status cell, no broken image, no link to a file that is not there, no
  console error, ``data-docs.png``;
- with ``--mlflow-url``: the registry lists music-recs (``mlflow-registry.png``); the latest parent run's
  sweep in the runs table (``mlflow-runs.png``) and the compare view without a NaN
  (``mlflow-compare.png``); its Data Docs in MLflow's artifact viewer without a console error
  (``mlflow-data-docs.png``); its sweep plots there (``mlflow-<plot>.png``).
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


class Failed(Exception):
    """One thing a person would see wrong; its message is the line printed."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--airflow-url", default="http://127.0.0.1:8088")
    p.add_argument("--no-airflow", action="store_true", help="skip the Airflow UI's checks")
    p.add_argument("--user", default="admin")
    p.add_argument("--password", help="the user's password (else read from --passwords)")
    p.add_argument("--passwords", type=Path, default=Path("var/airflow/simple_auth_manager_passwords.json.generated"))
    p.add_argument("--browser", default="/usr/bin/chromium")
    p.add_argument("--mlflow-url", help="also check the MLflow UI (e.g. http://127.0.0.1:5000)")
    p.add_argument("--data-docs", type=Path, help="also open a run's Data Docs page (ingest/data_docs/validation.html) "
                                                  "with the network blocked")
    p.add_argument("--out", type=Path, default=Path("var/screenshots"))
    a = p.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("ui_check: error: playwright is not installed; run .venv/bin/pip install playwright", file=sys.stderr)
        return 2
    if a.data_docs and not a.data_docs.is_file():
        return _fail(f"no Data Docs page at {a.data_docs}")
    a.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=a.browser, headless=True, args=CHROMIUM_ARGS)
            if not a.no_airflow:
                password = a.password or json.loads(a.passwords.read_text())[a.user]
                check_airflow(browser, a.airflow_url.rstrip("/"), a.user, password, a.out)
            if a.data_docs:
                check_data_docs(browser, a.data_docs, a.out)
            if a.mlflow_url:
                check_mlflow(browser, a.mlflow_url.rstrip("/"), a.out)
            browser.close()
    except Failed as e:
        return _fail(str(e))
    return 0


def _page(browser, width: int = 1800, height: int = 1000):
    """A new page and the list its console errors and uncaught exceptions are added to."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def check_airflow(browser, url: str, user: str, password: str, out: Path) -> None:
    page, _ = _page(browser)
    page.goto(f"{url}/auth/login", wait_until="networkidle")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.keyboard.press("Enter")
    page.wait_for_timeout(3000)

    page.goto(f"{url}/dags/{DAG}", wait_until="networkidle")
    page.get_by_role("button", name="Show Graph (Press g)").click()
    page.wait_for_timeout(3000)
    nodes = page.locator(".react-flow__node").all_inner_texts()
    missing = [t for t in FLOW if not any(n.split("\n")[0].startswith(t) for n in nodes)]
    if missing:
        raise Failed(f"the graph lacks the tasks {missing}; it shows {[n.split(chr(10))[0] for n in nodes]}")
    edges = page.locator(".react-flow__edge").count()
    page.screenshot(path=str(out / "airflow-graph.png"))
    print(f"graph: {len(nodes)} tasks, {edges} edges -> {out / 'airflow-graph.png'}")

    run_id = _latest_run(page, url)
    page.goto(f"{url}/dags/{DAG}/runs/{urllib.parse.quote(run_id, safe='')}/tasks/validate", wait_until="networkidle")
    page.wait_for_timeout(5000)
    text = page.locator("body").inner_text()
    page.screenshot(path=str(out / "task-log.png"))
    if "Could not read served logs" in text:
        raise Failed(f"the validate task's Logs tab says 'Could not read served logs' (run {run_id})")
    if "rows kept" not in text:
        raise Failed(f"the validate task's Logs tab shows no log of the stage (run {run_id})")
    page.goto(f"{url}/dags/{DAG}/runs/{urllib.parse.quote(run_id, safe='')}/tasks/validate/details",
              wait_until="networkidle")  # the task's extra links are on its Details tab
    page.wait_for_timeout(3000)
    link = page.locator("a", has_text="MLflow run")
    page.screenshot(path=str(out / "task-details.png"))
    if link.count() == 0:
        raise Failed(f"the validate task's Details tab has no 'MLflow run' link: is the plugin loaded? (run {run_id})")
    href = link.first.get_attribute("href") or ""
    if "#/experiments/" not in href:
        raise Failed(f"the 'MLflow run' link goes to {href!r}, not to an experiment's runs")
    print(f"task page: validate of {run_id}: log readable, 'MLflow run' -> {href[:50]}... -> {out / 'task-log.png'}, "
          f"{out / 'task-details.png'}")


def check_data_docs(browser, path: Path, out: Path) -> None:
    page, errors = _page(browser, 1400, 900)
    page.route("http*://**", lambda route: route.abort())  # what a machine without internet sees
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out / "data-docs.png"))
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    if "Times" in font or "system" not in font:
        raise Failed(f"the Data Docs page renders unstyled offline (body font {font!r})")
    found = page.evaluate(_LOOK_AT_DOCS)
    if not found["statusCells"] or found["blankStatus"]:
        raise Failed(f"the Data Docs' Status column shows no icon in {found['blankStatus']} of "
                     f"{found['statusCells']} rows (an icon font that is not there?)")
    if found["brokenImages"]:
        raise Failed(f"the Data Docs show broken images: {found['brokenImages'][:3]}")
    dead = [h for h in found["links"] if not (path.parent / urllib.parse.unquote(h.split("#")[0])).exists()]
    if dead:
        raise Failed(f"the Data Docs link to files that do not exist: {dead[:3]}")
    if errors:
        raise Failed(f"the Data Docs page logs errors: {errors[:3]}")
    print(f"data docs: styled offline, {found['statusCells']} status icons, links resolve -> {out / 'data-docs.png'}")


# Every Status cell (the first cell of each expectation row) must draw something: an <i> icon whose ::before
# has content and width; images must have loaded; relative links are listed for the caller to resolve.
_LOOK_AT_DOCS = """() => {
  const cells = [...document.querySelectorAll('table')].filter(t => /Status/.test(t.rows[0]?.innerText || ''))
    .flatMap(t => [...t.rows].slice(1).map(r => r.cells[0]).filter(Boolean));
  const drawn = c => [...c.querySelectorAll('i')].some(i => {
    const b = getComputedStyle(i, '::before'); return b.content && b.content !== 'none' && i.getBoundingClientRect().width > 0; });
  return {
    statusCells: cells.length, blankStatus: cells.filter(c => !drawn(c)).length,
    brokenImages: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.outerHTML.slice(0, 80)),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
      .filter(h => !/^(#|https?:|mailto:)/.test(h)),
  };
}"""


def check_mlflow(browser, url: str, out: Path) -> None:
    page, errors = _page(browser)
    page.goto(f"{url}/#/models", wait_until="load")
    page.wait_for_timeout(4000)
    page.screenshot(path=str(out / "mlflow-registry.png"))
    if "music-recs" not in page.locator("body").inner_text():
        raise Failed(f"the MLflow registry at {url}/#/models does not list music-recs")
    print(f"mlflow: music-recs in the registry -> {out / 'mlflow-registry.png'}")

    exp, parent, children = _latest_sweep(page, url)
    flt = urllib.parse.quote(f"tags.`mlflow.parentRunId` = '{parent}'", safe="")
    page.goto(f"{url}/#/experiments/{exp}/runs?searchFilter={flt}", wait_until="load")
    page.wait_for_timeout(5000)
    page.screenshot(path=str(out / "mlflow-runs.png"))
    print(f"mlflow: the sweep's {len(children)} runs -> {out / 'mlflow-runs.png'}")

    runs = urllib.parse.quote(json.dumps(children))
    page.goto(f"{url}/#/compare-runs?runs={runs}&experiments={urllib.parse.quote(json.dumps([exp]))}", wait_until="load")
    page.wait_for_timeout(5000)
    page.screenshot(path=str(out / "mlflow-compare.png"), full_page=True)
    text = page.locator("body").inner_text()
    if "NaN" in text:
        rows = [line.split("\t")[0] for line in text.splitlines() if "NaN" in line]
        raise Failed(f"the compare view of the sweep's runs shows NaN ({text.count('NaN')} cells; rows {rows[:4]})")
    print(f"mlflow: compare view of {len(children)} runs, no NaN -> {out / 'mlflow-compare.png'}")

    errors.clear()
    page.goto(f"{url}/#/experiments/{exp}/runs/{parent}/artifacts/validation/data_docs/validation.html", wait_until="load")
    page.wait_for_timeout(5000)
    page.screenshot(path=str(out / "mlflow-data-docs.png"))
    frames = [f for f in page.frames if f != page.main_frame]
    if not frames:
        raise Failed("MLflow's artifact viewer shows no Data Docs page (validation/data_docs/validation.html)")
    font = frames[-1].evaluate("getComputedStyle(document.body).fontFamily")
    if errors or "Times" in font:
        raise Failed(f"the Data Docs in MLflow's artifact viewer: body font {font!r}, errors {errors[:3]}")
    print(f"mlflow: Data Docs styled in the artifact viewer -> {out / 'mlflow-data-docs.png'}")
    for plot in ("map_vs_alpha", "map_vs_rank", "map_vs_reg_param", "map_vs_beta"):
        page.goto(f"{url}/#/experiments/{exp}/runs/{parent}/artifacts/leaderboard/{plot}.png", wait_until="load")
        page.wait_for_timeout(2500)
        page.screenshot(path=str(out / f"mlflow-{plot}.png"))


def _latest_sweep(page, url: str) -> tuple[str, str, list[str]]:
    """The experiment id, the newest parent run and its children's ids, through MLflow's REST API."""
    got = page.request.get(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=music-recs")
    if not got.ok:
        raise Failed(f"no music-recs experiment at {url} (HTTP {got.status}); run make demo first")
    exp = got.json()["experiment"]["experiment_id"]

    def search(flt: str, n: int) -> list[str]:
        answer = page.request.post(f"{url}/api/2.0/mlflow/runs/search", data={
            "experiment_ids": [exp], "filter": flt, "max_results": n, "order_by": ["attributes.start_time DESC"]})
        return [r["info"]["run_id"] for r in answer.json().get("runs", [])]

    parents = search("tags.`pipeline.role` = 'parent'", 1)
    if not parents:
        raise Failed(f"no parent run in experiment {exp} at {url}; run make demo first")
    return exp, parents[0], search(f"tags.`mlflow.parentRunId` = '{parents[0]}'", 100)


def _latest_run(page, url: str) -> str:
    """The newest run id of the DAG, through the UI's own REST API (same session)."""
    answer = page.request.get(f"{url}/api/v2/dags/{DAG}/dagRuns?order_by=-run_after&limit=1")
    runs = answer.json().get("dag_runs", []) if answer.ok else []
    if not runs:
        raise Failed(f"no run of {DAG} at {url} (HTTP {answer.status}); run make demo first")
    return runs[0]["dag_run_id"]


def _fail(message: str) -> int:
    print(f"ui_check: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
