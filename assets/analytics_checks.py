"""Asset checks on the derived tables: invariants the SQL must keep, queried after each refresh.

Each check counts violations of a few rules in one query and fails (severity ERROR) when any
count is non-zero; the counts are the check's metadata, so a failure says which rule broke.
"""

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import duckdb
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)
from dagster._core.errors import DagsterInvalidPropertyError

from pipelines.analytics import (
    BEGINNING,
    alt_universe,
    metric_publishers,
    top_pair_exchanges,
    whale_crowd_exchanges,
)
from pipelines.queries import one_row, table_exists
from pipelines.resources import PipelineSettings
from pipelines.universe import load_universe
from pipelines.warehouse import connect

# The job run on demand (after a manual repair, say) checks every row.
CHECK_EVERYTHING_JOB = "check_warehouse"


def _violations(
    context: AssetCheckExecutionContext,
    settings: PipelineSettings,
    table: str,
    sql: str,
    names: Sequence[str],
    params: dict[str, object] | None = None,
    extra: dict[str, int] | None = None,
) -> AssetCheckResult:
    """Count each rule's violations among the rows the table's last refresh recomputed (every
    row after a full rebuild, and in the check_warehouse job, which is run after repairs):
    older rows were checked when they were written, and checking all history after every
    hourly refresh would cost what the incremental refresh saves (heatmap_matrix's check takes
    5.5 s over one generated year, a hundredth of a second over an hour's rows).

    Within `sql`, `table` names only the rows checked; other tables are whole, so a rule that
    compares with them reads them from $checked_from on (the first bucket checked, BEGINNING
    for every row), bound here wherever `sql` names it; `params` binds the others by name."""
    with connect(settings.warehouse_file()) as conn:
        if not table_exists(conn, table):
            return AssetCheckResult(
                passed=False,
                severity=AssetCheckSeverity.WARN,
                description=f"table {table} does not exist yet: materialize its asset first",
            )
        since = None if _checks_everything(context) else _recomputed_since(conn, table)
        with _only_rows_since(conn, table, since):
            bound = dict(params or {})
            if re.search(r"\$checked_from\b", sql):  # as pipelines.analytics.parameters
                bound["checked_from"] = since or BEGINNING
            rows = conn.execute(sql, bound).fetchall()
    values = rows[0] if rows else (0,) * (len(names) + 1)
    total_rows, counts = int(values[0] or 0), [int(v or 0) for v in values[1:]]
    found = dict(zip(names, counts, strict=True))
    return AssetCheckResult(
        passed=not any(counts),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows_checked": total_rows,
            "checked_from": str(since or "all rows"),
            "violations": MetadataValue.json(found),
            **(extra or {}),
        },
    )


def _checks_everything(context: AssetCheckExecutionContext) -> bool:
    """The check_warehouse job checks every row, and so does a check called by hand (no run)."""
    try:
        return context.run.job_name == CHECK_EVERYTHING_JOB
    except DagsterInvalidPropertyError:
        return True


def _recomputed_since(conn: duckdb.DuckDBPyConnection, table: str) -> datetime | None:
    """The first bucket the table's last refresh wrote; None for all of it."""
    row = one_row(conn, "SELECT recomputed_since FROM derived_state WHERE model = ?", [table])
    return row[0] if row and row[0] > BEGINNING else None


@contextmanager
def _only_rows_since(
    conn: duckdb.DuckDBPyConnection, table: str, since: datetime | None
) -> Iterator[None]:
    """Within the block, `table` names its rows from derived_state.recomputed_since on (a
    temporary view of the same name shadows the stored table, reached by its catalog's name)."""
    if since is None:
        yield
        return
    catalog = '"' + str(one_row(conn, "SELECT current_database()")[0]).replace('"', '""') + '"'
    conn.execute(
        f"CREATE TEMP VIEW {table} AS SELECT * FROM {catalog}.main.{table} WHERE ts >= ("
        f"SELECT recomputed_since FROM {catalog}.main.derived_state WHERE model = '{table}')"
    ).fetchall()
    try:
        yield
    finally:
        conn.execute(f"DROP VIEW temp.{table}").fetchall()


