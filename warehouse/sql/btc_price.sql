-- btc_price: BTC's close per exchange, period and bucket, straight from klines: the images' price
-- line, drawn wherever candles exist (btc_ls.price_close exists only where L/S rows do, and an
-- exchange with a 30-row L/S window would draw 30 hours of price beside days of candles).
-- Where an exchange has candles of two BTC instruments in one bucket, the one marked in_universe
-- wins, then the first by name: the rule heatmap_matrix uses, bucket by bucket.
CREATE OR REPLACE TABLE btc_price AS
WITH candles AS (
    SELECT k.exchange, k.instrument, k.period, k.ts, k.close
    FROM klines AS k
    JOIN refresh_window AS w
        ON w.exchange = k.exchange
       AND w.period = k.period
       AND k.ts >= w.since
    WHERE k.coin = 'BTC'
      AND k.ts >= (SELECT min(since) FROM refresh_window)
)
SELECT c.exchange, c.period, c.ts, c.close
FROM candles AS c
LEFT JOIN instruments AS i
    ON i.exchange = c.exchange
   AND i.instrument = c.instrument
QUALIFY row_number() OVER (
    PARTITION BY c.exchange, c.period, c.ts
    ORDER BY coalesce(i.in_universe, false) DESC, c.instrument
) = 1
ORDER BY c.ts, c.exchange, c.period;

COMMENT ON TABLE btc_price IS 'BTC close per exchange, period and bucket from klines (ts = candle open time, UTC), one instrument per bucket (the in-universe one where two have a candle): the price line of the images, wherever candles exist.';
COMMENT ON COLUMN btc_price.close IS 'Close of the BTC candle opening at ts, in USDT';
