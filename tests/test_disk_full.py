"""A full disk fails a stage with one line that names the disk and the fix, and leaves no partial output.

The real thing where the machine allows it (a 64 KiB tmpfs; root only), else skipped with the reason;
the under-the-scheduler drill is tests/test_faults.py."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from pipeline.paths import DiskFull, atomic_dir, atomic_write_text, disk_full, naming_a_full_disk


@pytest.fixture()
def small_disk(tmp_path) -> Path:
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip() or 'not root'})")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_write_to_a_full_disk_names_the_disk_and_leaves_nothing(small_disk):
    with pytest.raises(DiskFull) as err, naming_a_full_disk("task split", small_disk / "run"):
        atomic_write_text(small_disk / "run" / "summary.json", "x" * 200_000)
    message = str(err.value)
    assert err.value.errno == errno.ENOSPC and "\n" not in message
    assert "task split ran out of disk space writing " in message and str(small_disk / "run") in message, message
    assert "MiB free of 0.1 MiB" in message and "point PIPELINE_HOME at a larger disk" in message, message
    assert sorted(p.name for p in small_disk.rglob("*")) == ["run"]  # no .tmp-* file, no summary.json

    with pytest.raises(DiskFull), naming_a_full_disk("task dedup_and_map", small_disk):
        with atomic_dir(small_disk / "ids") as tmp:
            tmp.mkdir()
            (tmp / "part-0").write_bytes(b"\0" * 200_000)
    assert sorted(p.name for p in small_disk.rglob("*")) == ["run"]


def test_a_copy_names_its_destination_not_its_source(small_disk, tmp_path):
    import shutil

    source = tmp_path / "bootstrap.min.css"
    source.write_bytes(b"x" * 200_000)
    with pytest.raises(DiskFull) as err, naming_a_full_disk("task validate", small_disk):
        shutil.copy(source, small_disk / "bootstrap.min.css")
    assert f"writing {small_disk / 'bootstrap.min.css'} (its disk has" in str(err.value), str(err.value)
    assert str(source) not in str(err.value)


def test_the_jvms_words_count_and_other_errors_pass_through(tmp_path):
    java = RuntimeError("An error occurred while calling o77.parquet.\n: org.apache.spark.SparkException: "
                        "Job aborted.\nCaused by: java.io.IOException: No space left on device")
    assert disk_full(java) is java
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise ValueError("writing the split failed") from inner
    except ValueError as outer:
        assert disk_full(outer) is not None
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None
    with pytest.raises(DiskFull, match="task validate ran out of disk space"), naming_a_full_disk("task validate",
                                                                                                  tmp_path / "r"):
        raise java
    with pytest.raises(PermissionError), naming_a_full_disk("task validate", tmp_path):
        raise PermissionError(errno.EACCES, "Permission denied")
