-- heatmap_matrix: one row per (exchange, metric, period, coin, bucket) with the ratio, ln(ratio)
-- and a z-score of ln(ratio) against the coin's own trailing history on that venue: venues and
-- coins have different baselines, so raw ratios are not comparable across rows, z-scores are.
--
-- History = the same series' non-NULL ln(ratio) with ts - $lookback_days days <= t < ts (the
-- bucket itself excluded). zscore = (ln_ratio - mean) / sd (sample sd), NULL with fewer than
-- $min_history earlier observations or no spread.
--
-- How (speed: this is the one pass over the whole ls_ratio table). A RANGE window with three
-- aggregates costs ~4x a single sort, so instead:
--   1. each series (exchange, metric, period, coin) gets a small integer id: sorting and joining
--      on one BIGINT is several times cheaper than on four VARCHARs;
--   2. one window pass gives running totals n, sum(x), sum(x^2) up to and including each row;
--   3. an ASOF join finds, per row, the last row before its window start (t' < t - lookback);
--      window totals = totals before the current row - totals at that row.
--   mean = S / n, M2 = SS - S^2 / n, sd = sqrt(M2 / (n - 1)). The subtraction of running totals
--   leaves rounding noise of about 1e-16 x the running sum of squares, so "no spread" is
--   M2 <= 1e-11 x (1 + running SS): exactly constant histories give NULL, not a huge z-score.
--   tests/test_analytics.py checks the result against numpy on gappy series.
--
-- One coin, one row: ls_ratio is keyed by instrument, and an exchange can hold two instruments
-- for one coin (PEPEUSDT beside 1000PEPEUSDT, or a renamed contract). Where that happens the
-- instrument marked in_universe wins, then the first by name; series with a single instrument
-- (nearly all) skip the de-duplication. btc_ls, alt_average, divergence and cross_exchange read
-- this table, so they all see the same instrument per coin.
CREATE OR REPLACE TABLE heatmap_matrix AS
WITH keys AS (
    SELECT exchange, metric, period, coin, instrument
    FROM ls_ratio
    GROUP BY exchange, metric, period, coin, instrument
),
ranked AS (
    SELECT
        k.*,
        dense_rank() OVER (ORDER BY k.exchange, k.metric, k.period, k.coin) AS sid,
        row_number() OVER (
            PARTITION BY k.exchange, k.metric, k.period, k.coin
            ORDER BY coalesce(i.in_universe, false) DESC, k.instrument
        ) AS rank,
        count(*) OVER (PARTITION BY k.exchange, k.metric, k.period, k.coin) AS n_instruments
    FROM keys AS k
    LEFT JOIN instruments AS i
        ON i.exchange = k.exchange
       AND i.instrument = k.instrument
),
tagged AS (
    SELECT r.sid, r.rank, r.n_instruments, epoch_us(l.ts) AS t, l.ratio
    FROM ls_ratio AS l
    JOIN ranked AS r
        ON r.exchange = l.exchange
       AND r.metric = l.metric
       AND r.period = l.period
       AND r.coin = l.coin
       AND r.instrument = l.instrument
),
cells AS (
    SELECT sid, rank, t, ratio FROM tagged WHERE n_instruments = 1
    UNION ALL
    SELECT sid, rank, t, ratio
    FROM tagged
    WHERE n_instruments > 1
    QUALIFY row_number() OVER (PARTITION BY sid, t ORDER BY rank) = 1
),
running AS (
    SELECT
        sid,
        rank,
        t,
        ratio,
        x,
        count(x) OVER upto                AS n_incl,
        coalesce(sum(x) OVER upto, 0)     AS s_incl,
        coalesce(sum(x * x) OVER upto, 0) AS ss_incl
    FROM (SELECT *, CASE WHEN ratio > 0 THEN ln(ratio) END AS x FROM cells)
    WINDOW upto AS (PARTITION BY sid ORDER BY t ROWS UNBOUNDED PRECEDING)
),
windowed AS (
    SELECT
        cur.sid,
        cur.rank,
        cur.t,
        cur.ratio,
        cur.x,
        cur.ss_incl,
        cur.n_incl - (cur.x IS NOT NULL)::BIGINT - coalesce(before.n_incl, 0) AS n,
        cur.s_incl - coalesce(cur.x, 0) - coalesce(before.s_incl, 0) AS s,
        cur.ss_incl - coalesce(cur.x * cur.x, 0) - coalesce(before.ss_incl, 0) AS ss
    FROM running AS cur
    ASOF LEFT JOIN running AS before
        ON before.sid = cur.sid
       AND before.t < cur.t - CAST($lookback_days AS BIGINT) * 86400000000
),
scored AS (
    SELECT
        *,
        CASE WHEN n >= 2 THEN ss - s * s / n END AS m2
    FROM windowed
)
SELECT
    r.exchange,
    r.metric,
    r.period,
    r.coin,
    make_timestamp(c.t) AS ts,
    c.ratio,
    c.x AS ln_ratio,
    CASE
        WHEN c.n >= $min_history AND c.m2 > 1e-11 * (1 + c.ss_incl)
        THEN (c.x - c.s / c.n) / sqrt(c.m2 / (c.n - 1))
    END AS zscore,
    c.n::INTEGER AS zscore_history,
    r.instrument
FROM scored AS c
JOIN ranked AS r
    ON r.sid = c.sid
   AND r.rank = c.rank;

COMMENT ON TABLE heatmap_matrix IS 'Coin x time heatmap cells per exchange, metric and period: one row per coin and bucket in ls_ratio (one instrument per coin: the in-universe one where an exchange holds two). Not stored in any order: filter by exchange, metric, period.';
COMMENT ON COLUMN heatmap_matrix.ratio IS 'The coin''s long/short ratio in the bucket (ls_ratio.ratio); NULL when undefined (zero short share)';
COMMENT ON COLUMN heatmap_matrix.ln_ratio IS 'ln(ratio): 0 = balanced, positive = long-heavy; symmetric for 2:1 and 1:2';
COMMENT ON COLUMN heatmap_matrix.zscore IS '(ln_ratio - mean) / sd (sample) of the coin''s ln_ratio over [ts - lookback_days, ts), same exchange/metric/period, the bucket itself excluded; NULL with fewer than min_history earlier observations or no spread (sum of squared deviations at rounding level)';
COMMENT ON COLUMN heatmap_matrix.zscore_history IS 'Number of earlier non-NULL observations in the trailing window the z-score was computed from';
COMMENT ON COLUMN heatmap_matrix.instrument IS 'The exchange-native instrument the row comes from';
