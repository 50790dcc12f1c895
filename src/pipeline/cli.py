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

__all__ = ["main"]


def _ingest(args: argparse.Namespace) -> int:
    from pipeline import increments
    from pipeline.config import IngestConfig
    from pipeline.ingest import ingest
    from pipeline.paths import pipeline_home
    from pipeline.spark import get_session

    cfg = IngestConfig(
        input_path=args.input, input_format=args.format, tracks_path=args.tracks, aliases_path=args.aliases,
        columns=json.loads(args.columns) if args.columns else None, max_quarantine_share=args.max_quarantine_share,
    )
    idmap_root = Path(args.idmap) if args.idmap else pipeline_home() / "state" / "idmap"
    if increments.is_partitioned(args.input):
        import datetime as dt

        from pipeline.paths import atomic_write_text

        up_to = dt.date.fromisoformat(args.as_of) if args.as_of else dt.datetime.now(dt.timezone.utc).date()
        curated = Path(args.curated) if args.curated else increments.default_curated_dir(args.input)
        print(f"{args.input} is date-partitioned: ingesting the partitions up to {up_to} not yet in {curated}",
              file=sys.stderr)
        summary = increments.ingest_pending(cfg, curated, Path(args.out) / "partitions", up_to=up_to,
                                            idmap_root=idmap_root, spark=get_session("pipeline ingest"))
        atomic_write_text(Path(args.out) / "summary.json", json.dumps(summary, indent=1))
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

    summary = json.loads((Path(args.input) / "summary.json").read_text())
    cfg = SplitConfig(strategy=args.strategy, fraction=args.fraction, k=args.k, seed=args.seed,
                      cutoff=args.cutoff, test_quantile=None if args.no_test else args.test_quantile,
                      test_start=args.test_start)
    spark = get_session("pipeline split")
    listens: object = Path(args.input) / "listens"
    if summary.get("increments"):
        import datetime as dt

        from pipeline import increments

        listens = increments.training_listens(spark, Path(summary["curated"]), summary["partitions"],
                                              up_to=dt.date.fromisoformat(summary["up_to"]), window_days=args.window_days)
    elif args.window_days:
        raise ValueError("--window-days applies to the output of `pipeline ingest` on a date-partitioned input")
    stats = split.split(listens, Path(args.out), cfg, has_timestamps=summary["has_timestamps"],
                        spark=spark,
                        shape=(summary["n_users_mapped"], summary["n_tracks_mapped"]),
                        idmap_version=summary["idmap_version"])
    print(split.format_table(stats))
    return 0


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
    table = recommend(args.user, args.k, model_uri=uri)
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
    p = argparse.ArgumentParser(prog="pipeline", description="Music recommendations training pipeline.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a deterministic synthetic listening log (ListenBrainz layout)")
    s.add_argument("--out", required=True)
    s.add_argument("--listens", type=int, default=200_000)
    s.add_argument("--users", type=int)
    s.add_argument("--tracks", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shape", choices=["demo", "seed"], default="demo",
                   help="demo: the demo's proportions; seed: the seed's ListenBrainz shape scaled to --listens")
    s.set_defaults(func=_synth)

    s = sub.add_parser("ingest", help="load, validate (quarantine), canonical tracks, dedup, ID map")
    s.add_argument("--format", required=True, help="listenbrainz, generic, lastfm1k, hetrec, audioscrobbler, movielens")
    s.add_argument("--input", required=True)
    s.add_argument("--tracks")
    s.add_argument("--aliases")
    s.add_argument("--columns", help='generic format: JSON mapping, e.g. {"user_id": "user", "track_mbid": "mbid"}')
    s.add_argument("--idmap", help="ID map root (default $PIPELINE_HOME/state/idmap)")
    s.add_argument("--max-quarantine-share", type=float, default=0.01)
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
    s.add_argument("--strategy", default="temporal_user")
    s.add_argument("--fraction", type=float, default=0.8)
    s.add_argument("--k", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cutoff")
    s.add_argument("--test-quantile", type=float, default=0.9)
    s.add_argument("--test-start")
    s.add_argument("--no-test", action="store_true", help="no held-out test window")
    s.add_argument("--window-days", type=int, default=0,
                   help="date-partitioned ingest: only the listens of the last N days (0: the full history)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_split)

    s = sub.add_parser("evaluate", help="score any recommender's output: P/R/MAP/NDCG/HitRate/MRR/coverage @K")
    s.add_argument("--recs", required=True)
    s.add_argument("--truth", required=True)
    s.add_argument("-k", type=int, default=100)
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("recommend", help="top-K tracks for users from the registered champion")
    s.add_argument("--user", required=True, action="append", help="a user id (repeat for several)")
    s.add_argument("-k", type=int, default=10)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