@asset_check(
    asset=AssetKey("heatmap_matrix"),
    description="One row per exchange, metric, period, coin and bucket, with the ratio of the "
    "ls_ratio row of its instrument, and one for every coin and bucket in ls_ratio; "
    "ln_ratio = ln(ratio); no z-score without history.",
)
def heatmap_matrix_cells_consistent(
    context: AssetCheckExecutionContext, settings: PipelineSettings
) -> AssetCheckResult:
    return _violations(
        context,
        settings,
        "heatmap_matrix",
        """
        WITH source AS (
            SELECT exchange, metric, period, coin, instrument, ts, ratio
            FROM ls_ratio
            WHERE ts >= $checked_from
        ),
        -- Joined on the coin, not the instrument: a coin with two instruments has one cell
        -- per bucket, and the other instrument's row there is no fault. (One join: under the
        -- 1 GB memory limit, a second over a year of cells doubled the check's time.)
        paired AS (
            SELECT
                count(*) FILTER (WHERE l.instrument = h.instrument) AS matched,
                count(*) FILTER (WHERE l.instrument = h.instrument
                                   AND l.ratio IS DISTINCT FROM h.ratio) AS wrong_ratio,
                count(*) FILTER (WHERE h.ts IS NULL) AS uncovered
            FROM heatmap_matrix AS h
            FULL JOIN source AS l
                ON l.exchange = h.exchange AND l.metric = h.metric AND l.period = h.period
               AND l.coin = h.coin AND l.ts = h.ts
        )
        SELECT
            count(*),
            count(*) - count(DISTINCT (exchange, metric, period, coin, ts)),
            count(*) FILTER (WHERE ratio <= 0 OR isinf(ratio)),
            count(*) FILTER (WHERE (ratio IS NULL) <> (ln_ratio IS NULL)
                                OR abs(ln_ratio - ln(ratio)) > 1e-12),
            count(*) FILTER (WHERE zscore IS NOT NULL AND zscore_history < 2),
            -- cells without their instrument's row, and cells with another ratio than it
            count(*) - (SELECT matched - wrong_ratio FROM paired),
            (SELECT uncovered FROM paired)
        FROM heatmap_matrix
        """,
        [
            "duplicate_cells",
            "ratio_not_positive_finite",
            "ln_ratio_mismatch",
            "zscore_no_history",
            "cells_unlike_ls_ratio",
            "ls_ratio_buckets_without_cell",
        ],
    )


@asset_check(
    asset=AssetKey("btc_ls"),
    description="One row per exchange, metric, period and bucket: one per BTC cell of "
    "heatmap_matrix, with its ratio; prices positive.",
)
def btc_ls_one_row_per_bucket(
    context: AssetCheckExecutionContext, settings: PipelineSettings
) -> AssetCheckResult:
    return _violations(
        context,
        settings,
        "btc_ls",
        """
        WITH compared AS (
            SELECT b.*, h.ts IS NULL AS sourceless, b.ts IS NULL AS missing,
                   b.ratio IS DISTINCT FROM h.ratio AS copied_wrong
            FROM btc_ls AS b
            FULL JOIN (SELECT * FROM heatmap_matrix WHERE coin = 'BTC' AND ts >= $checked_from) AS h
                ON h.exchange = b.exchange AND h.metric = b.metric AND h.period = b.period
               AND h.ts = b.ts
        )
        SELECT
            count(ts),
            count(ts) - count(DISTINCT (exchange, metric, period, ts)) FILTER (WHERE NOT missing),
            count(*) FILTER (WHERE price_close <= 0),
            count(*) FILTER (WHERE NOT missing AND (sourceless OR copied_wrong)),
            count(*) FILTER (WHERE missing)
        FROM compared
        """,
        [
            "duplicate_buckets",
            "price_not_positive",
            "rows_unlike_heatmap_matrix",
            "btc_cells_without_row",
        ],
    )


