-- btc_ls: BTC's long/short ratio and BTC close price per bucket, per exchange, metric and period.
-- price_close is the close of the BTC candle that opens at the bucket start (NULL without klines).
CREATE OR REPLACE TABLE btc_ls AS
SELECT
    l.exchange,
    l.metric,
    l.period,
    l.ts,
    l.ratio,
    l.long_share,
    l.short_share,
    k.close AS price_close
FROM ls_ratio AS l
LEFT JOIN klines AS k
    ON k.exchange = l.exchange
   AND k.instrument = l.instrument
   AND k.period = l.period
   AND k.ts = l.ts
WHERE l.coin = 'BTC'
ORDER BY l.exchange, l.metric, l.period, l.ts;

COMMENT ON TABLE btc_ls IS 'BTC long/short ratio and BTC close price per bucket (exchange, metric, period, ts).';
COMMENT ON COLUMN btc_ls.price_close IS 'Close of the BTC candle opening at ts, in USDT; NULL where no kline was fetched';
