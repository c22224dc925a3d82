-- alt_average: per bucket, the geometric mean and the median of the altcoins' L/S ratios.
-- Alts are the universe coins ($universe_coins) but BTC and the configured exclusions
-- ($alt_exclusions). The geometric mean (exp of the mean log ratio) treats 2:1 and 1:2
-- symmetrically, which an arithmetic mean does not. Only one population is averaged at a time:
-- the grouping keeps exchange, metric and period apart. Rows come from heatmap_matrix, which
-- holds one row per coin and bucket, so a coin with two instruments is counted once.
-- A bucket where no alt has a ratio (all NULL or none stored) has no row.
CREATE OR REPLACE TABLE alt_average AS
WITH alts AS (
    SELECT exchange, metric, period, ts, ratio, ln_ratio
    FROM heatmap_matrix AS h
    SEMI JOIN refresh_window AS w
        ON w.exchange = h.exchange
       AND w.period = h.period
       AND h.ts >= w.since
    WHERE coin <> 'BTC'
      AND ts >= (SELECT min(since) FROM refresh_window)
      AND list_contains($universe_coins, coin)
      AND NOT list_contains($alt_exclusions, coin)
      AND ratio > 0
),
averaged AS (
    SELECT
        exchange,
        metric,
        period,
        ts,
        exp(avg(ln_ratio)) AS alt_mean_ratio,
        median(ratio)      AS alt_median_ratio,
        count(*)::INTEGER  AS n_coins
    FROM alts
    GROUP BY exchange, metric, period, ts
)
SELECT a.*, b.ratio AS btc_ratio
FROM averaged AS a
LEFT JOIN heatmap_matrix AS b
    ON b.coin = 'BTC'
   AND b.exchange = a.exchange
   AND b.metric = a.metric
   AND b.period = a.period
   AND b.ts = a.ts
   AND b.ts >= (SELECT min(since) FROM refresh_window)
ORDER BY a.ts, a.exchange, a.metric, a.period;

COMMENT ON TABLE alt_average IS 'Altcoin-average long/short ratio per bucket (exchange, metric, period, ts), BTC beside it. Alts = universe coins but BTC and alt_exclusions (pipelines/universe.yaml); one row per bucket where at least one alt has a ratio.';
COMMENT ON COLUMN alt_average.alt_mean_ratio IS 'Geometric mean of the alts'' ratios: exp(avg(ln(ratio))) over coins with a ratio in the bucket';
COMMENT ON COLUMN alt_average.alt_median_ratio IS 'Median of the alts'' ratios in the bucket (the mean of the two middle ones for an even count)';
COMMENT ON COLUMN alt_average.n_coins IS 'Number of alts with a ratio in the bucket (a coin listed late or with a NULL ratio is not counted)';
COMMENT ON COLUMN alt_average.btc_ratio IS 'BTC''s ratio in the same bucket (NULL if missing or undefined)';
