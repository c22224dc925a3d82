-- btc_price: BTC's close per exchange, period and bucket, straight from klines: the images' price
-- line, drawn wherever candles exist (btc_ls.price_close exists only where L/S rows do, and an
-- exchange with a 30-row L/S window would draw 30 hours of price beside days of candles).
-- Where an exchange holds two BTC instruments, the one marked in_universe wins, then the first by
-- name: the rule heatmap_matrix uses.
CREATE OR REPLACE TABLE btc_price AS
WITH candidates AS (
    SELECT DISTINCT exchange, instrument
    FROM klines
    WHERE coin = 'BTC'
),
chosen AS (
    SELECT c.exchange, c.instrument
    FROM candidates AS c
    LEFT JOIN instruments AS i
        ON i.exchange = c.exchange
       AND i.instrument = c.instrument
    QUALIFY row_number() OVER (
        PARTITION BY c.exchange ORDER BY coalesce(i.in_universe, false) DESC, c.instrument
    ) = 1
)
SELECT k.exchange, k.period, k.ts, k.close
FROM klines AS k
JOIN chosen AS c
    ON c.exchange = k.exchange
   AND c.instrument = k.instrument
JOIN refresh_window AS w
    ON w.exchange = k.exchange
   AND w.period = k.period
   AND k.ts >= w.since
WHERE k.ts >= (SELECT min(since) FROM refresh_window)
ORDER BY k.ts, k.exchange, k.period;

COMMENT ON TABLE btc_price IS 'BTC close per exchange, period and bucket from klines (ts = candle open time, UTC), one instrument per exchange: the price line of the images, wherever candles exist.';
COMMENT ON COLUMN btc_price.close IS 'Close of the BTC candle opening at ts, in USDT';
