"""Task logs of an `airflow dags test` run land where the Airflow UI reads them (no log server needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.tasklogs import write_task_logs

RECORDED = Path(__file__).parent / "data" / "dags_test_success.log"  # a real run's output, trimmed


def test_each_task_instance_gets_its_own_file_named_as_airflow_reads_it(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", raising=False)
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    output = tmp_path / "demo.log"
    shutil.copy(RECORDED, output)
    written = write_task_logs(output, tmp_path / "airflow")
    starts = [ln for ln in RECORDED.read_text().splitlines() if "[DAG TEST] starting task_id=" in ln]
    assert len(written) == len(starts) > 0
    for path in written:
        rel = path.relative_to(tmp_path / "airflow" / "logs")
        assert rel.parts[0] == "dag_id=music_recs_nightly" and rel.parts[1].startswith("run_id=")
        assert rel.name == "attempt=1.log"
        text = path.read_text()
        task = rel.parts[2].removeprefix("task_id=")
        assert f"starting task_id={task}" in text.splitlines()[0]
        assert f"end task task_id={task}" in text.splitlines()[-1]
    mapped = [p for p in written if any(part.startswith("map_index=") for part in p.parts)]
    assert all("task_id=als_sweep" in str(p) for p in mapped)
