"""Validate raw listens: quarantine bad rows with a reason, check the batch with Great Expectations.

Every row a loader produced ends up in exactly one of two places: the validated listens or
the quarantine (with a ``reason`` and the ``rule`` it broke). The rules are the plausibility
limits of :class:`~pipeline.config.IngestConfig`, resolved per format in one place
(:func:`limits`). The Great Expectations suite then checks the batch as a whole: the schema,
and that the rows hold the rules for at least ``1 - max_quarantine_share`` of the rows. A batch
that fails stops the run with one line that names each rule broken, its count, the setting
that would admit the rows and the users who would be lost entirely (:class:`ValidationFailed`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from pipeline.config import IngestConfig

__all__ = ["Limits", "ValidationFailed", "limits", "quarantine_reason", "quarantine_rules", "run_expectations",
           "tag", "with_rating_confidence"]

log = logging.getLogger(__name__)

LISTEN_COLUMNS = (
    "source_row", "user_id", "track_mbid", "artist_name", "track_name",
    "source_track_id", "timestamp", "play_count", "parse_error",
)
# a rule that keeps rows out by design (a low rating is not a positive), not because they are bad
BY_DESIGN = ("rating_threshold", "not_a_listen")
# what to do about a rule that no setting relaxes
_FIX = {
    "parse_error": "fix those values in the file (the reason names the column and value)",
    "user_id": "give every row a user id",
    "track": "give every row a track mbid, an artist + track name or a source id (generic: map them with columns)",
    "play_count": "give every row a play count",
    "timestamp": "give every row a timestamp",
    "min_play_count": "a play count below 1 is not a listen: fix or drop those rows",
}


class ValidationFailed(ValueError):
    """The batch broke the listens suite: one line naming each broken rule, its count and its fix.

    ``failed`` lists the failed expectations; ``summary`` is the validate summary, with
    ``rules`` (see :func:`quarantine_rules`).
    """

    def __init__(self, source: str, failed: list[dict[str, Any]], summary: dict[str, Any]):
        self.failed = failed
        self.summary = summary
        super().__init__(failure_line(source, summary))


def _share(n: int, total: int) -> str:
    return f"{n / total:.2%}" if total else "0%"


def failure_line(source: str, summary: dict[str, Any]) -> str:
    """The one-line message of a failed validation (see :class:`ValidationFailed`)."""
    rows_in, rules = summary.get("rows_in") or 0, summary.get("rules") or {}
    broken = sum(r["rows"] for name, r in rules.items() if name not in BY_DESIGN)
    parts = []
    for name, r in rules.items():
        if name in BY_DESIGN:
            continue
        fix = f"to admit them set {name}={r['admit']}" if r.get("admit") is not None else _FIX.get(name, "fix the input")
        lost = f"; {r['users_lost']} user(s) have no other rows and would be lost entirely" \
               f" ({', '.join(map(str, r['users_lost_sample']))}{', ...' if r['users_lost'] > len(r['users_lost_sample']) else ''})" \
            if r.get("users_lost") else ""
        eg = f"e.g. '{r['example']}' ({r['reasons']} kinds)" if r.get("reasons", 1) > 1 else f"'{r['example']}'"
        parts.append(f"{r['rows']} row(s) {eg} ({fix}{lost})")
    users_lost = summary.get("users_lost") or 0
    raise_to = -(-broken * 10_000 // rows_in) / 10_000 if rows_in else 0
    share = (f"raising max_quarantine_share to {raise_to:g} would keep the rest but lose {users_lost} of "
             f"{summary.get('users_in')} users entirely" if users_lost else
             f"raising max_quarantine_share to {raise_to:g} would drop these rows but keep every user")
    return (f"validation of {source} failed: {broken} of {rows_in} rows ({_share(broken, rows_in)}) broke a rule, "
            f"over max_quarantine_share={summary.get('max_quarantine_share')}: " + "; ".join(parts)
            + f". Or, {share}. Quarantined rows: {summary.get('quarantine_path')}")


@dataclass(frozen=True)
class Limits:
    """The plausibility limits of one run, resolved from the config, its format and the run's date."""

    min_timestamp: dt.datetime | None
    max_timestamp: dt.datetime
    min_play_count: int = 1
    max_play_count: int | None = None
    rating_threshold: float | None = None  # only with rating_mapping="threshold"


def limits(cfg: "IngestConfig", as_of: dt.datetime) -> Limits:
    """The one place where a config's limits (None: the format's floor) become values."""
    lo, hi = cfg.timestamp_range(as_of)
    return Limits(lo, hi, cfg.min_play_count, cfg.max_play_count,
                  cfg.rating_threshold if cfg.rating_mapping == "threshold" else None)


