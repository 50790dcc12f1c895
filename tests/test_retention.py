"""Retention: after many nights only the newest runs, the aliased bundles and live spill remain."""

from __future__ import annotations

import json
import os
import time

import pytest

from pipeline.retention import SPILL_AGE_HOURS, prune


def _run_folder(root, name, *, age_s, key=None):
    folder = root / name
    (folder / "bundle").mkdir(parents=True)
    (folder / "bundle" / "index.bin").write_bytes(b"x" * 1000)
    (folder / "sweep").mkdir()
    (folder / "sweep" / "model.npy").write_bytes(b"y" * 5000)
    (folder / "context.json").write_text(json.dumps({"run_key": key or name}))
    stamp = time.time() - age_s
    os.utime(folder / "context.json", (stamp, stamp))
    return folder


def test_the_newest_runs_stay_the_current_always_and_old_spill_goes(tmp_path):
    runs = tmp_path / "runs"
    folders = [_run_folder(runs, f"night-{i:02d}", age_s=(10 - i) * 86400) for i in range(1, 11)]
    spill = tmp_path / "spill"
    (spill / "blockmgr-dead").mkdir(parents=True)
    (spill / "blockmgr-dead" / "shuffle_0.data").write_bytes(b"z" * 2000)
    old = time.time() - (SPILL_AGE_HOURS + 1) * 3600
    for p in (spill / "blockmgr-dead" / "shuffle_0.data", spill / "blockmgr-dead"):
        os.utime(p, (old, old))
    (spill / "spark-live").mkdir()  # written just now: an application that is running
    current = folders[3]  # a re-run of an older date is the current run: kept whatever its age
    freed = prune(runs_root=runs, keep=3, current=current, spill_dir=spill, registry=False)
    assert sorted(p.name for p in runs.iterdir()) == ["night-04", "night-09", "night-10"]
    assert sorted(freed.run_folders) == [f"night-{i:02d}" for i in (1, 2, 3, 5, 6, 7, 8)]
    assert freed.spill == ["blockmgr-dead"] and (spill / "spark-live").exists()
    assert freed.bytes == 7 * 6000 + 7 * len(json.dumps({"run_key": "night-01"})) + 2000
    assert "7 run folder(s)" in freed.summary() and "1 Spark spill folder(s)" in freed.summary()
    with pytest.raises(ValueError, match="keep_runs=0 must be >= 1"):
        prune(runs_root=runs, keep=0, current=current, spill_dir=None, registry=False)


@pytest.mark.spark
def test_ten_nights_keep_three_runs_the_aliased_bundles_and_a_removed_date_comes_back_the_same(spark, tmp_path):
    from pipeline import tracking
    from pipeline.serving import MODEL_NAME
    from pipeline_runs import isolated_home, run_pipeline

    params = {"engine": "implicit", "ranks": [8], "reg_params": [0.1], "alphas": [1.0], "max_iters": [4],
              "betas": [100], "index_kinds": [], "keep_runs": 3}
    with isolated_home(tmp_path / "home", n_listens=6_000, seed=5) as home:
        nights = {}
        for i in range(1, 11):
            out = run_pipeline(f"night-{i:02d}", params)
            nights[i] = out
        runs = home / "runs"
        full = sorted(p.name for p in runs.iterdir() if (p / "split").exists())
        assert full == ["night-08", "night-09", "night-10"], full
        c = tracking.client()
        versions = {str(v.version): v for v in c.search_model_versions(f"name = '{MODEL_NAME}'")}
        aliases = c.get_registered_model(MODEL_NAME).aliases
        aliased = {str(v): versions[str(v)].tags["pipeline.run_key"] for v in aliases.values()}
        # the first night's model stays champion (the same model again is not better beyond noise)
        assert aliases == {"champion": 1, "challenger": 10} and aliased["1"] == "night-01", aliases
        champion = "1"
        # what is left of a removed run is an aliased version's bundle and its records, nothing else
        remnants = {p.name: sorted(x.name for x in p.iterdir()) for p in runs.iterdir() if p.name not in full}
        assert set(remnants) == {aliased[champion]}, remnants
        assert remnants[aliased[champion]] == ["bundle", "context.json", "promotion.json"]
        # registered versions: the aliased ones and the newest 3 without an alias; the champion still loads
        unaliased = sorted(int(v) for v in versions if v not in aliased)
        assert unaliased == [7, 8, 9] and len(versions) == 5, sorted(versions)
        import mlflow.pyfunc

        assert mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion") is not None
        removed_run = nights[2]["record"]["parent_run_id"]
        assert "removed by retention" in c.get_run(removed_run).data.tags["pipeline.retention"]
        # a removed date re-runs from its input: the same split, the same metrics
        again = run_pipeline("night-02", params)
        first, second = (n["indexed"]["tested"]["metrics"] for n in (nights[2], again))
        assert first == second
        assert (runs / "night-02" / "split").exists()


def test_a_night_whose_start_failed_prunes_nothing(tmp_path, monkeypatch):
    from pipeline import stages

    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    old = _run_folder(tmp_path / "runs", "night-01", age_s=30 * 86400)
    ref = stages.RunRef(dag_id="music_recs_nightly", dag_run_id="night-02", run_key="night-02")
    assert stages.retain(ref) == {} and old.exists()
