-- candle_flow: a volume-imbalance estimate from klines, for every coin and exchange with candles
-- (with or without an L/S feed). One row per candle in klines (exchange, coin, period, ts; one
-- instrument per coin, the in-universe one where an exchange holds two). buy_share is:
--   method 'taker':      taker_buy_volume / volume of the candle itself, where the exchange
--                        publishes taker buys (Binance) and volume > 0;
--   method 'up_candles': from the same instrument's candles of a finer period inside the bucket
--                        (1h -> 4h and 1d, 5m/15m -> anything coarser when fetched):
--                        (volume of up candles (close > open) + half the volume of flat candles
--                        (close = open)) / total volume of those candles. Among the finer
--                        periods the one covering most of the bucket wins, then the finest;
--                        n_candles / expected_candles says how complete it was.
--   NULL (no method): nothing to estimate from. In particular a 1h candle on an exchange
--                        without taker volume has no finer period unless 5m/15m are fetched:
--                        its own direction says up or down, not how the volume split, so it
--                        is left NULL rather than faked as 0 or 1.
-- sell_share = 1 - buy_share; flow_ratio = buy_share / sell_share, NULL when either is 0 (as
-- ls_ratio.ratio, never 0 or inf); ln_flow_ratio = ln(flow_ratio), 0 = balanced.
-- Volumes are in the instrument's base units; shares are unit-free.
--
-- The indicator on top of the shares, per (exchange, coin, period), candle after candle in time:
--   buy_change = buy_share - the previous candle's buy_share (NULL when the candle one period
--                before is missing: a change across a hole is not this candle's);
--   momentum   = HMA(buy_change, n = $flow_momentum_length), the Hull moving average
--                WMA(2 * WMA(x, floor(n / 2)) - WMA(x, n), round(sqrt(n))), where WMA(x, m) weighs
--                the last m buckets' values 1, 2, ..., m (newest heaviest). Rising and above 0:
--                buying pressure building. NULL until every value it needs exists: a candle
--                without an estimate, or a missing one, interrupts it for the next
--                n + round(sqrt(n)) - 1 buckets (so it never mixes candles across a hole, and a
--                refresh needs exactly that many buckets before the ones it recomputes);
--   extreme    = 'buyers' when buy_share >= $flow_extreme_share (default 0.80), 'sellers' when
--                sell_share >= it, else NULL.
-- A 5m candle is fetched as the lower timeframe of the 1h and 4h flow; where it has no taker
-- volume it has nothing finer to be estimated from, so it gets no row of its own.
CREATE OR REPLACE TEMP TABLE candle_shares AS
WITH periods(period, secs) AS (
    VALUES ('5m', 300::BIGINT), ('15m', 900), ('1h', 3600), ('4h', 14400), ('1d', 86400)
),
-- Per exchange and period recomputed: the first bucket the momentum's look-back needs.
reach AS (
    SELECT
        w.exchange,
        w.period,
        w.since - to_seconds(
            p.secs * ($flow_momentum_length + round(sqrt($flow_momentum_length))::BIGINT)
        ) AS start
    FROM refresh_window AS w
    JOIN periods AS p
        ON p.period = w.period
),
recent AS (
    SELECT k.*
    FROM klines AS k
    SEMI JOIN (SELECT DISTINCT exchange FROM reach) AS r
        ON r.exchange = k.exchange
    WHERE k.ts >= (SELECT min(start) FROM reach)
),
used AS (
    SELECT exchange, coin, instrument
    FROM recent
    GROUP BY exchange, coin, instrument
),
preference AS (
    SELECT
        u.exchange,
        u.instrument,
        row_number() OVER (
            PARTITION BY u.exchange, u.coin
            ORDER BY coalesce(i.in_universe, false) DESC, u.instrument
        ) AS rank,
        count(*) OVER (PARTITION BY u.exchange, u.coin) AS n_instruments
    FROM used AS u
    LEFT JOIN instruments AS i
        ON i.exchange = u.exchange
       AND i.instrument = u.instrument
),
in_reach AS (
    SELECT k.*
    FROM recent AS k
    SEMI JOIN reach AS r
        ON r.exchange = k.exchange
       AND r.period = k.period
       AND k.ts >= r.start
),
candles AS (
    SELECT k.*
    FROM in_reach AS k
    SEMI JOIN preference AS p
        ON p.exchange = k.exchange
       AND p.instrument = k.instrument
       AND p.n_instruments = 1
    UNION ALL
    SELECT k.*
    FROM in_reach AS k
    JOIN preference AS p
        ON p.exchange = k.exchange
       AND p.instrument = k.instrument
       AND p.n_instruments > 1
    QUALIFY row_number() OVER (
        PARTITION BY k.exchange, k.coin, k.period, k.ts ORDER BY p.rank
    ) = 1
),
finer AS (
    SELECT
        k.exchange,
        k.instrument,
        target.period AS target_period,
        k.period AS lower_period,
        lower_p.secs AS lower_secs,
        target.secs // lower_p.secs AS expected_candles,
        make_timestamp(
            (epoch_us(k.ts) // (target.secs * 1000000)) * (target.secs * 1000000)
        ) AS bucket,
        sum(k.volume) FILTER (WHERE k.close > k.open)  AS up_volume,
        sum(k.volume) FILTER (WHERE k.close = k.open)  AS flat_volume,
        sum(k.volume)                                  AS total_volume,
        count(*)                                       AS n_candles
    FROM recent AS k
    JOIN periods AS lower_p
        ON lower_p.period = k.period
    JOIN periods AS target
        ON target.secs > lower_p.secs
       AND target.secs % lower_p.secs = 0
    JOIN reach AS r
        ON r.exchange = k.exchange
       AND r.period = target.period
    WHERE k.ts >= r.start
      AND k.volume IS NOT NULL
      AND k.open IS NOT NULL
      AND k.close IS NOT NULL
    GROUP BY ALL
),
best_finer AS (
    SELECT *
    FROM finer
    WHERE total_volume > 0
    QUALIFY row_number() OVER (
        PARTITION BY exchange, instrument, target_period, bucket
        ORDER BY n_candles / expected_candles DESC, lower_secs
    ) = 1
),
estimated AS (
    SELECT
        c.exchange,
        c.coin,
        c.instrument,
        c.period,
        c.ts,
        c.volume,
        CASE
            WHEN c.taker_buy_volume IS NOT NULL AND c.volume > 0 THEN 'taker'
            WHEN f.total_volume > 0 THEN 'up_candles'
        END AS method,
        CASE
            WHEN c.taker_buy_volume IS NOT NULL AND c.volume > 0
                THEN c.taker_buy_volume / c.volume
            WHEN f.total_volume > 0
                THEN (coalesce(f.up_volume, 0) + 0.5 * coalesce(f.flat_volume, 0))
                     / f.total_volume
        END AS buy_share,
        f.lower_period,
        f.n_candles,
        f.expected_candles,
        epoch(c.ts)::BIGINT // p.secs AS bucket_number
    FROM candles AS c
    JOIN periods AS p
        ON p.period = c.period
    LEFT JOIN best_finer AS f
        ON f.exchange = c.exchange
       AND f.instrument = c.instrument
       AND f.target_period = c.period
       AND f.bucket = c.ts
),
kept AS (
    SELECT *
    FROM estimated
    WHERE method IS NOT NULL OR period <> '5m'
),
series AS (  -- a small integer per (exchange, coin, period): what the momentum step sorts on
    SELECT exchange, coin, period, row_number() OVER (ORDER BY exchange, coin, period) AS sid
    FROM (SELECT DISTINCT exchange, coin, period FROM kept)
)
SELECT k.*, s.sid, k.bucket_number AS t
FROM kept AS k
JOIN series AS s
    ON s.exchange = k.exchange
   AND s.coin = k.coin
   AND s.period = k.period;

-- buy_change and momentum along each (exchange, coin, period) in bucket order, in Python
-- (pipelines/rolling.py: a matrix product over windows of consecutive buckets), where SQL's
-- windows built a list per row and window (a year's rebuild of this table, alternating runs:
-- 8.1 to 9.0 s instead of 11.3 to 13.6).
CREATE OR REPLACE TEMP VIEW candle_series AS
SELECT sid, t, buy_share FROM candle_shares;

PYTHON hull_momentum(candle_series, $flow_momentum_length) INTO candle_momentum;

CREATE OR REPLACE TABLE candle_flow AS
SELECT
    exchange,
    coin,
    period,
    ts,
    buy_share,
    1 - buy_share AS sell_share,
    CASE WHEN buy_share > 0 AND buy_share < 1 THEN buy_share / (1 - buy_share) END AS flow_ratio,
    CASE WHEN buy_share > 0 AND buy_share < 1 THEN ln(buy_share / (1 - buy_share)) END
        AS ln_flow_ratio,
    buy_change,
    momentum,
    CASE
        WHEN buy_share >= $flow_extreme_share THEN 'buyers'
        WHEN 1 - buy_share >= $flow_extreme_share THEN 'sellers'
    END AS extreme,
    CAST($flow_extreme_share AS DOUBLE) AS extreme_share,
    method,
    CASE WHEN method = 'up_candles' THEN lower_period END AS lower_period,
    CASE
        WHEN method = 'taker' THEN 1
        WHEN method = 'up_candles' THEN n_candles
    END::INTEGER AS n_candles,
    CASE
        WHEN method = 'taker' THEN 1
        WHEN method = 'up_candles' THEN expected_candles
    END::INTEGER AS expected_candles,
    volume,
    instrument
FROM candle_shares
JOIN candle_momentum USING (sid, t)
ORDER BY ts;

DROP TABLE candle_momentum;
DROP VIEW candle_series;
DROP TABLE candle_shares;

COMMENT ON TABLE candle_flow IS 'Volume-imbalance estimate per candle (exchange, coin, period, ts) from klines: taker buy share where published (Binance), else the volume share of up candles of a finer period inside the bucket; NULL where neither exists (1h without 5m/15m candles). With the indicator on top: momentum (Hull moving average of the buy-share change) and extreme candles (one side >= 80% by default). Not stored in any order.';
COMMENT ON COLUMN candle_flow.buy_share IS 'taker: taker_buy_volume / volume. up_candles: (up-candle volume + half the flat-candle volume) / volume of the finer candles in the bucket. NULL when not derivable';
COMMENT ON COLUMN candle_flow.sell_share IS '1 - buy_share';
COMMENT ON COLUMN candle_flow.flow_ratio IS 'buy_share / sell_share; NULL when either share is 0 or unknown (never 0 or inf)';
COMMENT ON COLUMN candle_flow.ln_flow_ratio IS 'ln(flow_ratio): 0 = balanced, positive = buying-heavy; heatmap-ready like heatmap_matrix.ln_ratio';
COMMENT ON COLUMN candle_flow.buy_change IS 'buy_share minus the previous candle''s buy_share (same exchange, coin, period); NULL for the first candle or after one without an estimate';
COMMENT ON COLUMN candle_flow.momentum IS 'Hull moving average of buy_change over flow_momentum_length candles (default 14): above 0 and rising = buying pressure building; NULL until the whole window has estimates';
COMMENT ON COLUMN candle_flow.extreme IS 'buyers when buy_share >= flow_extreme_share (default 0.80), sellers when sell_share >= it, else NULL';
COMMENT ON COLUMN candle_flow.extreme_share IS 'The threshold extreme was read against (flow_extreme_share)';
COMMENT ON COLUMN candle_flow.method IS 'taker, up_candles, or NULL (not derivable)';
COMMENT ON COLUMN candle_flow.lower_period IS 'up_candles: the finer period whose candles were summed';
COMMENT ON COLUMN candle_flow.n_candles IS 'Candles the estimate used (1 for taker); below expected_candles means the finer candles cover only part of the bucket';
COMMENT ON COLUMN candle_flow.expected_candles IS 'Candles a complete bucket has (period / lower_period; 1 for taker)';
COMMENT ON COLUMN candle_flow.volume IS 'The candle''s own volume in base units (klines.volume)';
