-- heatmap_matrix: one row per (exchange, metric, period, coin, bucket) with the ratio, ln(ratio)
-- and a z-score of ln(ratio) against the coin's own trailing history on that venue: venues and
-- coins have different baselines, so raw ratios are not comparable across rows, z-scores are.
-- The history is the trailing $lookback_days days before the bucket (the bucket itself excluded);
-- no z-score is given with fewer than $min_history earlier observations or zero spread.
CREATE OR REPLACE TABLE heatmap_matrix AS
WITH cells AS (
    SELECT
        exchange,
        metric,
        period,
        coin,
        ts,
        ratio,
        CASE WHEN ratio > 0 THEN ln(ratio) END AS ln_ratio
    FROM ls_ratio
),
history AS (
    SELECT
        *,
        avg(ln_ratio)         OVER earlier AS history_mean,
        stddev_samp(ln_ratio) OVER earlier AS history_sd,
        count(ln_ratio)       OVER earlier AS history_n
    FROM cells
    WINDOW earlier AS (
        PARTITION BY exchange, metric, period, coin
        ORDER BY ts
        RANGE BETWEEN to_days(CAST($lookback_days AS INTEGER)) PRECEDING
                  AND INTERVAL 1 MICROSECOND PRECEDING
    )
)
SELECT
    exchange,
    metric,
    period,
    coin,
    ts,
    ratio,
    ln_ratio,
    CASE
        WHEN history_n >= $min_history AND history_sd > 0
        THEN (ln_ratio - history_mean) / history_sd
    END AS zscore,
    history_n::INTEGER AS zscore_history
FROM history
ORDER BY exchange, metric, period, coin, ts;

COMMENT ON TABLE heatmap_matrix IS 'Coin x time heatmap cells per exchange, metric and period.';
COMMENT ON COLUMN heatmap_matrix.ln_ratio IS 'ln(ratio): 0 = balanced, positive = long-heavy; symmetric for 2:1 and 1:2';
COMMENT ON COLUMN heatmap_matrix.zscore IS '(ln_ratio - mean) / sd of the coin''s ln_ratio over the trailing lookback window before ts, same exchange/metric/period; NULL with too little history';
COMMENT ON COLUMN heatmap_matrix.zscore_history IS 'Number of earlier observations the z-score was computed from';
