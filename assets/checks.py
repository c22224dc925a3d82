"""Asset checks that query the warehouse after loads: freshness, gaps, rejections, share sums."""

from datetime import UTC, datetime, timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from pipelines.resources import PipelineSettings
from pipelines.warehouse import connect, one_row

LS_RATIO = AssetKey("ls_ratio")
STALE_AFTER = timedelta(hours=3)
GAP_LOOKBACK_DAYS = 7


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@asset_check(
    asset=LS_RATIO, description="Each exchange's newest 1h bucket is less than 3 hours old."
)
def ls_ratio_fresh(settings: PipelineSettings) -> AssetCheckResult:
    with connect(settings.warehouse_file(), read_only=False) as conn:
        rows = conn.execute(
            "SELECT exchange, max(ts) FROM ls_ratio WHERE period = '1h' GROUP BY 1 ORDER BY 1"
        ).fetchall()
    now = _now()
    stale = {exchange: str(newest) for exchange, newest in rows if now - newest > STALE_AFTER}
    return AssetCheckResult(
        passed=bool(rows) and not stale,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "newest_1h_bucket": MetadataValue.json({e: str(t) for e, t in rows}),
            "stale_exchanges": MetadataValue.json(stale),
        },
    )


@asset_check(
    asset=LS_RATIO,
    description="No missing buckets between a series' first and last bucket in the last 7 days "
    "(per exchange, coin, metric, period).",
)
def ls_ratio_no_gaps(settings: PipelineSettings) -> AssetCheckResult:
    since = _now() - timedelta(days=GAP_LOOKBACK_DAYS)
    with connect(settings.warehouse_file()) as conn:
        gaps = conn.execute(
            """
            WITH series AS (
                SELECT exchange, coin, metric, period, count(*) AS n, min(ts) AS first_ts,
                       max(ts) AS last_ts
                FROM ls_ratio WHERE ts >= ?
                GROUP BY ALL
            ),
            expected AS (
                SELECT *, 1 + (epoch(last_ts) - epoch(first_ts)) //
                       CASE period WHEN '5m' THEN 300 WHEN '15m' THEN 900 WHEN '1h' THEN 3600
                                   WHEN '4h' THEN 14400 ELSE 86400 END AS want
                FROM series
            )
            SELECT exchange, coin, metric, period, (want - n)::BIGINT AS missing
            FROM expected WHERE want > n ORDER BY missing DESC, ALL
            """,
            [since],
        ).fetchall()
    listing = [f"{e} {c} {m} {p}: {n} missing" for e, c, m, p, n in gaps[:50]]
    return AssetCheckResult(
        passed=not gaps,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "series_with_gaps": len(gaps),
            "worst": MetadataValue.md("\n".join(f"- {x}" for x in listing) or "none"),
        },
    )


@asset_check(asset=LS_RATIO, description="No rows were rejected by validation in the last 7 days.")
def ls_ratio_rejected_rows(settings: PipelineSettings) -> AssetCheckResult:
    since = _now() - timedelta(days=GAP_LOOKBACK_DAYS)
    with connect(settings.warehouse_file()) as conn:
        rows = conn.execute(
            """SELECT exchange, reason, count(*) FROM ls_ratio_rejected WHERE fetched_at >= ?
               GROUP BY ALL ORDER BY 3 DESC""",
            [since],
        ).fetchall()
    total = sum(n for *_, n in rows)
    return AssetCheckResult(
        passed=total == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "rejected_rows": total,
            "by_reason": MetadataValue.md(
                "\n".join(f"- {e}: {r} ({n})" for e, r, n in rows[:30]) or "none"
            ),
        },
    )


@asset_check(
    asset=LS_RATIO,
    description="Stored shares are within 0..1, sum to 1 (within rounding) and ratio = long/short.",
)
def ls_ratio_shares_consistent(settings: PipelineSettings) -> AssetCheckResult:
    with connect(settings.warehouse_file()) as conn:
        row = one_row(
            conn,
            """
            SELECT
                count(*) FILTER (WHERE abs(long_share + short_share - 1) > 0.005),
                count(*) FILTER (WHERE long_share NOT BETWEEN 0 AND 1
                                    OR short_share NOT BETWEEN 0 AND 1),
                count(*) FILTER (WHERE abs(ratio - long_share / short_share) > 1e-9 * ratio),
                count(*) FILTER (WHERE ratio <= 0 OR isinf(ratio))
            FROM ls_ratio
            """,
        )
    bad_sum, bad_range, bad_ratio, bad_value = row if row else (0, 0, 0, 0)
    return AssetCheckResult(
        passed=not any((bad_sum, bad_range, bad_ratio, bad_value)),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "share_sum_off": bad_sum,
            "share_out_of_range": bad_range,
            "ratio_inconsistent": bad_ratio,
            "ratio_not_positive_finite": bad_value,
        },
    )


CHECKS = [ls_ratio_fresh, ls_ratio_no_gaps, ls_ratio_rejected_rows, ls_ratio_shares_consistent]
