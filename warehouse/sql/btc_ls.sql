-- btc_ls: BTC's long/short ratio and BTC close price per bucket, per exchange, metric and period.
-- The rows are heatmap_matrix's BTC rows (so one instrument per exchange, the same one the
-- heatmap and every other derived table use), with the shares from ls_ratio beside them.
-- price_close is the close of the BTC candle that opens at the bucket start, same instrument and
-- period (NULL without klines).
CREATE OR REPLACE TABLE btc_ls AS
SELECT
    h.exchange,
    h.metric,
    h.period,
    h.ts,
    h.ratio,
    l.long_share,
    l.short_share,
    k.close AS price_close
FROM heatmap_matrix AS h
JOIN refresh_window AS w
    ON w.exchange = h.exchange
   AND w.period = h.period
   AND h.ts >= w.since
JOIN ls_ratio AS l
    ON l.exchange = h.exchange
   AND l.instrument = h.instrument
   AND l.metric = h.metric
   AND l.period = h.period
   AND l.ts = h.ts
LEFT JOIN klines AS k
    ON k.exchange = h.exchange
   AND k.instrument = h.instrument
   AND k.period = h.period
   AND k.ts = h.ts
WHERE h.coin = 'BTC'
  AND l.coin = 'BTC'
  AND h.ts >= (SELECT min(since) FROM refresh_window)
  AND l.ts >= (SELECT min(since) FROM refresh_window)
ORDER BY h.ts, h.exchange, h.metric, h.period;

COMMENT ON TABLE btc_ls IS 'BTC long/short ratio and BTC close price per bucket (exchange, metric, period, ts): one row per BTC row of heatmap_matrix.';
COMMENT ON COLUMN btc_ls.ratio IS 'BTC''s long/short ratio (ls_ratio.ratio); NULL when undefined (zero short share)';
COMMENT ON COLUMN btc_ls.long_share IS 'Share of longs 0..1 as stored in ls_ratio';
COMMENT ON COLUMN btc_ls.short_share IS 'Share of shorts 0..1 as stored in ls_ratio';
COMMENT ON COLUMN btc_ls.price_close IS 'Close of the BTC candle opening at ts (same instrument and period), in USDT; NULL where no kline was fetched';