@asset_check(
    asset=AssetKey("alt_average"),
    description="One row per bucket where an alt has a ratio in heatmap_matrix, n_coins "
    "counting them (alts: the universe but BTC and the exclusions); a mean and median ratio "
    "wherever there are coins; no bucket twice.",
)
def alt_average_counts_and_means(
    context: AssetCheckExecutionContext, settings: PipelineSettings
) -> AssetCheckResult:
    alts = alt_universe(load_universe())  # the universe the refresh read (LSR_UNIVERSE)
    return _violations(
        context,
        settings,
        "alt_average",
        """
        WITH counted AS (
            SELECT exchange, metric, period, ts, count(*) AS alts_with_ratio
            FROM heatmap_matrix
            WHERE ts >= $checked_from AND list_contains($alts, coin) AND ratio > 0
            GROUP BY ALL
        ),
        paired AS (
            SELECT
                count(*) FILTER (WHERE a.ts IS NOT NULL
                                 AND a.n_coins IS DISTINCT FROM c.alts_with_ratio) AS unlike,
                count(*) FILTER (WHERE a.ts IS NULL) AS uncovered
            FROM alt_average AS a
            FULL JOIN counted AS c
                ON c.exchange = a.exchange AND c.metric = a.metric AND c.period = a.period
               AND c.ts = a.ts
        )
        SELECT
            count(*),
            count(*) FILTER (WHERE n_coins > len($alts) OR n_coins < 1),
            count(*) FILTER (WHERE n_coins > 0
                                AND (alt_mean_ratio IS NULL OR alt_median_ratio IS NULL)),
            count(*) FILTER (WHERE alt_mean_ratio <= 0 OR alt_median_ratio <= 0),
            count(*) - count(DISTINCT (exchange, metric, period, ts)),
            (SELECT unlike FROM paired),
            (SELECT uncovered FROM paired)
        FROM alt_average
        """,
        [
            "n_coins_out_of_range",
            "null_mean_with_coins",
            "ratio_not_positive",
            "duplicates",
            "n_coins_unlike_heatmap_matrix",
            "buckets_without_row",
        ],
        {"alts": alts},
        {"max_alt_coins": len(alts)},
    )


@asset_check(
    asset=AssetKey("signal_zones"),
    description="One row per btc_ls row (series btc) and alt_average row (alt_avg), with its "
    "value; bands ordered (lower <= upper); zone = upper/lower exactly when the value is "
    "beyond a band, NULL without bands; market_wide only when BTC and alts share the zone.",
)
def signal_zones_consistent(
    context: AssetCheckExecutionContext, settings: PipelineSettings
) -> AssetCheckResult:
    return _violations(
        context,
        settings,
        "signal_zones",
        """
        WITH z AS (
            SELECT
                *,
                count(zone) OVER bucket AS zones_in_bucket,
                min(zone) OVER bucket AS min_zone,
                max(zone) OVER bucket AS max_zone
            FROM signal_zones
            WINDOW bucket AS (PARTITION BY exchange, metric, period, ts)
        ),
        sources AS (
            SELECT exchange, metric, period, 'btc' AS series, ts, ratio AS value
            FROM btc_ls
            WHERE ts >= $checked_from
            UNION ALL
            SELECT exchange, metric, period, 'alt_avg', ts, alt_mean_ratio
            FROM alt_average
            WHERE ts >= $checked_from
        ),
        paired AS (
            SELECT
                count(*) FILTER (WHERE z.ts IS NOT NULL AND (s.ts IS NULL
                                 OR z.value IS DISTINCT FROM s.value)) AS unlike,
                count(*) FILTER (WHERE z.ts IS NULL) AS uncovered
            FROM signal_zones AS z
            FULL JOIN sources AS s
                ON s.exchange = z.exchange AND s.metric = z.metric AND s.period = z.period
               AND s.series = z.series AND s.ts = z.ts
        )
        SELECT
            count(*),
            count(*) FILTER (WHERE ln_lower_band > ln_upper_band),
            count(*) FILTER (WHERE (ln_lower_band IS NULL) <> (ln_upper_band IS NULL)),
            count(*) FILTER (WHERE zone IS DISTINCT FROM CASE
                WHEN ln_value > ln_upper_band THEN 'upper'
                WHEN ln_value < ln_lower_band THEN 'lower' END),
            count(*) FILTER (WHERE market_wide IS DISTINCT FROM coalesce(
                zone IS NOT NULL AND zones_in_bucket = 2 AND min_zone = max_zone, false)),
            count(*) FILTER (WHERE series NOT IN ('btc', 'alt_avg')),
            count(*) - count(DISTINCT (exchange, metric, period, series, ts)),
            (SELECT unlike FROM paired),
            (SELECT uncovered FROM paired)
        FROM z
        """,
        [
            "bands_out_of_order",
            "half_a_band",
            "zone_inconsistent_with_bands",
            "market_wide_inconsistent",
            "unknown_series",
            "duplicates",
            "values_unlike_btc_ls_or_alt_average",
            "source_rows_without_row",
        ],
    )


