"""ListenBrainz dump readers: the JSON listens dump (``.tar.zst``, streamed and parsed as it is read) against
the Spark dump (``.tar`` of Parquet) holding the same listens, through the validate stage (load, Great
Expectations, quarantine), on Spark local[2], in one run. Also the loader alone: the JSON dump's parse into
staged Parquet, and the Spark dump's members staged out of the tar.

    .venv/bin/python benchmarks/dump_reader.py [--listens 10000000]

Writes ``benchmarks/results/dump-reader.md`` and a ``"bench": "dump_reader"`` line in ``history.jsonl``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, table  # noqa: E402

from pipeline import ingest, synth  # noqa: E402
from pipeline.config import IngestConfig  # noqa: E402
from pipeline.loaders import listenbrainz  # noqa: E402
from pipeline.loaders.release import Release  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
END = dt.datetime(2025, 6, 1, 0, 0, 3, tzinfo=dt.timezone.utc)


def _listens(raw: Path) -> pa.Table:
    inter = pq.read_table(raw / "interactions")
    tracks = pa.Table.from_pandas(pq.read_table(raw / "tracks.parquet").to_pandas().drop_duplicates("recording_msid"),
                                  preserve_index=False)
    joined = inter.join(tracks, "recording_msid", join_type="left outer")
    return joined.sort_by([("timestamp", "ascending")])


def write_json_dump(t: pa.Table, out: Path) -> Path:
    """``t`` as a listens dump: ``listens/<year>/<month>.listens`` JSON lines, tarred and zstd-compressed."""
    import zstandard

    name = f"listenbrainz-listens-dump-9001-{END:%Y%m%d-%H%M%S}-full"
    users = {u: i + 1 for i, u in enumerate(sorted(set(t.column("user_id").to_pylist())))}
    ts = pc.cast(t.column("timestamp"), pa.int64()).to_numpy() // 1_000_000
    cols = [t.column(c).to_pylist() for c in ("user_id", "recording_msid", "artist_name", "track_name", "recording_mbid")]

    def month(i: int) -> tuple[int, int]:
        when = dt.datetime.fromtimestamp(int(ts[i]), dt.timezone.utc)
        return when.year, when.month

    def members():  # the listens are in time order: one month's text at a time
        yield "SCHEMA_SEQUENCE", "1"
        yield "TIMESTAMP", END.isoformat(" ")
        buf, current = io.StringIO(), month(0)
        for i, (user, msid, artist, track, mbid) in enumerate(zip(*cols)):
            if month(i) != current:
                yield f"listens/{current[0]}/{current[1]}.listens", buf.getvalue()
                buf, current = io.StringIO(), month(i)
            info = {"recording_msid": msid, "submission_client": "benchmark", **({"recording_mbid": mbid} if mbid else {})}
            buf.write(json.dumps({"user_id": users[user], "user_name": user, "timestamp": int(ts[i]),
                                  "recording_msid": msid, "track_metadata": {"artist_name": artist, "track_name": track,
                                                                             "release_name": None, "additional_info": info}},
                                 ensure_ascii=False) + "\n")
        yield f"listens/{current[0]}/{current[1]}.listens", buf.getvalue()

    archive = out / f"{name}.tar.zst"
    with open(archive, "wb") as f, zstandard.ZstdCompressor(level=3, threads=2).stream_writer(f) as z, \
            tarfile.open(fileobj=z, mode="w|") as tar:
        for member, text in members():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def write_spark_dump(t: pa.Table, out: Path) -> Path:
    """The same listens as a Spark dump: ``<n>.parquet`` (its schema, zstd) in an uncompressed tar."""
    name = f"listenbrainz-spark-dump-9002-{END:%Y%m%d-%H%M%S}-full"
    d = out / name
    d.mkdir()
    users = {u: i + 1 for i, u in enumerate(sorted(set(t.column("user_id").to_pylist())))}
    table_ = pa.table({
        "listened_at": pc.cast(t.column("timestamp"), pa.timestamp("ms"), safe=False),
        "created": pc.cast(t.column("timestamp"), pa.timestamp("ms"), safe=False),
        "user_id": pa.array([users[u] for u in t.column("user_id").to_pylist()], pa.int64()),
        "recording_msid": t.column("recording_msid"), "artist_name": t.column("artist_name"),
        "artist_credit_id": pa.nulls(len(t), pa.int64()), "release_name": pa.nulls(len(t), pa.string()),
        "release_mbid": pa.nulls(len(t), pa.string()), "recording_name": t.column("track_name"),
        "recording_mbid": t.column("recording_mbid"), "artist_credit_mbids": pa.nulls(len(t), pa.list_(pa.string())),
    })
    step = 4_000_000  # about 128 MB files, as ListenBrainz writes them
    for i, start in enumerate(range(0, len(t), step)):
        pq.write_table(table_.slice(start, step), d / f"{i}.parquet", flavor="spark", compression="zstd")
    (d / "SCHEMA_SEQUENCE").write_text("1")
    (d / "TIMESTAMP").write_text(END.isoformat(" "))
    archive = out / f"{name}.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(d, arcname=name)
    subprocess.run(["rm", "-rf", str(d)], check=True)
    return archive


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listens", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pipeline.spark import get_session

    started = dt.datetime.now()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rows, n = [], a.listens
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        synth.generate(tmp / "raw", n_listens=n, seed=0, shape="seed")
        listens = _listens(tmp / "raw")
        n = len(listens)  # the log's rows, its planted duplicates included
        dumps = {"listenbrainz_dump": write_json_dump(listens, tmp), "listenbrainz_spark": write_spark_dump(listens, tmp)}
        (tmp / "warm").mkdir()
        warm = {"listenbrainz_dump": write_json_dump(listens.slice(0, 20_000), tmp / "warm"),
                "listenbrainz_spark": write_spark_dump(listens.slice(0, 20_000), tmp / "warm")}
        del listens
        print(f"{n:,} listens written as both dumps in {time.perf_counter() - t0:.0f} s "
              f"(JSON .tar.zst {dumps['listenbrainz_dump'].stat().st_size / 2**20:,.0f} MB, "
              f"Spark .tar {dumps['listenbrainz_spark'].stat().st_size / 2**20:,.0f} MB)", flush=True)
        with measure() as m:
            staged = listenbrainz.stage_json_dump(Release(dumps["listenbrainz_dump"]), tmp / "staged-json")
        rows.append({"reader": "JSON dump: stream + parse into Parquet (loader alone)", "seconds": m.seconds,
                     "listens/s": staged["records"] / m.seconds, "peak MB": m.peak_mb})
        with measure() as m:
            staged_tar = Release(dumps["listenbrainz_spark"], tmp / "staged-tar", listenbrainz.FILES["listenbrainz_spark"])
            files = staged_tar.find("*.parquet")
        rows.append({"reader": "Spark dump: Parquet out of the tar (loader alone)", "seconds": m.seconds,
                     "listens/s": n / m.seconds, "peak MB": m.peak_mb, "files": len(files)})
        spark = get_session("dump-reader-benchmark", master="local[2]")
        spark.sparkContext.setLogLevel("ERROR")
        for fmt, path in warm.items():  # the JVM's first jobs are slow: neither side pays for them
            ingest.validate_stage(IngestConfig(input_path=str(path)), tmp / f"warm-{fmt}", spark=spark)
        stages = {}
        for fmt, path in dumps.items():
            with measure() as m:
                v = ingest.validate_stage(IngestConfig(input_path=str(path), input_format="auto"), tmp / f"v-{fmt}",
                                          spark=spark)
            assert v["format"] == fmt and v["rows_in"] == n and v["quarantined"] == 0, v
            stages[fmt] = m.seconds
            rows.append({"reader": f"{fmt}: validate stage (load, GE, quarantine)", "seconds": m.seconds,
                         "listens/s": n / m.seconds, "peak MB": m.peak_mb})
        spark.stop()
    ratio = stages["listenbrainz_dump"] / stages["listenbrainz_spark"]
    head = (f"# ListenBrainz dump readers at {n:,} listens\n\n{started:%Y-%m-%d %H:%M}, commit {commit}, "
            f"{os.cpu_count()} cores, {platform.platform()}; Spark local[2]. The same seed-shaped listens as a JSON "
            "listens dump (.tar.zst) and as a Spark dump (.tar of Parquet), each read by `input_format: auto`. "
            f"JSON / Spark validate-stage time: **{ratio:.2f}x** (target <= 2x). Peak MB covers this process and the JVM.")
    cols = ["reader", "seconds", "listens/s", "peak MB"]
    text = head + "\n\n" + table(rows, cols) + "\n"
    print(text)
    (RESULTS / "dump-reader.md").write_text(text)
    with (RESULTS / "history.jsonl").open("a") as f:
        f.write(json.dumps({"bench": "dump_reader", "n": n, "started": f"{started:%Y-%m-%d %H:%M}", "commit": commit,
                            "host": platform.platform(), "json_over_spark": ratio,
                            "rows": rows}, default=float) + "\n")


if __name__ == "__main__":
    main()
