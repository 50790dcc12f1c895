"""benchmarks/run.py keeps every finished run's headline figures and shows the runs at a scale side by side."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def run():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(n: int, started: str, dag_s: float, test_map: float) -> dict:
    """The parts of a stored ``listens-<n>.json`` that the summary and the section header read."""
    split = {"users": 2, "tracks": 3, "interactions": 4}
    return {
        "n": n, "started": started, "run": f"`benchmarks/run.py --listens {n}` on {started} UTC. Machine: ...",
        "synth_s": 1.0, "synth_peak_mb": 10.0, "dag_s": dag_s, "dag_peak_mb": 3000.0, "dag_spill_mb": 250.0,
        "tasks": [{"stage": "als_sweep [rank=25]", "seconds": 40.0, "peak MB": 3000.0, "spill MB": 250.0}],
        "split": {"train": split, "val": split, "test": split},
        "ingest": {"rows_in": n, "rows_out": n, "duplicates": 0, "quarantined": 0, "n_users_mapped": 2,
                   "n_tracks_mapped": 3},
        "test": {"best": "als", "metrics": {"test_map_at_100": test_map},
                 "baseline_metrics": {"test_map_at_100": 0.05}},
        "facts": {"users": 2, "tracks": 3, "pairs": 4},
        "components": [
            {"what": "Spark ALS fit, local[2], rank 25", "seconds": 18.0, "s/iteration": 1.8},
            {"what": "implicit ALS fit (reference), rank 25", "seconds": 2.0, "s/iteration": 0.2},
            {"what": "exact top-100, all 2 users x 3 tracks", "seconds": 0.5, "G scores/s": 0.52},
            {"what": "Spark recommendForUserSubset (reference), 500 users", "seconds": 6.0, "G scores/s": 0.011},
        ],
    }


def test_summary_takes_the_headline_figures_of_a_result(run):
    s = run.summary(result(1_000_000, "2026-12-02 06:53", 189.0, 0.1373), commit="abc1234", host="hostA")
    assert s == {
        "n": 1_000_000, "started": "2026-12-02 06:53", "commit": "abc1234", "host": "hostA",
        "dag_min": pytest.approx(3.15), "dag_peak_mb": 3000.0, "dag_spill_mb": 250.0,
        "spark_s_per_iter": 1.8, "implicit_s_per_iter": 0.2, "exact_gscores": 0.52, "subset_gscores": 0.011,
        "test_map": 0.1373, "popularity_map": 0.05,
    }


def test_a_result_without_a_started_field_takes_it_from_its_run_line(run):
    r = result(1_000_000, "2026-11-23 15:31", 189.0, 0.1)
    del r["started"]
    assert run.summary(r, commit=None, host=None)["started"] == "2026-11-23 15:31"


def test_history_appends_and_each_scale_lists_only_its_own_runs(run, tmp_path):
    path = tmp_path / "history.jsonl"
    assert run.read_history(path) == []
    first = result(1_000_000, "2026-12-02 06:53", 189.0, 0.1373)
    second = result(1_000_000, "2026-12-02 23:03", 246.0, 0.1373)
    other = result(10_000_000, "2026-12-02 07:10", 931.0, 0.1532)
    for r, commit in ((second, "bbbbbbb"), (other, None), (first, "aaaaaaa")):  # appended out of time order
        run.append_history(run.summary(r, commit=commit, host="hostA"), path)
    history = run.read_history(path)
    assert [e["started"] for e in history] == ["2026-12-02 23:03", "2026-12-02 07:10", "2026-12-02 06:53"]

    text = run.render([second, other], history)
    one_m, ten_m = text.split("## 10,000,000 synthetic listens")
    runs_1m = [line for line in one_m.splitlines() if line.startswith("| 2026-")]
    assert len(runs_1m) == 2
    assert runs_1m[0].startswith("| 2026-12-02 06:53 | aaaaaaa | hostA | 3.1 |")  # oldest first
    assert runs_1m[1].startswith("| 2026-12-02 23:03 | bbbbbbb | hostA | 4.1 |")
    assert "0.1373 (0.0500)" in runs_1m[0]
    runs_10m = [line for line in ten_m.splitlines() if line.startswith("| 2026-")]
    assert runs_10m == [line for line in ten_m.splitlines() if "| not recorded |" in line]
    assert len(runs_10m) == 1 and "| 15.5 |" in runs_10m[0]


def test_without_history_a_section_has_no_runs_table(run):
    assert "Every recorded run" not in run.render([result(1_000_000, "2026-12-02 06:53", 189.0, 0.1)], [])


def test_every_index_kind_of_a_sampled_tuning_gets_a_row_that_says_where_it_was_measured(run, tmp_path):
    """BENCHMARKS.md reads build_index's own table: sample rows (no precision) and every kind included."""
    import numpy as np

    from pipeline import ann

    rng = np.random.default_rng(0)
    items = (rng.standard_normal((20_000, 8)) * rng.lognormal(0, 1, (20_000, 1))).astype(np.float32)
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    choice = ann.tune(items, queries, k=10, recall_target=0.9, out_dir=tmp_path, sample=5_000,
                      kinds=("hnsw_ip", "hnsw_aug", "ivf_sq8_rerank", "norm_ranges"), hnsw_M=(8,), hnsw_ef=(50,),
                      ivf_nprobe=(16,))
    rows = run.index_rows(choice.table)
    assert len(rows) == len(choice.table)
    sampled = [r["what"] for r in rows if "[sample of 5,000 tracks]" in r["what"]]
    assert any(w.startswith("IVF SQ8 + exact re-rank") for w in sampled)
    assert any(w.startswith("norm ranges (exact)") for w in sampled)
    assert any(r["what"].startswith("exact single-user scoring") and "sample" not in r["what"] for r in rows)


