"""Checks of the stored observations as a whole: freshness, gaps, rejections, share sums.

They sit on `coverage`, the warehouse's catalogue of what is stored, which the refresh after
every burst of ingestion rebuilds; so they run once per burst, after every partition of it has
landed. On `ls_ratio` itself they would run inside each partition's run: in a backfill, runs
finish in another order than they were created, and Dagster then shows checks of a partitioned
asset as "not evaluated". Each partition's own validation is the in-step check `rows_valid`.
tests/test_checks.py runs them all the way the daemon does, on valid data from all six
exchanges and on an empty warehouse.
"""

from datetime import UTC, datetime, timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from pipelines.config import PERIOD_MS
from pipelines.queries import one_row
from pipelines.resources import PipelineSettings
from pipelines.warehouse import connect
from schemas.ls_ratio import RATIO_RELATIVE_TOLERANCE, SHARE_SUM_TOLERANCE

COVERAGE = AssetKey("coverage")
STALE_AFTER = timedelta(hours=3)
GAP_LOOKBACK_DAYS = 7
LISTED = 30  # series named in a check's metadata; the counts cover all of them


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _periods() -> list[list[object]]:
    """[period names, period lengths in ms]: SQL parameters for per-period arithmetic."""
    return [list(PERIOD_MS), list(PERIOD_MS.values())]


def _bullets(lines: list[str]) -> MetadataValue:
    return MetadataValue.md("\n".join(f"- {line}" for line in lines[:LISTED]) or "none")


@asset_check(
    asset=COVERAGE,
    description="Each exchange's newest bucket ended less than 3 hours ago (the hourly poll "
    "keeps it so; latest-window exchanges lose data while it does not run).",
)
def ls_ratio_fresh(settings: PipelineSettings) -> AssetCheckResult:
    with connect(settings.warehouse_file()) as conn:
        rows = conn.execute(
            """
            WITH periods AS (SELECT unnest(?::VARCHAR[]) AS period, unnest(?::BIGINT[]) AS ms)
            SELECT exchange, max(ts + to_milliseconds(ms)) AS newest_end
            FROM ls_ratio JOIN periods USING (period)
            GROUP BY exchange ORDER BY exchange
            """,
            _periods(),
        ).fetchall()
    now = _now()
    stale = {exchange: str(end) for exchange, end in rows if now - end > STALE_AFTER}
    return AssetCheckResult(
        passed=bool(rows) and not stale,
        severity=AssetCheckSeverity.WARN,
        description=None if rows else "the warehouse holds no long/short rows yet",
        metadata={
            "newest_bucket_end": MetadataValue.json({e: str(t) for e, t in rows}),
            "stale_exchanges": MetadataValue.json(stale),
        },
    )


# Buckets missing between a series' first and last bucket of the look-back. A missing bucket is
# the exchange's own hole (HTX publishes series with holes) when the last fetch of its day was
# ok and asked for a window holding the whole bucket: the exchange could have served it and did
# not. Otherwise we missed it (a failed or never-run partition, a window the exchange's reach cut
# short, polls that stopped), and that is what the check flags.
GAPS_SQL = """
WITH periods AS (SELECT unnest(?::VARCHAR[]) AS period, unnest(?::BIGINT[]) AS ms),
series AS (
    SELECT exchange, coin, metric, period, any_value(ms) AS ms, min(ts) AS first_ts,
           max(ts) AS last_ts
    FROM ls_ratio JOIN periods USING (period)
    WHERE ts >= ?
    GROUP BY exchange, coin, metric, period
),
grid AS (
    SELECT exchange, coin, metric, period, ms,
           unnest(generate_series(first_ts, last_ts, to_milliseconds(ms))) AS ts
    FROM series
),
missing AS (
    SELECT g.*, coalesce(p.status = 'ok' AND p.window_start <= g.ts
                         AND g.ts + to_milliseconds(g.ms) <= p.window_end, false) AS served
    FROM grid AS g
    ANTI JOIN ls_ratio AS l USING (exchange, coin, metric, period, ts)
    LEFT JOIN partition_log AS p
        ON p.exchange = g.exchange AND p.coin = g.coin AND p.dataset = g.metric
       AND p.period = g.period AND p.day = g.ts::DATE
)
SELECT exchange, coin, metric, period,
       count(*) FILTER (WHERE NOT served) AS unexplained,
       count(*) FILTER (WHERE served) AS exchange_holes,
       min(ts) FILTER (WHERE NOT served) AS first_unexplained
FROM missing
GROUP BY exchange, coin, metric, period
ORDER BY unexplained DESC, exchange_holes DESC, exchange, coin, metric, period
"""