def _naive_utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_rating_confidence(df: "DataFrame", mapping: str) -> "DataFrame":
    """Apply ``rating_mapping`` ``weight``: play_count = the rating in half stars (0.5 -> 1, 5 -> 10)."""
    from pyspark.sql import functions as F

    if mapping != "weight" or "rating" not in df.columns:
        return df
    return df.withColumn("play_count", F.when(F.col("rating").isNotNull(), F.round(F.col("rating") * 2).cast("long"))
                         .otherwise(F.col("play_count")))


def _rules(has_timestamps: bool, lim: Limits) -> list[tuple[str, "Column", "Column"]]:
    """(rule, condition, reason) in the order they are checked; the first that holds is the row's."""
    from pyspark.sql import functions as F

    def blank(c: str) -> "Column":
        return F.col(c).isNull() | (F.trim(F.col(c)) == "")

    no_track = blank("track_mbid") & blank("source_track_id") & (blank("artist_name") | blank("track_name"))
    n = F.col("play_count")
    rules = [
        ("parse_error", F.col("parse_error").isNotNull(), F.col("parse_error")),
        ("not_a_listen", F.col("not_a_listen").isNotNull(), F.col("not_a_listen")),
        ("user_id", blank("user_id"), F.lit("user_id: null or blank")),
        ("track", no_track, F.lit("track: no MusicBrainz id, no artist+track name and no source id")),
        ("play_count", n.isNull(), F.lit("play_count: missing")),
        ("min_play_count", n < lim.min_play_count, F.lit(f"play_count: below min_play_count {lim.min_play_count}")),
    ]
    if lim.max_play_count is not None:
        rules.append(("max_play_count", n > lim.max_play_count,
                      F.lit(f"play_count: above max_play_count {lim.max_play_count}")))
    if has_timestamps:
        ts = F.col("timestamp")
        rules.append(("timestamp", ts.isNull(), F.lit("timestamp: missing")))
        if lim.min_timestamp is not None:
            rules.append(("min_timestamp", ts < F.lit(_naive_utc(lim.min_timestamp)).cast("timestamp"),
                          F.lit(f"timestamp: before min_timestamp {_iso(lim.min_timestamp)}")))
        rules.append(("max_timestamp", ts > F.lit(_naive_utc(lim.max_timestamp)).cast("timestamp"),
                      F.lit(f"timestamp: after max_timestamp {_iso(lim.max_timestamp)} (the run's date + "
                            "future_tolerance_hours unless set)")))
    if lim.rating_threshold is not None:
        rules.append(("rating_threshold", F.col("rating") < lim.rating_threshold,
                      F.lit(f"rating: below rating_threshold {lim.rating_threshold:g} (not a positive)")))
    return rules


def quarantine_reason(has_timestamps: bool, lim: Limits) -> tuple["Column", "Column"]:
    """(reason, rule): both null for a good row; otherwise why, and the name of the first rule broken."""
    from pyspark.sql import functions as F

    rules = _rules(has_timestamps, lim)
    reason, rule = F.when(rules[0][1], rules[0][2]), F.when(rules[0][1], F.lit(rules[0][0]))
    for name, cond, why in rules[1:]:
        reason, rule = reason.when(cond, why), rule.when(cond, F.lit(name))
    null = F.lit(None).cast("string")
    return reason.otherwise(null), rule.otherwise(null)


def tag(df: "DataFrame", has_timestamps: bool, lim: Limits) -> "DataFrame":
    """``df`` with ``reason`` and ``rule`` columns (null on good rows)."""
    reason, rule = quarantine_reason(has_timestamps, lim)
    return df.withColumn("reason", reason).withColumn("rule", rule)


