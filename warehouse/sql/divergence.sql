-- divergence: where two readings of the crowd disagree (or agree) strongly, and since when.
-- Three scopes in one view (over one stored table), told apart by `scope`.
--
-- Sides (scopes coin and whale_crowd) come from where each series stands against its OWN
-- trailing history: the z-score of ln(ratio) in heatmap_matrix (same exchange, metric, period
-- and coin; the bucket itself excluded; $lookback_days and $min_history apply), with
-- k = side_zscore_threshold = $divergence_side_zscore:
--   long    when zscore > +k   (leaning long for this series: more long than it usually is)
--   short   when zscore < -k
--   neutral in between (bounds included), NULL without a z-score (no row of that kind, ratio
--           NULL, fewer than min_history earlier observations, or a history without spread).
-- Why not also a band around 1 (a side needing both: beyond its history AND on that side of 1)?
-- Each venue's populations sit at levels of their own: Binance's crowd is net long most alts
-- for months at ratios of 2 to 3, and some top-trader series sit below 1 as long. Read against 1,
-- such a series is "long" (or "short") in every bucket, so its patterns name the venue, not a
-- change in positioning. Requiring both sides of the test would bring that back: a crowd that
-- usually sits at 2.5 and drops to 1.3 (z far below -k) could never read short, and whales
-- usually at 0.6 who move to 0.95 could never read long, which are exactly the moves this table
-- is for. The ratios stay in every row, so a reader who also wants the level can filter on them.
--
-- scope = 'coin' (metric 'top_account/top_position'): per exchange that publishes both
-- top_account and top_position for the same population of top traders ($top_pair_exchanges,
-- from the connectors' METRICS), per coin, period and bucket: pattern = cautious_whale (accounts
-- long, positions short), whale_against_trend (accounts short, positions long), consensus_long
-- (both long), consensus_short (both short), else NULL.
--
-- scope = 'whale_crowd' (metric 'top_position/global_account'): per exchange that publishes
-- both top_position (the whales: top traders by position size) and global_account (the crowd:
-- all accounts) ($whale_crowd_exchanges, from the connectors' METRICS), per coin, period and
-- bucket: whale_side from top_position's z-score, crowd_side from global_account's (same rule),
-- pattern = whales_long_crowd_short, whales_short_crowd_long (they lean against each other),
-- whales_and_crowd_long, whales_and_crowd_short (they agree at an extreme), else NULL.
--
-- In both, a bucket where only one of the two kinds is stored keeps its row with pattern NULL.
--
-- scope = 'btc_vs_alts': per exchange, metric, period and bucket, BTC's ratio against the
-- altcoin geometric mean (both from signal_zones, so the same values the zones use). The
-- "regime shift" signal, still read against the fixed band around 1:
--   btc_long_alts_short when btc_ratio > long_threshold = 1 + $divergence_margin
--                       and alt_ratio < short_threshold = 1 / (1 + $divergence_margin),
--   btc_short_alts_long the other way round,
--   else zscore_divergence when |btc_zscore - alt_zscore| > zscore_threshold
--   ($divergence_zscore_gap; each z-score against its own trailing history, see
--   signal_zones.zscore), else NULL.
--
-- Since when (every scope): pattern_since = the first bucket of the current unbroken run of the
-- same non-NULL pattern in that series (scope, exchange, metric, period, coin) up to this
-- bucket, pattern_buckets = the buckets in that run so far. A bucket with another pattern or a
-- NULL pattern ends a run, and so does a missing bucket: the run continues only when the
-- series' previous row is the bucket exactly one period earlier ($period_seconds). A hole is a
-- stretch nobody saw, so the run cannot be vouched for across it; pattern_since then says "at
-- least since". Both are NULL where pattern is NULL.
--
-- Columns that belong to another scope are NULL: account_/position_ columns outside coin,
-- whale_/crowd_ columns outside whale_crowd, btc_/alt_ columns, long_/short_threshold and
-- zscore_threshold outside btc_vs_alts, side_zscore_threshold in btc_vs_alts and coin in
-- btc_vs_alts.
--
-- Stored: divergence_rows, a row per series and bucket with only what is not cheap to derive: keys,
-- the two series compared (first = account, whale or BTC; second = position, crowd or alt
-- average), the thresholds the row was computed with, the pattern and its run. `divergence` is a
-- view over it that spreads the pair into the named columns of each scope and adds the sides and
-- zscore_gap. Copying a generated year's rows in time order took 5.4 s for the 30 named columns,
-- 3.3 to 3.5 s for these 17, and a reader's filters on the keys reach the stored table through
-- the view.
CREATE OR REPLACE TEMP MACRO side_of(z, k) AS
    CASE WHEN z > k THEN 'long' WHEN z < -k THEN 'short' WHEN z IS NOT NULL THEN 'neutral' END;

-- The patterned rows are a temp table: the runs' windows over a stored table cost less than at
-- the end of the joins that build them (measured: 10% less CPU for a year's rebuild).
CREATE OR REPLACE TEMP TABLE divergence_patterned AS
WITH limits AS (
    SELECT
        1 + CAST($divergence_margin AS DOUBLE)       AS long_threshold,
        1 / (1 + CAST($divergence_margin AS DOUBLE)) AS short_threshold,
        CAST($divergence_zscore_gap AS DOUBLE)      AS zscore_threshold,
        CAST($divergence_side_zscore AS DOUBLE)     AS side_zscore_threshold
),
-- One pass over heatmap_matrix for both coin-level scopes: the three kinds side by side per
-- (exchange, period, coin, bucket). A scope takes a bucket where one of its two kinds has a row
-- (a row with a NULL ratio counts: the bucket is kept with pattern NULL).
kinds AS (
    SELECT
        exchange,
        period,
        coin,
        ts,
        max(ratio)  FILTER (WHERE metric = 'top_account')    AS account_ratio,
        max(ratio)  FILTER (WHERE metric = 'top_position')   AS position_ratio,
        max(ratio)  FILTER (WHERE metric = 'global_account') AS crowd_ratio,
        max(zscore) FILTER (WHERE metric = 'top_account')    AS account_zscore,
        max(zscore) FILTER (WHERE metric = 'top_position')   AS position_zscore,
        max(zscore) FILTER (WHERE metric = 'global_account') AS crowd_zscore,
        bool_or(metric IN ('top_account', 'top_position'))   AS has_top,
        bool_or(metric IN ('top_position', 'global_account')) AS has_whale_or_crowd
    FROM heatmap_matrix AS h
    SEMI JOIN refresh_window AS w
        ON w.exchange = h.exchange
       AND w.period = h.period
       AND h.ts >= w.since
    WHERE metric IN ('top_account', 'top_position', 'global_account')
      AND ts >= (SELECT min(since) FROM refresh_window)
      AND (
          list_contains($top_pair_exchanges, exchange)
          OR list_contains($whale_crowd_exchanges, exchange)
      )
    GROUP BY exchange, period, coin, ts
),
-- The two coin-level scopes: the same pair of columns, told apart by scope.
pairs AS (
    SELECT
        'coin' AS scope,
        exchange,
        'top_account/top_position' AS metric,
        period,
        coin,
        ts,
        account_ratio   AS first_ratio,
        position_ratio  AS second_ratio,
        account_zscore  AS first_zscore,
        position_zscore AS second_zscore
    FROM kinds
    WHERE has_top AND list_contains($top_pair_exchanges, exchange)
    UNION ALL
    SELECT
        'whale_crowd' AS scope,
        exchange,
        'top_position/global_account' AS metric,
        period,
        coin,
        ts,
        position_ratio  AS first_ratio,
        crowd_ratio     AS second_ratio,
        position_zscore AS first_zscore,
        crowd_zscore    AS second_zscore
    FROM kinds
    WHERE has_whale_or_crowd AND list_contains($whale_crowd_exchanges, exchange)
),
sided AS (
    SELECT
        p.*,
        l.side_zscore_threshold,
        side_of(p.first_zscore, l.side_zscore_threshold) || '/'
            || side_of(p.second_zscore, l.side_zscore_threshold) AS sides
    FROM pairs AS p
    CROSS JOIN limits AS l
),
btc_alts AS (
    SELECT
        exchange,
        metric,
        period,
        ts,
        max(value)  FILTER (WHERE series = 'btc')     AS btc_ratio,
        max(value)  FILTER (WHERE series = 'alt_avg') AS alt_ratio,
        max(zscore) FILTER (WHERE series = 'btc')     AS btc_zscore,
        max(zscore) FILTER (WHERE series = 'alt_avg') AS alt_zscore
    FROM signal_zones AS z
    SEMI JOIN refresh_window AS w
        ON w.exchange = z.exchange
       AND w.period = z.period
       AND z.ts >= w.since
    WHERE ts >= (SELECT min(since) FROM refresh_window)
    GROUP BY exchange, metric, period, ts
),
patterned AS (
    SELECT
        scope,
        exchange,
        metric,
        period,
        coin,
        ts,
        first_ratio,
        second_ratio,
        first_zscore,
        second_zscore,
        side_zscore_threshold,
        CASE scope || ':' || sides  -- a NULL side makes sides NULL: no pattern
            WHEN 'coin:long/short'         THEN 'cautious_whale'
            WHEN 'coin:short/long'         THEN 'whale_against_trend'
            WHEN 'coin:long/long'          THEN 'consensus_long'
            WHEN 'coin:short/short'        THEN 'consensus_short'
            WHEN 'whale_crowd:long/short'  THEN 'whales_long_crowd_short'
            WHEN 'whale_crowd:short/long'  THEN 'whales_short_crowd_long'
            WHEN 'whale_crowd:long/long'   THEN 'whales_and_crowd_long'
            WHEN 'whale_crowd:short/short' THEN 'whales_and_crowd_short'
        END AS pattern
    FROM sided
    UNION ALL BY NAME
    SELECT
        'btc_vs_alts' AS scope,
        b.exchange,
        b.metric,
        b.period,
        CAST(NULL AS VARCHAR) AS coin,
        b.ts,
        b.btc_ratio  AS first_ratio,
        b.alt_ratio  AS second_ratio,
        b.btc_zscore AS first_zscore,
        b.alt_zscore AS second_zscore,
        l.long_threshold,
        l.short_threshold,
        l.zscore_threshold,
        CASE
            WHEN b.btc_ratio > l.long_threshold AND b.alt_ratio < l.short_threshold
                THEN 'btc_long_alts_short'
            WHEN b.btc_ratio < l.short_threshold AND b.alt_ratio > l.long_threshold
                THEN 'btc_short_alts_long'
            WHEN abs(b.btc_zscore - b.alt_zscore) > l.zscore_threshold
                THEN 'zscore_divergence'
        END AS pattern
    FROM btc_alts AS b
    CROSS JOIN limits AS l
)
SELECT * FROM patterned;

CREATE OR REPLACE TABLE divergence_rows AS
WITH periods AS (
    SELECT unnest($period_seconds, recursive := true)
),
-- Gaps and islands over the rows with a pattern only (a NULL pattern ends a run anyway: with
-- it in between, the previous patterned row is more than one period back). A row starts a run
-- unless the series' previous patterned row is the bucket one period before, same pattern.
-- The windows see only a number per series, the bucket and the pattern, and their result is
-- joined back on the row's rowid: partitioned by the five text columns, with every column in
-- tow, they cost 2.7 times the CPU (1.31 against 0.48 CPU-s for Binance's year).
patterned AS (
    SELECT rowid AS row_id, scope, exchange, metric, period, coin, ts, pattern
    FROM divergence_patterned
    WHERE pattern IS NOT NULL
),
series AS (
    SELECT *, row_number() OVER () AS sid
    FROM (SELECT DISTINCT scope, exchange, metric, period, coin FROM patterned)
),
stepped AS (
    SELECT
        p.row_id,
        i.sid,
        p.ts,
        coalesce(
            p.pattern = lag(p.pattern) OVER in_series
            AND lag(p.ts) OVER in_series >= p.ts - to_seconds(s.seconds),
            false
        ) AS continues,
        row_number() OVER in_series AS n
    FROM patterned AS p
    JOIN series AS i
        ON i.scope = p.scope
       AND i.exchange = p.exchange
       AND i.metric = p.metric
       AND i.period = p.period
       AND i.coin IS NOT DISTINCT FROM p.coin
    LEFT JOIN periods AS s
        ON s.period = p.period
    WINDOW in_series AS (PARTITION BY i.sid ORDER BY p.ts)
),
runs AS (
    SELECT
        row_id,
        max(CASE WHEN NOT continues THEN ts END) OVER upto AS pattern_since,
        (n - max(CASE WHEN NOT continues THEN n END) OVER upto + 1)::INTEGER AS pattern_buckets
    FROM stepped
    WINDOW upto AS (PARTITION BY sid ORDER BY ts ROWS UNBOUNDED PRECEDING)
),
dated AS (
    SELECT d.*, r.pattern_since, r.pattern_buckets
    FROM divergence_patterned AS d
    LEFT JOIN runs AS r
        ON r.row_id = d.rowid
)
SELECT
    scope,
    exchange,
    metric,
    period,
    coin,
    ts,
    first_ratio,
    second_ratio,
    first_zscore,
    second_zscore,
    long_threshold,
    short_threshold,
    zscore_threshold,
    side_zscore_threshold,
    pattern,
    pattern_since,
    pattern_buckets
FROM dated
ORDER BY ts;

-- A run that reaches into the recomputed buckets from before them: the rows above counted it
-- from the first recomputed bucket; where the series' first patterned row there is exactly one
-- period after its last stored row before them, with the same pattern, the run goes on from
-- that row's pattern_since (a full rebuild has no row before, so nothing to join).
UPDATE divergence_rows AS d
SET pattern_since = before.pattern_since,
    pattern_buckets = d.pattern_buckets + before.pattern_buckets
FROM (
    SELECT
        first.scope,
        first.exchange,
        first.metric,
        first.period,
        first.coin,
        first.ts AS first_ts,
        b.pattern,
        b.pattern_since,
        b.pattern_buckets
    FROM (
        SELECT d.scope, d.exchange, d.metric, d.period, d.coin, min(d.ts) AS ts, w.since
        FROM divergence_rows AS d
        JOIN refresh_window AS w
            ON w.exchange = d.exchange
           AND w.period = d.period
           AND d.ts >= w.since
        WHERE d.pattern IS NOT NULL
          AND d.ts >= (SELECT min(since) FROM refresh_window)
        GROUP BY ALL
    ) AS first
    JOIN (SELECT unnest($period_seconds, recursive := true)) AS s
        ON s.period = first.period
    JOIN divergence_rows AS b
        ON b.scope = first.scope
       AND b.exchange = first.exchange
       AND b.metric = first.metric
       AND b.period = first.period
       AND b.coin IS NOT DISTINCT FROM first.coin
       AND b.ts = first.ts - to_seconds(s.seconds)
       AND b.ts < first.since
    WHERE b.ts >= (SELECT min(since) FROM refresh_window) - INTERVAL 1 DAY
) AS before
WHERE d.scope = before.scope
  AND d.exchange = before.exchange
  AND d.metric = before.metric
  AND d.period = before.period
  AND d.coin IS NOT DISTINCT FROM before.coin
  AND d.pattern = before.pattern
  AND d.pattern_since = before.first_ts
  AND d.ts >= before.first_ts;

DROP TABLE divergence_patterned;

-- What readers see: the stored pair spread into each scope's named columns, the sides (same rule
-- as the pattern's, side_of above) and the gap. Its filters on the keys reach divergence_rows.
CREATE OR REPLACE VIEW divergence AS
WITH sided AS (
    SELECT
        *,
        CASE
            WHEN side_zscore_threshold IS NULL THEN NULL
            WHEN first_zscore > side_zscore_threshold THEN 'long'
            WHEN first_zscore < -side_zscore_threshold THEN 'short'
            WHEN first_zscore IS NOT NULL THEN 'neutral'
        END AS first_side,
        CASE
            WHEN side_zscore_threshold IS NULL THEN NULL
            WHEN second_zscore > side_zscore_threshold THEN 'long'
            WHEN second_zscore < -side_zscore_threshold THEN 'short'
            WHEN second_zscore IS NOT NULL THEN 'neutral'
        END AS second_side
    FROM divergence_rows
)
SELECT
    scope,
    exchange,
    metric,
    period,
    coin,
    ts,
    CASE WHEN scope = 'coin' THEN first_ratio END         AS account_ratio,
    CASE WHEN scope = 'coin' THEN second_ratio END        AS position_ratio,
    CASE WHEN scope = 'coin' THEN first_zscore END        AS account_zscore,
    CASE WHEN scope = 'coin' THEN second_zscore END       AS position_zscore,
    CASE WHEN scope = 'coin' THEN first_side END          AS account_side,
    CASE WHEN scope = 'coin' THEN second_side END         AS position_side,
    CASE WHEN scope = 'whale_crowd' THEN first_ratio END  AS whale_ratio,
    CASE WHEN scope = 'whale_crowd' THEN second_ratio END AS crowd_ratio,
    CASE WHEN scope = 'whale_crowd' THEN first_zscore END AS whale_zscore,
    CASE WHEN scope = 'whale_crowd' THEN second_zscore END AS crowd_zscore,
    CASE WHEN scope = 'whale_crowd' THEN first_side END   AS whale_side,
    CASE WHEN scope = 'whale_crowd' THEN second_side END  AS crowd_side,
    CASE WHEN scope = 'btc_vs_alts' THEN first_ratio END  AS btc_ratio,
    CASE WHEN scope = 'btc_vs_alts' THEN second_ratio END AS alt_ratio,
    CASE WHEN scope = 'btc_vs_alts' THEN first_zscore END AS btc_zscore,
    CASE WHEN scope = 'btc_vs_alts' THEN second_zscore END AS alt_zscore,
    CASE WHEN scope = 'btc_vs_alts' THEN first_zscore - second_zscore END AS zscore_gap,
    long_threshold,
    short_threshold,
    zscore_threshold,
    side_zscore_threshold,
    pattern,
    pattern_since,
    pattern_buckets
FROM sided;

COMMENT ON VIEW divergence IS 'Positioning divergence, each side read against its own series'' trailing z-score, with since when each pattern holds. scope coin: top_account vs top_position per coin on exchanges publishing both (cautious_whale, whale_against_trend, consensus_long, consensus_short). scope whale_crowd: top_position (whales) vs global_account (crowd) per coin on exchanges publishing both (whales_long_crowd_short, whales_short_crowd_long, whales_and_crowd_long, whales_and_crowd_short). scope btc_vs_alts: BTC vs the altcoin geometric mean per metric (btc_long_alts_short, btc_short_alts_long, zscore_divergence). A view over divergence_rows (stored in time order).';
COMMENT ON COLUMN divergence.scope IS 'coin or whale_crowd (key: exchange, period, coin, ts) or btc_vs_alts (key: exchange, metric, period, ts; coin NULL)';
COMMENT ON COLUMN divergence.metric IS 'btc_vs_alts: the metric kind compared. coin: always top_account/top_position. whale_crowd: always top_position/global_account';
COMMENT ON COLUMN divergence.account_ratio IS 'coin scope: the coin''s top_account ratio (top traders by count)';
COMMENT ON COLUMN divergence.position_ratio IS 'coin scope: the coin''s top_position ratio (top traders by position size)';
COMMENT ON COLUMN divergence.account_zscore IS 'coin scope: heatmap_matrix.zscore of the top_account series (ln ratio against its own trailing history)';
COMMENT ON COLUMN divergence.position_zscore IS 'coin scope: heatmap_matrix.zscore of the top_position series';
COMMENT ON COLUMN divergence.account_side IS 'coin scope: long (account_zscore > side_zscore_threshold: more long than this series usually is), short (< -side_zscore_threshold), neutral in between, NULL without a z-score';
COMMENT ON COLUMN divergence.position_side IS 'coin scope: same as account_side for position_zscore';
COMMENT ON COLUMN divergence.whale_ratio IS 'whale_crowd scope: the coin''s top_position ratio (whales: top traders by position size)';
COMMENT ON COLUMN divergence.crowd_ratio IS 'whale_crowd scope: the coin''s global_account ratio (the crowd: all accounts, by count)';
COMMENT ON COLUMN divergence.whale_zscore IS 'whale_crowd scope: heatmap_matrix.zscore of the top_position series';
COMMENT ON COLUMN divergence.crowd_zscore IS 'whale_crowd scope: heatmap_matrix.zscore of the global_account series';
COMMENT ON COLUMN divergence.whale_side IS 'whale_crowd scope: long (whale_zscore > side_zscore_threshold), short (< -side_zscore_threshold), neutral in between, NULL without a z-score';
COMMENT ON COLUMN divergence.crowd_side IS 'whale_crowd scope: same as whale_side for crowd_zscore';
COMMENT ON COLUMN divergence.btc_ratio IS 'btc_vs_alts: BTC''s ratio (signal_zones series btc)';
COMMENT ON COLUMN divergence.alt_ratio IS 'btc_vs_alts: altcoin geometric-mean ratio (signal_zones series alt_avg)';
COMMENT ON COLUMN divergence.btc_zscore IS 'btc_vs_alts: z-score of ln(btc_ratio) against its trailing history (signal_zones.zscore)';
COMMENT ON COLUMN divergence.alt_zscore IS 'btc_vs_alts: z-score of ln(alt_ratio) against its trailing history (signal_zones.zscore)';
COMMENT ON COLUMN divergence.zscore_gap IS 'btc_vs_alts: btc_zscore - alt_zscore';
COMMENT ON COLUMN divergence.long_threshold IS 'btc_vs_alts: 1 + divergence_margin (default 1.05): a ratio above it reads long';
COMMENT ON COLUMN divergence.short_threshold IS 'btc_vs_alts: 1 / (1 + divergence_margin) (default 0.952): a ratio below it reads short';
COMMENT ON COLUMN divergence.zscore_threshold IS 'btc_vs_alts: |zscore_gap| above it is a zscore_divergence (default 2.0)';
COMMENT ON COLUMN divergence.side_zscore_threshold IS 'coin and whale_crowd: divergence_side_zscore (default 1.0): a z-score above it reads long, below minus it short';
COMMENT ON COLUMN divergence.pattern IS 'coin: cautious_whale, whale_against_trend, consensus_long, consensus_short or NULL. whale_crowd: whales_long_crowd_short, whales_short_crowd_long, whales_and_crowd_long, whales_and_crowd_short or NULL. btc_vs_alts: btc_long_alts_short, btc_short_alts_long, zscore_divergence or NULL';
COMMENT ON COLUMN divergence.pattern_since IS 'First bucket of the current unbroken run of this pattern in the series (same scope, exchange, metric, period, coin); a bucket with another or no pattern, or a missing bucket, ends a run; NULL where pattern is NULL';
COMMENT ON COLUMN divergence.pattern_buckets IS 'Buckets in that run up to and including this one (1 = the pattern is new); NULL where pattern is NULL';
COMMENT ON TABLE divergence_rows IS 'What the divergence view is computed from: per scope, exchange, metric, period, coin and bucket the two series compared, the thresholds, the pattern and its run. Read the divergence view, which names the columns per scope.';
COMMENT ON COLUMN divergence_rows.first_ratio IS 'coin: top_account ratio; whale_crowd: top_position ratio (whales); btc_vs_alts: BTC''s ratio';
COMMENT ON COLUMN divergence_rows.second_ratio IS 'coin: top_position ratio; whale_crowd: global_account ratio (crowd); btc_vs_alts: the altcoin geometric mean';
COMMENT ON COLUMN divergence_rows.first_zscore IS 'The z-score of first_ratio''s ln against its own trailing history (heatmap_matrix.zscore, signal_zones.zscore for btc_vs_alts)';
COMMENT ON COLUMN divergence_rows.second_zscore IS 'The z-score of second_ratio''s ln against its own trailing history';
