-- cross_exchange: one coin seen across exchanges, per metric kind, period and bucket.
-- Raw ratios of different venues are different populations and are never averaged; two
-- comparable aggregates are:
--   mean_zscore          = avg over exchanges of heatmap_matrix.zscore (each exchange's
--                          ln(ratio) against its own trailing history);
--   oi_weighted_ln_ratio = sum(oi_usd * ln_ratio) / sum(oi_usd) over the exchanges whose open
--                          interest is known in that bucket (oi_usd > 0).
-- oi_usd per exchange = open_interest.open_interest_value (USDT, where the exchange publishes
-- it), else open_interest.open_interest x klines.close of the same instrument, period and
-- bucket (both in the instrument's own units, so 1000PEPE contracts x the 1000PEPE price is
-- still USDT). OI is matched on the exact bucket start: no forward fill, a stale weight is no
-- weight. Only one metric kind is aggregated at a time.
CREATE OR REPLACE TABLE cross_exchange AS
WITH recomputed AS (  -- per period, from the earliest bucket any exchange changed
    SELECT period, min(since) AS since
    FROM refresh_window
    GROUP BY period
),
closes AS (  -- a filter in the join's ON clause would not reach the scan: all of klines was read
    SELECT exchange, instrument, period, ts, close
    FROM klines
    WHERE ts >= (SELECT min(since) FROM recomputed)
),
oi AS (  -- most exchanges publish the value: only the others' rows are joined to klines
    SELECT exchange, instrument, period, ts, open_interest_value AS oi_usd
    FROM open_interest
    WHERE ts >= (SELECT min(since) FROM recomputed)
      AND open_interest_value IS NOT NULL
    UNION ALL
    SELECT o.exchange, o.instrument, o.period, o.ts, o.open_interest * k.close AS oi_usd
    FROM open_interest AS o
    LEFT JOIN closes AS k
        ON k.exchange = o.exchange
       AND k.instrument = o.instrument
       AND k.period = o.period
       AND k.ts = o.ts
    WHERE o.ts >= (SELECT min(since) FROM recomputed)
      AND o.open_interest_value IS NULL
),
cells AS (
    SELECT
        h.coin,
        h.metric,
        h.period,
        h.ts,
        h.exchange,
        h.ln_ratio,
        h.zscore,
        CASE WHEN h.ln_ratio IS NOT NULL AND oi.oi_usd > 0 THEN oi.oi_usd END AS weight
    FROM heatmap_matrix AS h
    JOIN recomputed AS w
        ON w.period = h.period
       AND h.ts >= w.since
    LEFT JOIN oi
        ON oi.exchange = h.exchange
       AND oi.instrument = h.instrument
       AND oi.period = h.period
       AND oi.ts = h.ts
    -- No `h.ts >= (SELECT min(since) ...)` here, unlike klines and open interest above: with it
    -- DuckDB estimated the heatmap side at a few dozen rows and built the join's hash table on
    -- it, all 8.3 M rows of a year's 1h slice (spilling 400 MB), not on open interest: 4.0 s
    -- against 2.2. The join with recomputed reaches the scan anyway (the same row groups read).
)
SELECT
    coin,
    metric,
    period,
    ts,
    avg(zscore)                                 AS mean_zscore,
    sum(weight * ln_ratio) / sum(weight)        AS oi_weighted_ln_ratio,
    count(ln_ratio)::INTEGER                    AS n_exchanges,
    count(zscore)::INTEGER                      AS n_exchanges_zscore,
    count(weight)::INTEGER                      AS n_exchanges_with_oi,
    sum(weight)                                 AS oi_usd_total
FROM cells
GROUP BY coin, metric, period, ts
ORDER BY ts;

COMMENT ON TABLE cross_exchange IS 'Per coin, metric kind, period and bucket across exchanges: mean of the per-exchange z-scores and the open-interest-weighted mean of ln(ratio). Raw ratios are never averaged across venues. Not stored in any order.';
COMMENT ON COLUMN cross_exchange.mean_zscore IS 'avg(heatmap_matrix.zscore) over the exchanges with a z-score in the bucket; NULL when none has one';
COMMENT ON COLUMN cross_exchange.oi_weighted_ln_ratio IS 'sum(oi_usd * ln_ratio) / sum(oi_usd) over exchanges with a ratio and known open interest (oi_usd > 0) at the bucket start; exp() of it is the OI-weighted geometric mean ratio. NULL without OI';
COMMENT ON COLUMN cross_exchange.n_exchanges IS 'Exchanges with a ratio for this coin, metric, period and bucket';
COMMENT ON COLUMN cross_exchange.n_exchanges_zscore IS 'Exchanges contributing to mean_zscore (enough history)';
COMMENT ON COLUMN cross_exchange.n_exchanges_with_oi IS 'Exchanges contributing to oi_weighted_ln_ratio';
COMMENT ON COLUMN cross_exchange.oi_usd_total IS 'Sum of the contributing exchanges'' open interest in USDT (open_interest_value, else open_interest x close)';