@asset_check(
    asset=AssetKey("divergence"),
    description="Coin rows only on exchanges publishing both top_account and top_position, "
    "whale_crowd rows only on those publishing top_position and global_account; each row's "
    "ratios and z-scores are those stored in heatmap_matrix (signal_zones for btc_vs_alts) for "
    "its bucket, and each such bucket has its row; every pattern follows from its z-scores, "
    "ratios and thresholds; pattern_since and pattern_buckets exactly where there is a pattern, "
    "never after the bucket.",
)
def divergence_patterns_valid(
    context: AssetCheckExecutionContext, settings: PipelineSettings
) -> AssetCheckResult:
    # Compared with its sources, not with itself: the sides are the view's reading of the
    # stored z-scores, so only the stored pattern and copies can disagree with anything.
    return _violations(
        context,
        settings,
        "divergence",
        """
        WITH generic AS (
            SELECT
                *,
                CASE scope WHEN 'coin' THEN account_ratio WHEN 'whale_crowd' THEN whale_ratio
                           ELSE btc_ratio END AS first_ratio,
                CASE scope WHEN 'coin' THEN position_ratio WHEN 'whale_crowd' THEN crowd_ratio
                           ELSE alt_ratio END AS second_ratio,
                CASE scope WHEN 'coin' THEN account_zscore WHEN 'whale_crowd' THEN whale_zscore
                           ELSE btc_zscore END AS first_zscore,
                CASE scope WHEN 'coin' THEN position_zscore WHEN 'whale_crowd' THEN crowd_zscore
                           ELSE alt_zscore END AS second_zscore,
                CASE WHEN scope = 'btc_vs_alts' THEN metric ELSE coin END AS series_key
            FROM divergence
        ),
        -- What each row should hold, read again from where divergence read it: the two
        -- series of each pair side by side per bucket (a bucket with either has a row). The
        -- pivot is divergence.sql's, written out again on purpose: a check that shared the
        -- model's code could not catch its faults.
        kinds AS (
            SELECT
                exchange,
                period,
                coin AS series_key,
                ts,
                max(ratio)  FILTER (WHERE metric = 'top_account')    AS account_ratio,
                max(ratio)  FILTER (WHERE metric = 'top_position')   AS position_ratio,
                max(ratio)  FILTER (WHERE metric = 'global_account') AS crowd_ratio,
                max(zscore) FILTER (WHERE metric = 'top_account')    AS account_zscore,
                max(zscore) FILTER (WHERE metric = 'top_position')   AS position_zscore,
                max(zscore) FILTER (WHERE metric = 'global_account') AS crowd_zscore,
                bool_or(metric IN ('top_account', 'top_position'))   AS has_top,
                bool_or(metric IN ('top_position', 'global_account')) AS has_whale_or_crowd
            FROM heatmap_matrix
            WHERE metric IN ('top_account', 'top_position', 'global_account')
              AND ts >= $checked_from
            GROUP BY ALL
        ),
        expected AS (
            SELECT 'coin' AS scope, exchange, period, series_key, ts,
                   account_ratio AS first_ratio, position_ratio AS second_ratio,
                   account_zscore AS first_zscore, position_zscore AS second_zscore
            FROM kinds
            WHERE has_top AND list_contains($top_pair_exchanges, exchange)
            UNION ALL
            SELECT 'whale_crowd', exchange, period, series_key, ts,
                   position_ratio, crowd_ratio, position_zscore, crowd_zscore
            FROM kinds
            WHERE has_whale_or_crowd AND list_contains($whale_crowd_exchanges, exchange)
            UNION ALL
            SELECT 'btc_vs_alts', exchange, period, metric, ts,
                   max(value) FILTER (WHERE series = 'btc'),
                   max(value) FILTER (WHERE series = 'alt_avg'),
                   max(zscore) FILTER (WHERE series = 'btc'),
                   max(zscore) FILTER (WHERE series = 'alt_avg')
            FROM signal_zones
            WHERE ts >= $checked_from
            GROUP BY ALL
        ),
        compared AS (
            SELECT
                d.*,
                e.ts IS NULL AS sourceless,
                d.ts IS NULL AS missing,
                d.first_ratio IS DISTINCT FROM e.first_ratio
                OR d.second_ratio IS DISTINCT FROM e.second_ratio
                OR d.first_zscore IS DISTINCT FROM e.first_zscore
                OR d.second_zscore IS DISTINCT FROM e.second_zscore AS copied_wrong,
                CASE WHEN d.first_zscore > d.side_zscore_threshold THEN 'long'
                     WHEN d.first_zscore < -d.side_zscore_threshold THEN 'short'
                END AS first_side,
                CASE WHEN d.second_zscore > d.side_zscore_threshold THEN 'long'
                     WHEN d.second_zscore < -d.side_zscore_threshold THEN 'short'
                END AS second_side
            FROM generic AS d
            FULL JOIN expected AS e
                ON e.scope = d.scope AND e.exchange = d.exchange AND e.period = d.period
               AND e.series_key = d.series_key AND e.ts = d.ts
        )
        SELECT
            count(ts),
            count(*) FILTER (WHERE scope = 'coin'
                                AND NOT list_contains($top_pair_exchanges, exchange)),
            count(*) FILTER (WHERE scope = 'whale_crowd'
                                AND NOT list_contains($whale_crowd_exchanges, exchange)),
            count(*) FILTER (WHERE NOT missing AND (sourceless OR copied_wrong)),
            count(*) FILTER (WHERE missing),
            count(*) FILTER (WHERE scope = 'coin' AND pattern IS DISTINCT FROM CASE
                    first_side || '/' || second_side
                    WHEN 'long/short' THEN 'cautious_whale'
                    WHEN 'short/long' THEN 'whale_against_trend'
                    WHEN 'long/long' THEN 'consensus_long'
                    WHEN 'short/short' THEN 'consensus_short' END),
            count(*) FILTER (WHERE scope = 'whale_crowd' AND pattern IS DISTINCT FROM CASE
                    first_side || '/' || second_side
                    WHEN 'long/short' THEN 'whales_long_crowd_short'
                    WHEN 'short/long' THEN 'whales_short_crowd_long'
                    WHEN 'long/long' THEN 'whales_and_crowd_long'
                    WHEN 'short/short' THEN 'whales_and_crowd_short' END),
            count(*) FILTER (WHERE scope = 'btc_vs_alts' AND pattern IS DISTINCT FROM CASE
                    WHEN first_ratio > long_threshold AND second_ratio < short_threshold
                        THEN 'btc_long_alts_short'
                    WHEN first_ratio < short_threshold AND second_ratio > long_threshold
                        THEN 'btc_short_alts_long'
                    WHEN abs(first_zscore - second_zscore) > zscore_threshold
                        THEN 'zscore_divergence' END),
            count(*) FILTER (WHERE scope NOT IN ('coin', 'whale_crowd', 'btc_vs_alts')),
            count(*) FILTER (WHERE NOT missing AND NOT coalesce(CASE scope
                WHEN 'btc_vs_alts' THEN short_threshold <= 1 AND 1 <= long_threshold
                ELSE side_zscore_threshold >= 0 END, false)),
            count(*) FILTER (WHERE (pattern IS NULL) <> (pattern_since IS NULL)
                                OR (pattern IS NULL) <> (pattern_buckets IS NULL)
                                OR pattern_since > ts
                                OR pattern_buckets < 1
                                OR (pattern_buckets = 1) <> (pattern_since = ts))
        FROM compared
        """,
        [
            "coin_rows_on_exchange_without_both_top_kinds",
            "whale_crowd_rows_on_exchange_without_both_kinds",
            "values_unlike_their_sources",
            "source_buckets_without_row",
            "coin_pattern_inconsistent",
            "whale_crowd_pattern_inconsistent",
            "btc_vs_alts_pattern_inconsistent",
            "unknown_scope",
            "thresholds_missing_or_out_of_order",
            "pattern_since_inconsistent",
        ],
        {
            "top_pair_exchanges": top_pair_exchanges(),
            "whale_crowd_exchanges": whale_crowd_exchanges(),
        },
    )


