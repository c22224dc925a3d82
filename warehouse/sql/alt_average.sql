-- alt_average: per bucket, the geometric mean and the median of the altcoins' L/S ratios.
-- Alts are every coin but BTC and the configured exclusions ($alt_exclusions). The geometric mean
-- (exp of the mean log ratio) treats 2:1 and 1:2 symmetrically, which an arithmetic mean does not.
-- Only one population is averaged at a time: the grouping keeps exchange, metric and period apart.
CREATE OR REPLACE TABLE alt_average AS
WITH alts AS (
    SELECT exchange, metric, period, ts, ratio
    FROM ls_ratio
    WHERE coin <> 'BTC'
      AND NOT list_contains($alt_exclusions, coin)
      AND ratio > 0
),
averaged AS (
    SELECT
        exchange,
        metric,
        period,
        ts,
        exp(avg(ln(ratio))) AS alt_mean_ratio,
        median(ratio)       AS alt_median_ratio,
        count(*)::INTEGER   AS n_coins
    FROM alts
    GROUP BY exchange, metric, period, ts
)
SELECT a.*, b.ratio AS btc_ratio
FROM averaged AS a
LEFT JOIN ls_ratio AS b
    ON b.coin = 'BTC'
   AND b.exchange = a.exchange
   AND b.metric = a.metric
   AND b.period = a.period
   AND b.ts = a.ts
ORDER BY a.exchange, a.metric, a.period, a.ts;

COMMENT ON TABLE alt_average IS 'Altcoin-average long/short ratio per bucket (exchange, metric, period, ts), BTC beside it.';
COMMENT ON COLUMN alt_average.alt_mean_ratio IS 'Geometric mean of the alts'' ratios: exp(avg(ln(ratio))) over coins with a ratio in the bucket';
COMMENT ON COLUMN alt_average.alt_median_ratio IS 'Median of the alts'' ratios in the bucket';
COMMENT ON COLUMN alt_average.n_coins IS 'Number of alts with a ratio in the bucket';
COMMENT ON COLUMN alt_average.btc_ratio IS 'BTC''s ratio in the same bucket (NULL if missing)';