@asset_check(
    asset=COVERAGE,
    description="No bucket is missing between a series' first and last bucket of the last 7 "
    "days (per exchange, coin, metric, period) unless the exchange itself left it out: a bucket "
    "inside the window of its day's last successful fetch is the exchange's hole (reported, not "
    "failed); any other missing bucket is a fetch we failed, never ran or could not reach.",
)
def ls_ratio_no_gaps(settings: PipelineSettings) -> AssetCheckResult:
    since = _now() - timedelta(days=GAP_LOOKBACK_DAYS)
    with connect(settings.warehouse_file()) as conn:
        rows = conn.execute(GAPS_SQL, [*_periods(), since]).fetchall()
    ours = [r for r in rows if r[4]]
    holes = [r for r in rows if r[5]]
    return AssetCheckResult(
        passed=not ours,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "series_with_gaps": len(ours),
            "missing_buckets": sum(r[4] for r in ours),
            "gaps": _bullets(
                [f"{e} {c} {m} {p}: {n} missing from {first}" for e, c, m, p, n, _, first in ours]
            ),
            "exchange_holes": sum(r[5] for r in holes),
            "series_with_exchange_holes": _bullets(
                [f"{e} {c} {m} {p}: {h}" for e, c, m, p, _, h, _ in holes]
            ),
        },
    )


@asset_check(asset=COVERAGE, description="No rows were rejected by validation in the last 7 days.")
def ls_ratio_rejected_rows(settings: PipelineSettings) -> AssetCheckResult:
    since = _now() - timedelta(days=GAP_LOOKBACK_DAYS)
    with connect(settings.warehouse_file()) as conn:
        rows = conn.execute(
            """SELECT exchange, reason, count(*) AS n FROM ls_ratio_rejected
               WHERE fetched_at >= ? GROUP BY exchange, reason ORDER BY n DESC, exchange, reason""",
            [since],
        ).fetchall()
    total = sum(n for *_, n in rows)
    return AssetCheckResult(
        passed=total == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "rejected_rows": total,
            "by_reason": _bullets([f"{e}: {r} ({n})" for e, r, n in rows]),
        },
    )


@asset_check(
    asset=COVERAGE,
    description="Stored shares are within 0..1, long + short (+ locked, where the exchange "
    "publishes locked accounts: HTX) is 1 within the validation tolerance, and ratio = "
    "long / short. Validation keeps such rows out, so a failure means the table was written "
    "around it.",
)
def ls_ratio_shares_consistent(settings: PipelineSettings) -> AssetCheckResult:
    with connect(settings.warehouse_file()) as conn:
        row = one_row(
            conn,
            """
            SELECT
                count(*) FILTER (WHERE abs(long_share + short_share
                                           + coalesce(locked_share, 0) - 1) > ?),
                count(*) FILTER (WHERE long_share NOT BETWEEN 0 AND 1
                                    OR short_share NOT BETWEEN 0 AND 1
                                    OR locked_share NOT BETWEEN 0 AND 1),
                count(*) FILTER (WHERE abs(ratio - long_share / short_share) > ? * ratio),
                count(*) FILTER (WHERE ratio <= 0 OR isinf(ratio) OR isnan(ratio)),
                count(*)
            FROM ls_ratio
            """,
            [SHARE_SUM_TOLERANCE, RATIO_RELATIVE_TOLERANCE],
        )
    bad_sum, bad_range, bad_ratio, bad_value, checked = row
    return AssetCheckResult(
        passed=not any((bad_sum, bad_range, bad_ratio, bad_value)),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows_checked": checked,
            "share_sum_off": bad_sum,
            "share_out_of_range": bad_range,
            "ratio_inconsistent": bad_ratio,
            "ratio_not_positive_finite": bad_value,
        },
    )


CHECKS = [ls_ratio_fresh, ls_ratio_no_gaps, ls_ratio_rejected_rows, ls_ratio_shares_consistent]