def test_a_calibrated_or_halving_run_gets_its_own_section_and_history(run, tmp_path):
    path = tmp_path / "history.jsonl"
    standard = result(10_000_000, "2026-12-04 05:59", 348.0, 0.1532)
    calibrated = {**result(10_000_000, "2026-12-04 18:00", 300.0, 0.3001), "variant": "calibrated"}
    halving = {**result(10_000_000, "2026-12-04 18:30", 1900.0, 0.1601), "variant": "halving-3"}
    for r in (standard, calibrated, halving):
        run.append_history(run.summary(r, commit="c", host="h"), path)
    assert [e.get("variant") for e in run.read_history(path)] == [None, "calibrated", "halving-3"]
    text = run.render([halving, standard, calibrated], run.read_history(path))
    sections = text.split("## 10,000,000 synthetic listens")[1:]
    assert [s.splitlines()[0] for s in sections] == [
        " (seed shape)", " (calibrated shape)", " (seed shape, successive halving η=3)"]
    for s, map_ in zip(sections, ("0.1532", "0.3001", "0.1601")):  # each lists only its own runs
        assert [line.split(" | ")[-1] for line in s.splitlines() if line.startswith("| 2026-")] == [
            f"{map_} (0.0500) |"]


def test_a_halving_section_shows_its_comparison_with_the_full_grid_when_one_is_stored(run, tmp_path, monkeypatch):
    halving = {**result(10_000_000, "2026-12-04 20:34", 2016.0, 0.2161), "variant": "halving-3"}
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(run, "ROOT", tmp_path.parent)
    assert "Against the full grid" not in run.render([halving])
    (tmp_path / "full-grid-listens-10000000-halving-3.md").write_text("| dataset | sweep |\n- seed-10m: verdict\n")
    text = run.render([halving, result(10_000_000, "2026-12-04 05:59", 348.0, 0.1532)])
    halving_section = text.split("successive halving η=3)")[1]
    assert f"### Against the full grid (`{tmp_path.name}/full-grid-listens-10000000-halving-3.md`)" in halving_section
    assert "- seed-10m: verdict" in halving_section and text.count("Against the full grid") == 1


def test_a_run_on_the_implicit_engine_keeps_results_of_its_own_and_says_so(run, tmp_path):
    import argparse

    args = argparse.Namespace(shape="seed", halving_rate=1, engine="implicit")
    assert run._variant(args) == "implicit" and run._key(10_000_000, "implicit") == "listens-10000000-implicit"
    assert run._describe("implicit") == "seed shape, ALS engine implicit"
    assert run._describe("calibrated-halving-3-implicit") == \
        "calibrated shape, successive halving η=3, ALS engine implicit"
    assert run._describe("") == "seed shape" and run._variant(argparse.Namespace(
        shape="seed", halving_rate=1, engine="spark")) == ""  # the standard run keeps its old names
    path = tmp_path / "history.jsonl"
    dag_only = {**result(10_000_000, "2026-12-05 11:00", 300.0, 0.15), "variant": "implicit", "components": []}
    run.append_history(run.summary(dag_only, commit="c", host="h"), path)
    text = run.render([dag_only], run.read_history(path))
    assert "## 10,000,000 synthetic listens (seed shape, ALS engine implicit)" in text
    row = next(line for line in text.splitlines() if line.startswith("| 2026-12-05 11:00"))
    assert "| () |" not in row and row.endswith("| 0.1500 (0.0500) |")  # nothing measured: an empty cell


def test_the_sampler_says_which_processes_held_the_memory_at_a_stage_peak(run):
    import subprocess
    import time

    # a child that holds ~300 MB for a second: it is neither a JVM nor a Spark Python worker
    code = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    with run.TreeSampler(proc.pid, slow_every=2) as sampler:
        proc.wait()
    jvm, workers, rest = sampler.peak_parts().split(" (")[0].split(" / ")
    assert (jvm, workers) == ("0", "0")
    assert 300 <= float(rest.replace(",", "")) <= sampler.peak_mb() + 1
    assert sampler.peak_parts(time.time() + 60) == ""  # no sample in the window: nothing to say
    # its pages are its own: counted once, the proportional set size holds them too
    assert 300 <= sampler.peak_pss_mb() <= sampler.peak_mb() + 1


def test_a_run_whose_best_model_is_popularity_still_gets_its_section(run, tmp_path):
    # build_index tunes no index for a model without vectors: the run's figures are kept all the same
    assert run._tuning(tmp_path) == []
    won = {**result(179_000_000, "2026-12-05 14:03", 3300.0, 0.31), "variant": "implicit", "components": []}
    won["test"]["best"] = "pop-listeners"
    text = run.render([won], [])
    assert "The best model, pop-listeners, has no vectors to index" in text
    assert "Engines and scorers" not in text and "**55.0 min**" in text