@asset_check(
    asset=AssetKey("whale_crowd_now"),
    description="Exactly divergence's whale_crowd rows of each exchange and period's latest "
    "bucket whose whales lean against their crowd (same pattern and run), one per coin; an "
    "exchange and period whose latest bucket is over two days older than divergence's newest "
    "has none.",
)
def whale_crowd_now_matches_divergence(
    context: AssetCheckExecutionContext, settings: PipelineSettings
) -> AssetCheckResult:
    return _violations(
        context,
        settings,
        "whale_crowd_now",
        """
        WITH whale_crowd AS (
            SELECT * FROM divergence
            WHERE scope = 'whale_crowd' AND ts >= (SELECT max(ts) FROM divergence) - INTERVAL 2 DAY
        ),
        against_now AS (
            SELECT w.*
            FROM whale_crowd AS w
            WHERE w.pattern IN ('whales_long_crowd_short', 'whales_short_crowd_long')
              AND w.ts = (SELECT max(ts) FROM whale_crowd AS l
                          WHERE l.exchange = w.exchange AND l.period = w.period)
        )
        SELECT
            (SELECT count(*) FROM whale_crowd_now),
            (SELECT count(*) - count(DISTINCT (exchange, period, coin)) FROM whale_crowd_now),
            (SELECT count(*) FROM whale_crowd_now AS n ANTI JOIN against_now AS a
                USING (exchange, period, coin, ts, pattern, pattern_since, pattern_buckets)),
            (SELECT count(*) FROM against_now AS a ANTI JOIN whale_crowd_now AS n
                USING (exchange, period, coin, ts))
        """,
        ["duplicates", "rows_unlike_divergence_latest_against", "against_rows_missing"],
    )


