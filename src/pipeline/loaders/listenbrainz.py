"""ListenBrainz as published: the JSON listens dump, the Spark (Parquet) dump, and the seed's folder layout.

* ``listenbrainz_dump``: ``listenbrainz-listens-dump-<id>-<YYYYMMDD>-<HHMMSS>-{full,incremental}.tar.zst``
  (``.tar.xz`` before 2025-03), or the folder it extracts to: ``COPYING``, ``SCHEMA_SEQUENCE``,
  ``TIMESTAMP`` (incrementals: ``START_TIMESTAMP``/``END_TIMESTAMP``) and ``listens/<year>/<month>.listens``,
  JSON lines written by ``Listen.to_json`` (listenbrainz-server, ``listenbrainz/listen.py``). The archive
  is streamed (zstd, then tar) and parsed as it is read; no JSON reaches the disk. What is staged is
  Parquet of the fields the pipeline reads, about a tenth of the JSON.
* ``listenbrainz_spark``: ``listenbrainz-spark-dump-<id>-<date>-<time>-{full,incremental}.tar``: Parquet files
  (``listened_at`` timestamp, ``user_id``, ``recording_msid``, names, ``recording_mbid``) and the same metadata.
* ``listenbrainz``: the seed's ``interactions/`` + ``tracks.parquet`` (what ``pipeline synth`` writes).
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, IO, Any

from pipeline.loaders._spark import POSITION, Loaded, finish, numbered, parse_timestamp, positioned, read_parquet, require

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from pipeline.loaders.release import Release

DUMP_NAME = re.compile(r"listenbrainz-(?P<kind>listens|spark)-dump-(?P<id>\d+)-(?P<date>\d{8})-(?P<time>\d{6})"
                       r"-(?P<type>full|incremental)")
METADATA = ("COPYING", "SCHEMA_SEQUENCE", "TIMESTAMP", "START_TIMESTAMP", "END_TIMESTAMP")
FILES = {
    "listenbrainz_dump": ("*.listens", *METADATA),
    "listenbrainz_spark": ("*.parquet", *METADATA),
}
_CHUNK = 64 << 20  # bytes of JSON parsed at a time


def release_info(rel: "Release", metadata: dict[str, str]) -> dict[str, Any]:
    """What the dump says of itself: id, date and type from its name, times from its metadata files."""
    m = DUMP_NAME.search(rel.path.name) or next(
        (DUMP_NAME.search(n) for n in metadata.get("_members", []) if DUMP_NAME.search(n)), None)
    info: dict[str, Any] = {"release": rel.name}
    if m:
        info.update(dump_id=int(m["id"]), dump_type=m["type"],
                    dump_date=f"{m['date'][:4]}-{m['date'][4:6]}-{m['date'][6:]}T{m['time'][:2]}:{m['time'][2:4]}:"
                              f"{m['time'][4:]}Z")
    for k in METADATA[1:]:
        if k in metadata:
            info[k.lower()] = metadata[k].strip()
    return info


# ---------------------------------------------------------------- the JSON listens dump

def _schema() -> "pa.Schema":
    import pyarrow as pa

    s = pa.string()
    info = pa.struct([("recording_mbid", s), ("recording_msid", s)])
    meta = pa.struct([("artist_name", s), ("track_name", s), ("additional_info", info),
                      ("mbid_mapping", pa.struct([("recording_mbid", s)]))])
    return pa.schema([("user_id", pa.int64()), ("user_name", s), ("timestamp", pa.float64()),
                      ("listened_at", pa.float64()), ("recording_msid", s), ("track_metadata", meta)])


STAGED = ("source_row", "user_id", "track_mbid", "artist_name", "track_name", "source_track_id", "seconds",
          "time_text", "parse_error")


def _columns(table: "pa.Table", first_row: int) -> "pa.Table":
    """A parsed block in the staged schema: one row per listen, numbered from ``first_row``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    meta = table.column("track_metadata")
    info = pc.struct_field(meta, "additional_info")
    mbid = pc.coalesce(pc.struct_field(pc.struct_field(meta, "mbid_mapping"), "recording_mbid"),
                       pc.struct_field(info, "recording_mbid"))
    user = pc.coalesce(pc.cast(table.column("user_id"), pa.string()), table.column("user_name"))
    n = table.num_rows
    null = pa.nulls(n, pa.string())
    return pa.table({
        "source_row": pa.array(np.arange(first_row, first_row + n, dtype=np.int64)), "user_id": user, "track_mbid": mbid,
        "artist_name": pc.struct_field(meta, "artist_name"), "track_name": pc.struct_field(meta, "track_name"),
        "source_track_id": pc.coalesce(table.column("recording_msid"), pc.struct_field(info, "recording_msid")),
        "seconds": pc.coalesce(table.column("timestamp"), table.column("listened_at")), "time_text": null,
        "parse_error": null,
    })


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None if v is None or isinstance(v, (dict, list)) else str(v)


