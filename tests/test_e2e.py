"""End to end: `pipeline demo` (`airflow dags test music_recs_nightly`) on a small synthetic log, then what a user checks.

What the terminal shows (one line per task, the report, the log file), the MLflow runs (parent
+ one child per configuration, their metrics), the registered `music-recs` version behind the
`champion` alias, and the promoted model answering a user.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_runs import airflow_env

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONF = {
    "input_format": "listenbrainz",
    "ranks": [16],
    "reg_params": [0.1],
    "alphas": [0.5, 2.0],
    "max_iters": [6],
    # successive halving: both configurations for 2 iterations, the better one for 4, then for 6
    "halving_rate": 2,
    "betas": [10, 1000],
    # one weak item-kNN configuration: the engine sweep's mapped task runs, and ALS stays the one served
    "families": ["popularity", "als", "item_knn"],
    "engine_grids": {"item_knn": [{"similarity": ["cosine"], "neighbours": [2], "transform": ["binary"]}]},
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from pipeline import synth

    home = tmp_path_factory.mktemp("home")
    synth.generate(home / "data" / "demo", n_listens=30_000, seed=7)
    env = _airflow_home(home)
    out = _pipeline_demo(home, env, home / "data" / "demo")
    (home / "demo_terminal.txt").write_text(out.stdout)
    log = _named_log(home, out.stdout).read_text()
    assert out.returncode == 0 and "failed" not in _final_states(log), out.stdout[-3000:] + out.stderr[-3000:]
    os.environ["PIPELINE_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield home, log
    os.environ.pop("PIPELINE_HOME", None)


def _airflow_home(home: Path) -> dict[str, str]:
    """The environment of a run with everything under ``home``, its Airflow database migrated."""
    return airflow_env(home)


def _pipeline_demo(home: Path, env: dict[str, str], input_path: Path) -> subprocess.CompletedProcess:
    """`pipeline demo` as `make demo` calls it, run from ``home`` (what a person sees on the terminal)."""
    return subprocess.run([str(BIN / "pipeline"), "demo", "--input", str(input_path), "-c", json.dumps(CONF)],
                          env=env, cwd=home, capture_output=True, text=True, timeout=1200)


def _named_log(home: Path, terminal: str) -> Path:
    """The run's log file, as the terminal's last line names it."""
    m = re.search(r"Full log: (\S+)", terminal.splitlines()[-1])
    assert m, terminal[-2000:]
    return home / m[1]


def _final_states(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "DagRun Finished" in line or "state=failed" in line)


_PROGRESS = re.compile(r"^  (\S+)\s+([a-z_0-9]+)(?: \[(\d+)\])?\s+(\d+\.\d) s(?:  (.*))?$")


def test_the_terminal_shows_one_line_per_task_the_report_and_the_log_file(demo_run):
    import sqlite3

    home, log = demo_run
    terminal = (home / "demo_terminal.txt").read_text()
    lines = terminal.splitlines()
    assert len(lines) <= 100, terminal
    progress = [m for m in map(_PROGRESS.match, lines) if m]
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        instances = db.execute("select task_id, map_index from task_instance").fetchall()
    assert sorted((m[2], int(m[3] or -1)) for m in progress) == sorted(instances)
    assert all(m[1] == "ok" for m in progress), terminal
    figures = {m[2]: m[5] for m in progress}
    assert re.fullmatch(r"[\d,]+ rows kept, 0 quarantined", figures["validate"])
    assert re.fullmatch(r"[\d,]+ listens, [\d,]+ duplicates dropped", figures["dedup_and_map"])
    assert re.fullmatch(r"train [\d,]+, val [\d,]+, test [\d,]+", figures["split"])
    assert re.fullmatch(r"4 configurations, best .+ val MAP@100 0\.\d{4}", figures["popularity_sweep"])
    assert re.fullmatch(r"spark rank=16 reg=0.1 alpha=\S+ iters=2 log: val MAP@100 0\.\d{4} \(fit \d+ s\)  "
                        r"\(2 done, 0 failed\)",
                        figures["als_sweep"])
    assert figures["halve_1"] == "rung 1: 1 of 2 finished configurations go on to 4 iterations"
    assert re.fullmatch(r"spark rank=16 reg=0.1 alpha=\S+ iters=4 log: val MAP@100 0\.\d{4} \(fit \d+ s\)  "
                        r"\(1 done, 0 failed\)",
                        figures["als_rung_1"])
    assert figures["halve_2"] == "rung 2: 1 of 1 finished configurations go on to 6 iterations"
    assert re.fullmatch(r"spark rank=16 reg=0.1 alpha=\S+ iters=6 log: val MAP@100 0\.\d{4} \(fit \d+ s\)  "
                        r"\(1 done, 0 failed\)",
                        figures["als_rung_2"])
    assert re.fullmatch(r"item_knn similarity=cosine K=2 input=binary: val MAP@100 0\.\d{4} \(fit \d+ s\)  "
                        r"\(1 done, 0 failed\)", figures["engine_sweep"])
    assert re.fullmatch(r"best of 9 \(0 failed\): spark .+ val MAP@100 0\.\d{4}", figures["select_best"])
    assert re.fullmatch(r"\S+ .*: recall@100 [01]\.\d{3}", figures["build_index"])
    assert figures["health"] == "not checked yet: 0 previous night(s), health_min_nights=3"  # the input's first night
    assert figures["promote"] == "music-recs v1 -> @champion"
    report = subprocess.run([str(BIN / "pipeline"), "report"], env={**os.environ}, capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0 and report.stdout.strip() in terminal  # `pipeline report`'s lines, unchanged
    assert lines[-1].startswith("Full log: logs/demo-") and "DagRun Finished" in log and "state=success" in log
    assert len(log.splitlines()) < 3000, "Spark logs at WARN in a demo run"


def test_a_failing_run_shows_the_failing_tasks_last_lines_and_exits_non_zero(tmp_path):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    out = _pipeline_demo(home, _airflow_home(home), home / "data" / "missing")
    assert out.returncode != 0, out.stdout
    lines = out.stdout.splitlines()
    assert len(lines) <= 100 and re.match(r"  FAILED +start ", lines[1]), out.stdout
    shown = lines[lines.index(next(x for x in lines if x.startswith("Task start failed"))) + 1:]
    assert any(x.strip().startswith("FileNotFoundError: input_path") for x in shown), out.stdout
    assert "Full log: logs/demo-" in lines[-1] and _named_log(home, out.stdout).exists()


def test_mlflow_holds_a_parent_run_with_one_child_per_configuration(demo_run):
    from pipeline import tracking

    home, _ = demo_run
    c = tracking.client()
    assert tracking.tracking_uri().startswith(f"sqlite:///{home}")
    exp = c.get_experiment_by_name("music-recs")
    parents = c.search_runs([exp.experiment_id], "tags.`pipeline.role` = 'parent'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["airflow.dag_run_id"] and len(parent.data.tags["pipeline.input_fingerprint"]) == 16
    kids = tracking.children(parent.info.run_id)
    keys = sorted(r.data.tags["pipeline.config_key"] for r in kids)
    # plays_per_listener x 2 betas, listeners, plays; ALS: 2 alphas at 2 iterations, the better at 4 and at 6; item-kNN
    assert len(kids) == 2 + 2 + 2 + 1 + 1 + 1, keys
    halving = sorted(r.data.tags.get("pipeline.halving", "") for r in kids if r.data.params["model"] == "als")
    assert halving == ["", "continued to 4 iterations", "continued to 6 iterations",
                       "stopped at 2 iterations (rung 0)"], halving
    for r in kids:
        assert r.info.status == "FINISHED"
        assert {"val_map_at_100", "val_ndcg_at_100", "val_precision_at_100"} <= set(r.data.metrics)
        assert not [m for m in r.data.metrics if m.startswith("test_") or m.endswith(("_ci_low", "_ci_high"))]
        for m in ("precision", "recall", "map", "ndcg", "hit_rate", "mrr"):  # each with its bootstrap interval, a tag
            low, high = map(float, r.data.tags[f"val_{m}_at_100_ci"].strip("[]").split(", "))
            value = r.data.metrics[f"val_{m}_at_100"]
            assert low <= value <= high and value == round(value, 5), (m, low, value, high)
        assert r.data.params["model"] in {"als", "popularity", "item_knn"}
    winners = [r for r in kids if r.data.tags.get("pipeline.winner") == "true"]
    assert len(winners) == 1
    best = max(kids, key=lambda r: r.data.metrics["val_map_at_100"])
    assert winners[0].info.run_id == best.info.run_id
    served = [r for r in kids if "pipeline.served" in r.data.tags]  # the test window's figure: a tag on one run
    assert len(served) == 1 and served[0].data.tags["pipeline.served"].startswith("test MAP@100 0.")
    assert "test_map_at_100" in parent.data.metrics and "test_ndcg_at_100" in parent.data.metrics
    logged = {a.path for folder in ("validation", "validation/data_docs", "leaderboard", "split", "index")
              for a in c.list_artifacts(parent.info.run_id, folder)}
    assert {"validation/data_docs/validation.html", "leaderboard/leaderboard.md", "leaderboard/map_vs_alpha.png",
            "leaderboard/map_vs_beta.png", "split/stats.md", "index/tradeoffs.png", "index/tuning.json"} <= logged, logged
    assert not any(a.endswith((".ann", ".hnsw")) for a in logged), "tuning indexes are not copied into MLflow"


def test_als_beats_popularity_on_the_planted_structure(demo_run):
    from pipeline import tracking

    c = tracking.client()
    exp = c.get_experiment_by_name("music-recs")
    kids = c.search_runs([exp.experiment_id], "tags.`pipeline.role` = 'child'")
    best = {m: max(r.data.metrics["val_map_at_100"] for r in kids if r.data.params["model"] == m)
            for m in ("als", "popularity")}
    assert best["als"] > 1.5 * best["popularity"], best


def test_champion_is_registered_and_answers_for_users(demo_run):
    import mlflow.pyfunc
    import pandas as pd

    from pipeline import tracking
    from pipeline.serving import MODEL_NAME

    home, log = demo_run
    c = tracking.client()
    champion = c.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.tags["airflow.dag_run_id"]
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    users = pd.read_parquet(next(home.glob("runs/*/bundle/users.parquet")))["user_id"].tolist()
    out = model.predict(pd.DataFrame({"user_id": [users[0], "nobody-at-all"]}), params={"k": 10})
    mine, cold = out[out.user_id == users[0]], out[out.user_id == "nobody-at-all"]
    assert len(mine) == 10 and not mine["fallback"].any() and mine["track"].is_unique
    assert len(cold) == 10 and cold["fallback"].all()
    assert mine["track"].str.match(r"^(mbid|name|src):").all()
    promotion = json.loads(next(home.glob("runs/*/promotion.json")).read_text())
    assert promotion["alias"] == "champion" and promotion["version"] == str(champion.version)


def test_mlflow_models_serve_answers_like_the_in_process_model(demo_run):
    """`mlflow models serve -m models:/music-recs@champion` on 127.0.0.1 gives the pyfunc's answer."""
    import time
    import urllib.request

    import mlflow.pyfunc
    import pandas as pd
    from cluster_fixtures import free_port

    from pipeline import tracking

    home, _ = demo_run
    user = pd.read_parquet(next(home.glob("runs/*/bundle/users.parquet")))["user_id"].tolist()[1]
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.tracking_uri(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", "models:/music-recs@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()[-3000:]
                time.sleep(0.5)
        answers = {}
        tracks = pd.read_parquet(next(home.glob("runs/*/bundle/tracks.parquet")))["track_key"].tolist()[:5]
        requests = {"precomputed": {"user_id": user}, "popularity": {"user_id": "nobody-at-all"},
                    "folded_in": {"user_id": "someone-new", "listens": tracks}}
        for source, record in requests.items():
            body = json.dumps({"dataframe_records": [record], "params": {"k": 10}}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
            answers[source] = json.load(urllib.request.urlopen(req, timeout=60))["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    model = mlflow.pyfunc.load_model("models:/music-recs@champion")
    for source, record in requests.items():
        local = model.predict(pd.DataFrame([record]), params={"k": 10})
        answer = answers[source]
        assert [r["track"] for r in answer] == local["track"].tolist(), source
        assert len(answer) == 10 and {r["source"] for r in answer} == {source}, (source, answer[:2])
        assert all(r["fallback"] == (source == "popularity") for r in answer)


def test_recommend_cli_answers_from_the_champion(demo_run):
    import pandas as pd

    home, _ = demo_run
    user = pd.read_parquet(next(home.glob("runs/*/bundle/users.parquet")))["user_id"].tolist()[2]
    out = subprocess.run([str(BIN / "pipeline"), "recommend", "--user", user, "-k", "5"], capture_output=True, text=True,
                         env={**os.environ}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count(user) == 5


def test_sweep_tasks_have_readable_map_indexes_and_plugin_links_find_their_runs(demo_run):
    import sqlite3

    sys.path.insert(0, str(REPO / "plugins"))
    import mlflow_links

    from pipeline import tracking

    home, _ = demo_run
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        rows = db.execute("select map_index, rendered_map_index, run_id from task_instance "
                          "where task_id = 'als_sweep' order by map_index").fetchall()
    assert [r[1] for r in rows] == ["spark rank=16 reg=0.1 alpha=0.5 iters=2 log",
                                    "spark rank=16 reg=0.1 alpha=2 iters=2 log"]
    c = tracking.client()
    exp = c.get_experiment_by_name("music-recs").experiment_id
    for map_index, _, run_id in rows:
        flt = mlflow_links.search_filter(dag_id="music_recs_nightly", run_id=run_id, task_id="als_sweep",
                                         map_index=map_index)
        found = c.search_runs([exp], flt)
        assert len(found) == 1 and found[0].data.params["model"] == "als"
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:  # a later rung of the halving: its own task
        (map_index, label, run_id), = db.execute("select map_index, rendered_map_index, run_id from task_instance "
                                                 "where task_id = 'als_rung_1'").fetchall()
    found = c.search_runs([exp], mlflow_links.search_filter(dag_id="music_recs_nightly", run_id=run_id,
                                                            task_id="als_rung_1", map_index=map_index))
    assert len(found) == 1 and found[0].data.params["max_iter"] == "4" and label.endswith("iters=4 log")
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        (map_index, label, run_id), = db.execute("select map_index, rendered_map_index, run_id from task_instance "
                                                 "where task_id = 'engine_sweep'").fetchall()
    assert label == "item_knn similarity=cosine K=2 input=binary"
    found = c.search_runs([exp], mlflow_links.search_filter(dag_id="music_recs_nightly", run_id=run_id,
                                                            task_id="engine_sweep", map_index=map_index))
    assert len(found) == 1 and found[0].data.params["model"] == "item_knn"


def test_rerunning_the_same_logical_date_gives_the_same_outputs_and_no_duplicates(demo_run):
    """`airflow dags test` on the same logical date re-runs the same DAG run: same leaderboard, no new
    child runs, no new model version."""
    import sqlite3

    from pipeline import tracking

    home, _ = demo_run
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        run_id, logical_date = db.execute("select run_id, logical_date from dag_run").fetchone()
    run_dir = next(home.glob("runs/*/select"))
    before = json.loads((run_dir / "leaderboard.json").read_text())
    c = tracking.client()
    exp = c.get_experiment_by_name("music-recs").experiment_id
    runs_before = len(c.search_runs([exp], "", max_results=1000))
    versions_before = len(c.search_model_versions("name = 'music-recs'"))
    env = airflow_env(home, migrate_db=False)
    conf = {**CONF, "input_path": str(home / "data" / "demo")}
    out = subprocess.run([str(BIN / "airflow"), "dags", "test", "music_recs_nightly", str(logical_date), "-c",
                          json.dumps(conf)], env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        rows = db.execute("select run_id, logical_date, state from dag_run").fetchall()
    assert len(rows) == 1 and rows[0][1] == logical_date and rows[0][2] == "success"
    parent = c.search_runs([exp], "tags.`pipeline.role` = 'parent'")
    assert len(parent) == 1 and parent[0].data.tags["airflow.dag_run_id"] == rows[0][0]  # re-tagged: links still work
    del run_id
    after = json.loads((run_dir / "leaderboard.json").read_text())
    assert [(r["key"], r["metrics"]) for r in after] == [(r["key"], r["metrics"]) for r in before]
    assert len(c.search_runs([exp], "", max_results=1000)) == runs_before
    assert len(c.search_model_versions("name = 'music-recs'")) == versions_before


def test_the_readmes_airflow_ui_command_starts_the_ui_with_the_plugins_link(demo_run):
    """The README's Airflow UI line, run as written from the checkout's root on the demo's home: the admin
    logs in with the password from the file the README names, and a task's links hold "MLflow run"."""
    import time
    import urllib.error
    import urllib.parse

    from airflow_api import Api
    from cluster_fixtures import free_port

    home, _ = demo_run
    line = next(ln for ln in (REPO / "README.md").read_text().splitlines() if "The Airflow UI on the same run" in ln)
    command = re.search(r"`(scripts/airflow\.sh [^`]+)`", line)[1]
    passwords = home / "airflow" / "simple_auth_manager_passwords.json.generated"
    assert passwords.exists()  # before the first start: `make demo` wrote it
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING_URI"))}
    env.update(PIPELINE_HOME=str(home), AIRFLOW_PORT=str(port))
    server = subprocess.Popen(command.split(), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        for _ in range(120):
            try:
                api = Api(f"http://127.0.0.1:{port}", passwords)
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read()[-3000:]
                time.sleep(0.5)
        else:
            raise AssertionError("the API server did not answer within 60 s")
        run_id = api.get("/api/v2/dags/music_recs_nightly/dagRuns?limit=1")["dag_runs"][0]["dag_run_id"]
        links = api.get(f"/api/v2/dags/music_recs_nightly/dagRuns/{urllib.parse.quote(run_id, safe='')}"
                        "/taskInstances/validate/links")["extra_links"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    assert "/#/experiments/" in links["MLflow run"] and "runs?searchFilter=" in links["MLflow run"], links