@asset_check(
    asset=AssetKey("cross_exchange"),
    description="One row per coin, metric, period and bucket of heatmap_matrix, counting its "
    "exchanges with a ratio and with a z-score; n_exchanges at most the number of exchanges "
    "publishing the metric; OI and z-score counts within n_exchanges; a weighted mean exactly "
    "where OI is known.",
)
def cross_exchange_counts_valid(
    context: AssetCheckExecutionContext, settings: PipelineSettings
) -> AssetCheckResult:
    publishers = metric_publishers()
    return _violations(
        context,
        settings,
        "cross_exchange",
        """
        WITH publishers AS (
            SELECT unnest($metrics::VARCHAR[]) AS metric,
                   unnest($publishers::INTEGER[]) AS n_publishers
        ),
        counted AS (  -- what heatmap_matrix holds per coin, metric, period and bucket
            SELECT coin, metric, period, ts, count(ln_ratio) AS ratios, count(zscore) AS zscores
            FROM heatmap_matrix
            WHERE ts >= $checked_from
            GROUP BY ALL
        ),
        paired AS (
            SELECT
                count(*) FILTER (WHERE c.ts IS NOT NULL AND (h.ts IS NULL
                                 OR c.n_exchanges IS DISTINCT FROM h.ratios
                                 OR c.n_exchanges_zscore IS DISTINCT FROM h.zscores)) AS unlike,
                count(*) FILTER (WHERE c.ts IS NULL) AS uncovered
            FROM cross_exchange AS c
            FULL JOIN counted AS h
                ON h.coin = c.coin AND h.metric = c.metric AND h.period = c.period
               AND h.ts = c.ts
        )
        SELECT
            count(*),
            count(*) FILTER (WHERE n_exchanges > coalesce(p.n_publishers, 0)),
            count(*) FILTER (WHERE n_exchanges_with_oi > n_exchanges
                                OR n_exchanges_zscore > n_exchanges),
            count(*) FILTER (WHERE (n_exchanges_with_oi > 0) <> (oi_weighted_ln_ratio IS NOT NULL)),
            count(*) FILTER (WHERE (n_exchanges_zscore > 0) <> (mean_zscore IS NOT NULL)),
            (SELECT unlike FROM paired),
            (SELECT uncovered FROM paired)
        FROM cross_exchange AS c
        LEFT JOIN publishers AS p USING (metric)
        """,
        [
            "more_exchanges_than_publish_the_metric",
            "sub_counts_above_n_exchanges",
            "oi_mean_inconsistent",
            "zscore_mean_inconsistent",
            "counts_unlike_heatmap_matrix",
            "heatmap_buckets_without_row",
        ],
        {"metrics": list(publishers), "publishers": [len(v) for v in publishers.values()]},
    )


