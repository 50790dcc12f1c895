"""Validate raw listens: quarantine bad rows with a reason, check the batch with Great Expectations.

Every row a loader produced ends up in exactly one of two places: the validated listens or
the quarantine (with a ``reason``). The Great Expectations suite then checks the batch as a
whole: the schema, and that each row-level rule holds for at least ``1 - max_quarantine_share``
of the rows. A batch that fails stops the run with the list of failed expectations.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["ValidationFailed", "quarantine_reason", "run_expectations", "split_valid"]

log = logging.getLogger(__name__)

LISTEN_COLUMNS = (
    "source_row", "user_id", "track_mbid", "artist_name", "track_name",
    "source_track_id", "timestamp", "play_count", "parse_error",
)


class ValidationFailed(RuntimeError):
    """The batch broke the listens suite; ``failed`` lists each failed expectation."""

    def __init__(self, source: str, failed: list[dict[str, Any]], summary: dict[str, Any]):
        self.failed = failed
        self.summary = summary
        lines = [
            f"- {f['expectation']}({f.get('column') or ''}): {f.get('unexpected_count')} unexpected "
            f"({f.get('unexpected_percent') or 0:.3f}%)" for f in failed
        ]
        reasons = ", ".join(f"{k}: {v}" for k, v in summary.get("quarantined_by_reason", {}).items())
        super().__init__(
            f"validation of {source} failed {len(failed)} expectation(s):\n" + "\n".join(lines)
            + f"\nquarantined {summary.get('quarantined')} of {summary.get('rows_in')} rows ({reasons}); "
            "fix the input or raise max_quarantine_share if this share of bad rows is acceptable"
        )


@dataclass(frozen=True)
class Bounds:
    """The plausible timestamp range: ``[min_timestamp, as_of + tolerance]``."""

    min_timestamp: dt.datetime
    max_timestamp: dt.datetime


def bounds(min_timestamp: str, as_of: dt.datetime, future_tolerance_hours: float) -> Bounds:
    lo = dt.datetime.fromisoformat(min_timestamp.replace("Z", "+00:00"))
    if lo.tzinfo is None:
        lo = lo.replace(tzinfo=dt.timezone.utc)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.timezone.utc)
    return Bounds(lo, as_of + dt.timedelta(hours=future_tolerance_hours))


def quarantine_reason(has_timestamps: bool, b: Bounds) -> "Column":
    """A column that is null for a good row and names the first broken rule otherwise."""
    from pyspark.sql import functions as F

    def blank(c: str) -> "Column":
        return F.col(c).isNull() | (F.trim(F.col(c)) == "")

    no_track = blank("track_mbid") & blank("source_track_id") & (blank("artist_name") | blank("track_name"))
    ts = F.col("timestamp")
    lo = F.lit(b.min_timestamp.astimezone(dt.timezone.utc).replace(tzinfo=None)).cast("timestamp")
    hi = F.lit(b.max_timestamp.astimezone(dt.timezone.utc).replace(tzinfo=None)).cast("timestamp")
    rules = [
        (F.col("parse_error").isNotNull(), F.col("parse_error")),
        (blank("user_id"), F.lit("user_id: null or blank")),
        (no_track, F.lit("track: no MusicBrainz id, no artist+track name and no source id")),
        (F.col("play_count").isNull() | (F.col("play_count") < 1), F.lit("play_count: must be an integer >= 1")),
    ]
    if has_timestamps:
        rules += [
            (ts.isNull(), F.lit("timestamp: missing")),
            (ts < lo, F.lit(f"timestamp: before {b.min_timestamp.isoformat()}")),
            (ts > hi, F.lit(f"timestamp: in the future (after {b.max_timestamp.isoformat()})")),
        ]
    expr = F.when(*rules[0])
    for cond, reason in rules[1:]:
        expr = expr.when(cond, reason)
    return expr.otherwise(F.lit(None).cast("string"))


def split_valid(df: "DataFrame", has_timestamps: bool, b: Bounds) -> tuple["DataFrame", "DataFrame"]:
    """(valid rows, quarantined rows with a ``reason`` column); together they are all rows."""
    from pyspark.sql import functions as F

    tagged = df.withColumn("reason", quarantine_reason(has_timestamps, b))
    valid = tagged.where(F.col("reason").isNull()).drop("reason", "parse_error")
    bad = tagged.where(F.col("reason").isNotNull())
    return valid, bad


def run_expectations(
    df: "DataFrame", *, has_timestamps: bool, b: Bounds, max_quarantine_share: float, docs_dir: Path | None = None
) -> dict[str, Any]:
    """Run the listens suite on the raw batch; return the result as a dict (``success``, ``failed``).

    ``docs_dir``, when given, receives the Great Expectations Data Docs site (HTML).
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    mostly = 1.0 - max_quarantine_share
    ctx = gx.get_context(mode="ephemeral")
    asset = ctx.data_sources.add_spark(name="listens").add_dataframe_asset(name="raw_listens")
    batch_def = asset.add_batch_definition_whole_dataframe("batch")
    suite = ctx.suites.add(gx.ExpectationSuite(name="listens"))
    for column in LISTEN_COLUMNS:
        suite.add_expectation(gxe.ExpectColumnToExist(column=column))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    suite.add_expectation(gxe.ExpectColumnValuesToBeNull(column="parse_error", mostly=mostly))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="user_id", mostly=mostly))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="play_count", min_value=1, mostly=mostly))
    if has_timestamps:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="timestamp", mostly=mostly))
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
            column="timestamp",
            min_value=b.min_timestamp.astimezone(dt.timezone.utc).replace(tzinfo=None),
            max_value=b.max_timestamp.astimezone(dt.timezone.utc).replace(tzinfo=None),
            mostly=mostly,
        ))
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
    """Render the validation result as a Great Expectations Data Docs HTML page."""
    try:
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        page = ValidationResultsPageRenderer().render(result)
        html = DefaultJinjaPageView().render(page)
    except Exception as exc:  # noqa: BLE001 - docs are a report; the validation itself stands
        log.warning("could not render Data Docs HTML (%s); the JSON result is still written", exc)
        return
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "validation.html").write_text(html, encoding="utf-8")