def _one_line(line: bytes, where: str) -> dict[str, Any]:
    """One listen parsed on its own (a block the fast reader refused): odd types become nulls or a parse_error."""
    try:
        d = json.loads(line)
    except ValueError:
        return {"parse_error": f"json: not a JSON object ({where}): '{line[:80].decode('utf-8', 'replace')}'"}
    if not isinstance(d, dict):
        return {"parse_error": f"json: not a JSON object ({where})"}
    meta = d.get("track_metadata") if isinstance(d.get("track_metadata"), dict) else {}
    info = meta.get("additional_info") if isinstance(meta.get("additional_info"), dict) else {}
    mapping = meta.get("mbid_mapping") if isinstance(meta.get("mbid_mapping"), dict) else {}
    when = d.get("timestamp", d.get("listened_at"))
    seconds = float(when) if isinstance(when, (int, float)) and not isinstance(when, bool) else None
    return {"user_id": _text(d.get("user_id")) or _text(d.get("user_name")),
            "track_mbid": _text(mapping.get("recording_mbid")) or _text(info.get("recording_mbid")),
            "artist_name": _text(meta.get("artist_name")), "track_name": _text(meta.get("track_name")),
            "source_track_id": _text(d.get("recording_msid")) or _text(info.get("recording_msid")),
            "seconds": seconds, "time_text": None if seconds is not None or when is None else _text(when)}


def _parse(block: bytes, first_row: int, where: str) -> "pa.Table":
    import pyarrow as pa
    import pyarrow.json as pj

    opts = pj.ParseOptions(explicit_schema=_schema(), unexpected_field_behavior="ignore", newlines_in_values=False)
    try:
        return _columns(pj.read_json(pa.py_buffer(block), read_options=pj.ReadOptions(block_size=8 << 20),
                                     parse_options=opts), first_row)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        lines = [ln for ln in block.split(b"\n") if ln.strip()]
        rows = [_one_line(ln, f"{where}, listen {first_row + i}") for i, ln in enumerate(lines)]
        cols = {c: [r.get(c) for r in rows] for c in STAGED if c != "source_row"}
        return pa.table({"source_row": pa.array(range(first_row, first_row + len(rows)), pa.int64()),
                         **{c: pa.array(v, pa.float64() if c == "seconds" else pa.string()) for c, v in cols.items()}})


def _blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """``stream`` in chunks of whole lines (blank lines are not listens: dropped)."""
    rest = b""
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        chunk = rest + chunk if rest else chunk
        cut = chunk.rfind(b"\n") + 1
        rest, chunk = chunk[cut:], chunk[:cut]
        if chunk and not chunk.isspace():
            yield chunk
    if rest and not rest.isspace():
        yield rest + b"\n"


def _pieces(rel: "Release") -> Iterator[tuple[str, bytes | None, str | None]]:
    """(member, a block of listens, None) or (member, None, a metadata file's text), in archive order."""
    for name, stream in rel.streams(*FILES["listenbrainz_dump"]):
        base = name.rsplit("/", 1)[-1]
        if base in METADATA:
            yield name, None, "" if base == "COPYING" else stream.read(4096).decode("utf-8", "replace")
        else:
            yield from ((name, block, None) for block in _blocks(stream))


