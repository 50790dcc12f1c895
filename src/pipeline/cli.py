"""``pipeline``: every stage from the command line, as it runs in the DAG.

    pipeline synth --out var/data/demo --listens 200000 --seed 0
    pipeline ingest --format listenbrainz --input var/data/demo --out var/work/ingest
    pipeline partition --format listenbrainz --input var/data/demo --out var/data/nightly --until 2023-01-31
    pipeline ingest --format listenbrainz --input var/data/nightly --as-of 2023-01-31 --out var/work/ingest
    pipeline split --input var/work/ingest --strategy temporal_user --out var/work/split
    pipeline evaluate --recs recs.parquet --truth truth.parquet -k 100
    pipeline recommend --user u000042 -k 10
    pipeline report --run-dir var/runs/<run>
    pipeline demo --input var/data/demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.paths import IngestLayout

__all__ = ["main"]


def _ingest(args: argparse.Namespace) -> int:
    from pipeline import increments
    from pipeline.config import IngestConfig
    from pipeline.ingest import ingest
    from pipeline.paths import pipeline_home
    from pipeline.spark import get_session

    limits = {name: getattr(args, name) for name in ("max_quarantine_share", "min_timestamp", "max_timestamp",
                                                      "future_tolerance_hours", "min_play_count", "max_play_count",
                                                      "rating_mapping", "rating_threshold")}
    cfg = IngestConfig(
        input_path=args.input, input_format=args.input_format, tracks_path=args.tracks, aliases_path=args.aliases,
        columns=json.loads(args.columns) if args.columns else None, **limits,
    )
    idmap_root = Path(args.idmap) if args.idmap else pipeline_home() / "state" / "idmap"
    if increments.is_partitioned(args.input):
        import datetime as dt

        from pipeline.paths import atomic_write_text

        up_to = dt.date.fromisoformat(args.as_of) if args.as_of else dt.datetime.now(dt.timezone.utc).date()
        curated = Path(args.curated) if args.curated else increments.default_curated_dir(args.input)
        print(f"{args.input} is partitioned (date= folders or ListenBrainz dumps): ingesting the partitions up to "
              f"{up_to} not yet in {curated}", file=sys.stderr)
        summary = increments.ingest_pending(cfg, curated, Path(args.out) / "partitions", up_to=up_to,
                                            idmap_root=idmap_root, spark=get_session("pipeline ingest"))
        atomic_write_text(IngestLayout(Path(args.out)).summary, json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
        return 0
    if args.as_of or args.curated:
        raise ValueError(f"--as-of and --curated apply to a date-partitioned input (date=YYYY-MM-DD folders); "
                         f"{args.input} is a snapshot")
    summary = ingest(cfg, Path(args.out), idmap_root=idmap_root, spark=get_session("pipeline ingest"))
    print(json.dumps(summary, indent=1))
    return 0


def _split(args: argparse.Namespace) -> int:
    from pipeline import split
    from pipeline.config import SplitConfig
    from pipeline.spark import get_session

    summary = _ingest_summary(Path(args.input))
    cfg = SplitConfig(strategy=args.split_strategy, fraction=args.split_fraction, k=args.leave_out, seed=args.seed,
                      cutoff=args.cutoff, test_quantile=None if args.no_test else args.test_quantile,
                      test_start=args.test_start)
    spark = get_session("pipeline split")
    listens: object = IngestLayout(Path(args.input)).listens
    if summary.get("increments"):
        import datetime as dt

        from pipeline import increments

        listens = increments.training_listens(spark, Path(summary["curated"]), summary["partitions"],
                                              up_to=dt.date.fromisoformat(summary["up_to"]),
                                              window_days=args.train_window_days)
    elif not Path(listens).exists():
        raise FileNotFoundError(f"{listens} does not exist: {args.input} is not a complete `pipeline ingest` output; "
                                "run pipeline ingest again")
    elif args.train_window_days:
        raise ValueError("--window-days applies to the output of `pipeline ingest` on a date-partitioned input")
    stats = split.split(listens, Path(args.out), cfg, has_timestamps=summary["has_timestamps"],
                        spark=spark,
                        shape=(summary["n_users_mapped"], summary["n_tracks_mapped"]),
                        idmap_version=summary["idmap_version"])
    print(split.format_table(stats))
    return 0


def _ingest_summary(folder: Path) -> dict:
    f = IngestLayout(folder).summary
    if not f.is_file():
        raise FileNotFoundError(f"{f} does not exist: --input must be the --out folder of `pipeline ingest`")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{f} is not valid JSON ({exc}); run pipeline ingest again") from None


def _partition(args: argparse.Namespace) -> int:
    import datetime as dt

    from pipeline import increments
    from pipeline.spark import get_session

    until = dt.date.fromisoformat(args.until) if args.until else None
    out = increments.partition_log(get_session("pipeline partition"), args.format, Path(args.input), Path(args.out),
                                   until=until, tracks=args.tracks)
    print(json.dumps(out, indent=1))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from pipeline import synth

    argv = ["--out", args.out, "--listens", str(args.listens), "--seed", str(args.seed), "--shape", args.shape]
    if args.users:
        argv += ["--users", str(args.users)]
    if args.tracks:
        argv += ["--tracks", str(args.tracks)]
    synth.main(argv)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.evaluate import evaluate_tables

    print(json.dumps(evaluate_tables(args.recs, args.truth, k=args.k), indent=1))
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from pipeline.serving import MODEL_NAME, recommend

    uri = args.model or f"models:/{MODEL_NAME}@champion"
    try:
        table = recommend(args.user, args.k, listens=args.listened, model_uri=uri)
    except Exception as exc:  # noqa: BLE001 - an expected failure is re-raised naming the model and the fix
        if not _expected(exc):
            raise
        raise LookupError(f"cannot answer from the model {uri}: {_message(exc)}. Train and promote one (make demo), "
                          "or pass --model with a model URI or folder") from None
    print(table.to_string(index=False))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline.summary import print_run_report

    print_run_report(Path(args.run_dir) if args.run_dir else None)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pipeline import demo
    from pipeline.paths import pipeline_home

    conf = {"input_path": args.input or str(pipeline_home() / "data" / "demo"), "input_format": args.format,
            **json.loads(args.conf)}
    return demo.run(conf, home=pipeline_home(), dag_id=args.dag or demo.DAG_ID, spark_info=args.spark_info)


def build_parser() -> argparse.ArgumentParser:
    from pipeline.runconfig import add_flag

    p = argparse.ArgumentParser(prog="pipeline", description="Music recommendations training pipeline.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a deterministic synthetic listening log (ListenBrainz layout)")
    s.add_argument("--out", required=True)
    s.add_argument("--listens", type=int, default=200_000)
    s.add_argument("--users", type=int)
    s.add_argument("--tracks", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shape", choices=["demo", "seed", "calibrated"], default="demo",
                   help="demo: the demo's proportions; seed: the seed's ListenBrainz shape scaled to --listens; "
                        "calibrated: the seed shape with listeners' repeat structure matched to real logs")
    s.set_defaults(func=_synth)

    s = sub.add_parser("ingest", help="load, validate (quarantine), canonical tracks, dedup, ID map")
    add_flag(s, "--format", "input_format")
    s.add_argument("--input", required=True)
    s.add_argument("--tracks")
    s.add_argument("--aliases")
    s.add_argument("--columns", help='generic format: JSON mapping, e.g. {"user_id": "user", "track_mbid": "mbid"}')
    s.add_argument("--idmap", help="ID map root (default $PIPELINE_HOME/state/idmap)")
    for name in ("max_quarantine_share", "min_timestamp", "max_timestamp", "future_tolerance_hours",
                 "min_play_count", "max_play_count", "rating_mapping", "rating_threshold"):
        add_flag(s, "--" + name.replace("_", "-"), name)
    s.add_argument("--as-of", help="date-partitioned input: ingest the pending partitions up to this date "
                                   "(YYYY-MM-DD, default today UTC)")
    s.add_argument("--curated", help="date-partitioned input: the curated table (default "
                                     "$PIPELINE_HOME/curated/<input folder name>)")
    s.add_argument("--out", required=True, help="this run's work folder and summary.json")
    s.set_defaults(func=_ingest)

    s = sub.add_parser("partition", help="split a listening log into date=YYYY-MM-DD folders by listen day (UTC)")
    s.add_argument("--format", default="listenbrainz", help="listenbrainz (the only layout it writes)")
    s.add_argument("--input", required=True)
    s.add_argument("--tracks")
    s.add_argument("--out", required=True, help="the partitioned root; existing date= folders are never rewritten")
    s.add_argument("--until", help="write the days up to this date only (YYYY-MM-DD): land later nights later")
    s.set_defaults(func=_partition)

    s = sub.add_parser("split", help="train/validation/test split of ingested listens")
    s.add_argument("--input", required=True, help="an ingest output folder")
    add_flag(s, "--strategy", "split_strategy")
    add_flag(s, "--fraction", "split_fraction")
    s.add_argument("--k", dest="leave_out", type=int, default=1, help="leave_k_out: the evaluation rows per user")
    add_flag(s, "--seed", "seed")
    s.add_argument("--cutoff")
    add_flag(s, "--test-quantile", "test_quantile")
    s.add_argument("--test-start")
    s.add_argument("--no-test", action="store_true", help="no held-out test window")
    add_flag(s, "--window-days", "train_window_days")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_split)

    from pipeline.evaluate import INPUT_SCHEMA

    s = sub.add_parser("evaluate", help="score any recommender's output: P/R/MAP/NDCG/HitRate/MRR/coverage @K",
                       epilog=INPUT_SCHEMA, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--recs", required=True)
    s.add_argument("--truth", required=True)
    s.add_argument("-k", type=int, default=100)
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("recommend", help="top-K tracks for users from the registered champion")
    s.add_argument("--user", required=True, action="append", help="a user id (repeat for several)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--listened", action="append", metavar="TRACK",
                   help="a track key the user listened to, as in the answer's track column (repeat for several): "
                        "the user is folded in from these listens")
    s.add_argument("--model", help="model URI (default models:/music-recs@champion)")
    s.set_defaults(func=_recommend)

    s = sub.add_parser("report", help="print a run's leaderboard and the promoted model's test metrics")
    s.add_argument("--run-dir", help="default: the latest run under $PIPELINE_HOME/runs")
    s.set_defaults(func=_report)

    s = sub.add_parser("demo", help="run the nightly DAG once (airflow dags test): one line per task, the report; "
                                    "all Airflow and Spark output in $PIPELINE_HOME/logs/demo-<time>.log")
    s.add_argument("--input", help="the listens (default $PIPELINE_HOME/data/demo)")
    s.add_argument("--format", default="listenbrainz", help="the input's loader")
    s.add_argument("-c", "--conf", default="{}", help="more DAG params as JSON, e.g. '{\"ranks\": [16]}'")
    s.add_argument("--dag", help="the DAG to run (default music_recs_nightly)")
    s.add_argument("--spark-info", action="store_true", help="keep Spark's INFO log in the log file (default: WARN)")
    s.set_defaults(func=_demo)
    return p


def _expected(exc: Exception) -> bool:
    """Bad input, not a bug: a missing or unreadable file, a bad value or key, a failed validation,
    a model or path MLflow or Spark cannot find. Anything else keeps its traceback."""
    if isinstance(exc, (OSError, ValueError, LookupError)):
        return True
    libs = [getattr(sys.modules.get(m), c, None) for m, c in (("mlflow.exceptions", "MlflowException"),
                                                              ("pyspark.errors", "AnalysisException"))]
    return any(cls is not None and isinstance(exc, cls) for cls in libs)


def _message(exc: Exception) -> str:
    """One line: our own messages whole, a library's first line (the rest is its internals)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()] or [type(exc).__name__]
    return " ".join(lines) if type(exc).__module__.startswith(("pipeline", "builtins")) else lines[0]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - expected failures become one line; the rest re-raise
        if not _expected(exc):
            raise
        print(f"pipeline {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