def quarantine_rules(spark: "SparkSession", quarantine: Path, validated: Path, *, sample: int = 5) -> dict[str, Any]:
    """What the quarantine holds, per rule, and which users it loses entirely.

    Returns ``users_in``, ``users_lost`` (users with a quarantined row and no validated one),
    ``users_lost_sample`` and ``rules``: per rule, ``rows``, an ``example`` reason, ``admit``
    (the value of the rule's setting that would admit every row it quarantined; None when no
    setting does), ``users_lost`` (lost users all of whose rows broke this rule: the rule
    removes them whole) and a sample of their ids.
    """
    from pyspark.sql import functions as F

    q = spark.read.parquet(str(quarantine))
    good_users = spark.read.parquet(str(validated)).select(F.trim("user_id").alias("user")).distinct()
    per_rule = (q.groupBy("rule").agg(F.count(F.lit(1)).alias("rows"), F.min("reason").alias("example"),
                                      F.countDistinct("reason").alias("kinds"),
                                      F.min("timestamp").alias("ts_min"), F.max("timestamp").alias("ts_max"),
                                      F.min("play_count").alias("n_min"), F.max("play_count").alias("n_max"),
                                      *([F.min("rating").alias("r_min")] if "rating" in q.columns else []))
                .orderBy(F.desc("rows"), "rule").collect())
    users = (q.where(F.col("user_id").isNotNull() & (F.trim("user_id") != ""))
             .groupBy(F.trim("user_id").alias("user")).agg(F.countDistinct("rule").alias("n_rules"), F.min("rule").alias("rule")))
    lost = users.join(good_users, "user", "left_anti").cache()
    lost_by_rule = {r["rule"]: r["n"] for r in lost.where("n_rules = 1").groupBy("rule").agg(F.count(F.lit(1)).alias("n")).collect()}
    rules: dict[str, Any] = {}
    for r in per_rule:
        name = r["rule"]
        admit = {"min_timestamp": r["ts_min"] and _iso(r["ts_min"].replace(tzinfo=dt.timezone.utc)),
                 "max_timestamp": r["ts_max"] and _iso(r["ts_max"].replace(tzinfo=dt.timezone.utc)),
                 "min_play_count": r["n_min"] if r["n_min"] is not None and r["n_min"] >= 1 else None,
                 "max_play_count": r["n_max"], "rating_threshold": r.asDict().get("r_min")}.get(name)
        n_lost = lost_by_rule.get(name, 0)
        ids = [x["user"] for x in lost.where((F.col("n_rules") == 1) & (F.col("rule") == name))
               .orderBy("user").limit(sample).collect()] if n_lost else []
        rules[name] = {"rows": r["rows"], "example": r["example"], "reasons": r["kinds"], "admit": admit, "users_lost": n_lost,
                       "users_lost_sample": ids}
    n_lost = lost.count()
    out = {"users_in": good_users.count() + n_lost, "users_lost": n_lost, "users_lost_sample": [x["user"] for x in lost.orderBy("user").limit(sample).collect()],
           "rules": rules}
    lost.unpersist()
    return out


def run_expectations(
    df: "DataFrame", *, has_timestamps: bool, lim: Limits, max_quarantine_share: float, docs_dir: Path | None = None
) -> dict[str, Any]:
    """Run the listens suite on the raw batch; return the result as a dict (``success``, ``failed``).

    ``df`` is every row of the batch, tagged by :func:`tag`. Besides one expectation per column rule,
    ``broken_rule`` (the ``rule`` each row breaks, rules that keep rows out by design aside) must be
    null for ``1 - max_quarantine_share`` of the rows: the batch fails exactly when the quarantine
    share is over the limit. ``df`` is not cached for the suite (Great Expectations would by default):
    read from Parquet, each metric reads only its column, and row-group statistics answer most.
    ``docs_dir``, when given, receives the Great Expectations Data Docs site (HTML).
    """
    # GE logs ~200 "Skipping registering function" lines at INFO on import, and its tqdm bar goes to
    # stderr, which the Airflow task log shows as ERROR lines: neither tells the reader anything
    logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from pyspark.sql import functions as F

    df = df.withColumn("broken_rule", F.when(~F.col("rule").isin(*BY_DESIGN), F.col("rule")))
    mostly = 1.0 - max_quarantine_share
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = ctx.data_sources.add_spark(name="listens", persist=False).add_dataframe_asset(name="raw_listens")
    batch_def = asset.add_batch_definition_whole_dataframe("batch")
    suite = ctx.suites.add(gx.ExpectationSuite(name="listens"))
    for column in LISTEN_COLUMNS:
        suite.add_expectation(gxe.ExpectColumnToExist(column=column))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    suite.add_expectation(gxe.ExpectColumnValuesToBeNull(column="parse_error", mostly=mostly))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="user_id", mostly=mostly))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="play_count", min_value=lim.min_play_count,
                                                            max_value=lim.max_play_count, mostly=mostly))
    if has_timestamps:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="timestamp", mostly=mostly))
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
            column="timestamp",
            min_value=_naive_utc(lim.min_timestamp) if lim.min_timestamp else None,
            max_value=_naive_utc(lim.max_timestamp),
            mostly=mostly,
        ))
    suite.add_expectation(gxe.ExpectColumnValuesToBeNull(column="broken_rule", mostly=mostly))
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name="listens", data=batch_def, suite=suite))
    result = definition.run(batch_parameters={"dataframe": df})
    failed = [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column"),
            "unexpected_count": (r.result or {}).get("unexpected_count"),
            "unexpected_percent": (r.result or {}).get("unexpected_percent"),
        }
        for r in result.results
        if not r.success
    ]
    if docs_dir is not None:
        _write_data_docs(ctx, result, docs_dir)
    return {"success": bool(result.success), "failed": failed, "result": json.loads(json.dumps(result.to_json_dict(), default=str))}


def _write_data_docs(ctx: Any, result: Any, docs_dir: Path) -> None:
    """Render the validation result as one self-contained Great Expectations Data Docs HTML page."""
    from pipeline.datadocs import page

    try:
        html = page(result)
    except Exception as exc:  # noqa: BLE001 - docs are a report; the validation itself stands
        log.warning("could not render Data Docs HTML (%s); the JSON result is still written", exc)
        return
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "validation.html").write_text(html, encoding="utf-8")