def _ahead(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``items`` produced by a thread of its own, ``depth`` ahead: decompressing the next block while this one
    is parsed (zstd, gzip and pyarrow release the GIL)."""
    done = object()
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for item in items:
                q.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            q.put(exc)
        q.put(done)

    threading.Thread(target=produce, daemon=True, name="json-dump-reader").start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def stage_json_dump(rel: "Release", out: Path) -> dict[str, Any]:
    """Parse every ``*.listens`` member of the dump into Parquet files under ``out``; returns what it read.

    Three steps overlap: a thread decompresses and cuts blocks, this one parses them (pyarrow's own threads),
    another writes the Parquet of the block before.
    """
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, str] = {}
    members, rows, part = [], 0, 0
    with ThreadPoolExecutor(1, thread_name_prefix="json-dump-writer") as writer:
        written = None
        for name, block, text in _ahead(_pieces(rel)):
            if not members or members[-1] != name:
                members.append(name)
            if block is None:
                metadata[name.rsplit("/", 1)[-1]] = text
                continue
            table = _parse(block, rows, name)
            if written is not None:
                written.result()
            written = writer.submit(pq.write_table, table, out / f"part-{part:06d}.parquet", compression="lz4",
                                    use_dictionary=False)  # a third faster to write; read once, then deleted
            rows, part = rows + table.num_rows, part + 1
        if written is not None:
            written.result()
    if not any(m.endswith(".listens") for m in members):
        raise FileNotFoundError(f"{rel.path} holds no listens/<year>/<month>.listens files; expected a ListenBrainz "
                                "listens dump (listenbrainz-listens-dump-<id>-<date>-<time>-full.tar.zst or its folder)")
    return {**release_info(rel, {**metadata, "_members": members[:3]}),
            "listens_files": sum(m.endswith(".listens") for m in members), "records": rows}


def json_dump(spark: "SparkSession", rel: "Release") -> Loaded:
    from pyspark.sql import functions as F

    if rel.scratch is None:
        raise ValueError(f"{rel.path}: the JSON dump is read into Parquet first, and the loader was given no scratch folder")
    staged = rel.scratch / "listens-dump"
    stats = stage_json_dump(rel, staged)
    if not stats["records"]:
        raise ValueError(f"{rel.path} holds no listens: its .listens files are empty")
    df = spark.read.parquet(str(staged))
    ts = F.coalesce(F.timestamp_seconds(F.col("seconds").cast("long")), parse_timestamp(F.col("time_text")))
    errors = [F.col("parse_error"),
              F.when(F.col("time_text").isNotNull() & ts.isNull(),
                     F.concat(F.lit("timestamp: unparseable '"), F.col("time_text"), F.lit("'")))]
    return Loaded(finish(df, timestamp=ts, play_count=None, errors=errors), True, "listenbrainz_dump", str(rel.path), stats)


# ---------------------------------------------------------------- the Spark (Parquet) dump

SPARK_COLUMNS = ("listened_at", "user_id", "recording_msid", "artist_name", "recording_name", "recording_mbid")


def spark_dump(spark: "SparkSession", rel: "Release") -> Loaded:
    from pyspark.sql import functions as F

    files = rel.find("*.parquet")
    if not files:
        raise FileNotFoundError(f"{rel.path} holds no .parquet files; expected a ListenBrainz Spark dump "
                                "(listenbrainz-spark-dump-<id>-<date>-<time>-full.tar or its folder)")
    metadata = {}
    for name in METADATA[1:]:
        f = next(iter(rel.find(name)), None)
        if f is not None and f.suffix != ".parquet":
            metadata[name] = f.read_text(errors="replace")[:4096]
    df = read_parquet(spark, files if len(files) > 1 else files[0], SPARK_COLUMNS)
    df = numbered(positioned(df).select(*SPARK_COLUMNS, *POSITION))
    df = (df.withColumn("user_id", F.col("user_id").cast("string")).withColumnRenamed("recording_mbid", "track_mbid")
          .withColumnRenamed("recording_name", "track_name").withColumnRenamed("recording_msid", "source_track_id"))
    kind = dict(df.dtypes)["listened_at"]
    ts = F.col("listened_at") if kind.startswith("timestamp") else parse_timestamp(F.col("listened_at"))
    errors = [F.when(F.col("listened_at").isNotNull() & ts.isNull(),
                     F.concat(F.lit("listened_at: unparseable '"), F.col("listened_at").cast("string"), F.lit("'")))]
    stats = {**release_info(rel, {**metadata, "_members": [str(files[0])]}), "parquet_files": len(files)}
    return Loaded(finish(df, timestamp=ts, play_count=None, errors=errors), True, "listenbrainz_spark", str(rel.path), stats)


# ---------------------------------------------------------------- the seed's layout

def seed_layout(spark: "SparkSession", rel: "Release", tracks: str | None = None) -> Loaded:
    from pyspark.sql import functions as F

    path = rel.path
    inter = path / "interactions" if (path / "interactions").exists() else path / "interactions.parquet"
    require(inter, "a ListenBrainz folder with interactions/ (user_id, recording_msid, timestamp)")
    tracks_path = Path(tracks) if tracks else path / "tracks.parquet"
    require(tracks_path, "tracks.parquet (recording_msid, artist_name, track_name, recording_mbid)")
    listens = read_parquet(spark, inter, ("user_id", "recording_msid", "timestamp"))
    meta = read_parquet(spark, tracks_path, ("recording_msid", "artist_name", "track_name", "recording_mbid"))
    meta = meta.dropDuplicates(["recording_msid"])
    listens = numbered(positioned(listens).select("user_id", "recording_msid", "timestamp", *POSITION))
    joined = listens.join(meta.select("recording_msid", "artist_name", "track_name", "recording_mbid"),
                          "recording_msid", "left")
    df = joined.withColumnRenamed("recording_mbid", "track_mbid").withColumn("source_track_id", F.col("recording_msid"))
    ts = F.col("timestamp")
    if dict(listens.dtypes)["timestamp"] not in ("timestamp", "timestamp_ntz"):
        ts = parse_timestamp(F.col("timestamp"))
    errors = [F.when(F.col("timestamp").isNotNull() & ts.isNull(),
                     F.concat(F.lit("timestamp: unparseable '"), F.col("timestamp").cast("string"), F.lit("'")))]
    return Loaded(finish(df, timestamp=ts, play_count=None, errors=errors), True, "listenbrainz", str(path))