@asset_check(
    asset=AssetKey("candle_flow"),
    description="One row per candle in klines (5m ones only with taker volume), with its "
    "volume and, by the taker method, its taker buy share; buy_share within 0..1 and "
    "buy + sell = 1 where estimated; a method exactly where there is an estimate; "
    "flow_ratio = buy / sell.",
)
def candle_flow_shares_valid(
    context: AssetCheckExecutionContext, settings: PipelineSettings
) -> AssetCheckResult:
    return _violations(
        context,
        settings,
        "candle_flow",
        """
        WITH candles AS (  -- those with a row: a 5m candle has one only with taker volume
            SELECT exchange, coin, instrument, period, ts, volume, taker_buy_volume
            FROM klines
            WHERE ts >= $checked_from AND (period <> '5m' OR taker_buy_volume IS NOT NULL)
        ),
        -- Joined on the coin: a coin with two instruments has one row per candle, and the
        -- other instrument's candle there is no fault.
        paired AS (
            SELECT
                count(*) FILTER (WHERE k.instrument = f.instrument) AS matched,
                count(*) FILTER (WHERE k.instrument = f.instrument AND (
                    f.volume IS DISTINCT FROM k.volume
                    OR f.method = 'taker'
                       AND abs(f.buy_share - k.taker_buy_volume / k.volume) > 1e-12
                )) AS unlike,
                count(*) FILTER (WHERE f.ts IS NULL) AS uncovered
            FROM candle_flow AS f
            FULL JOIN candles AS k
                ON k.exchange = f.exchange AND k.coin = f.coin AND k.period = f.period
               AND k.ts = f.ts
        )
        SELECT
            count(*),
            count(*) FILTER (WHERE buy_share < 0 OR buy_share > 1),
            count(*) FILTER (WHERE abs(buy_share + sell_share - 1) > 1e-12),
            count(*) FILTER (WHERE (method IS NULL) <> (buy_share IS NULL)
                                OR method NOT IN ('taker', 'up_candles')),
            count(*) FILTER (WHERE abs(flow_ratio - buy_share / sell_share) > 1e-9 * flow_ratio
                                OR flow_ratio <= 0 OR isinf(flow_ratio)),
            count(*) - count(DISTINCT (exchange, coin, period, ts)),
            -- rows without their instrument's candle, and rows unlike it
            count(*) - (SELECT matched - unlike FROM paired),
            (SELECT uncovered FROM paired)
        FROM candle_flow
        """,
        [
            "buy_share_out_of_range",
            "shares_do_not_sum_to_1",
            "method_inconsistent",
            "flow_ratio_inconsistent",
            "duplicates",
            "rows_unlike_klines",
            "candles_without_row",
        ],
    )


ANALYTICS_CHECKS = [
    heatmap_matrix_cells_consistent,
    btc_ls_one_row_per_bucket,
    alt_average_counts_and_means,
    signal_zones_consistent,
    divergence_patterns_valid,
    whale_crowd_now_matches_divergence,
    cross_exchange_counts_valid,
    candle_flow_shares_valid,
]
