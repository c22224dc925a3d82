-- cross_lines: the cross-exchange image's top panel, per metric kind, period and bucket: BTC's
-- and the altcoins' open-interest-weighted L/S over all exchanges, from cross_exchange.
--   btc_ratio      = exp(oi_weighted_ln_ratio) of BTC;
--   alt_mean_ratio = exp(avg(oi_weighted_ln_ratio)) over every other coin with one: the
--                    geometric mean of the alts' OI-weighted ratios, as alt_average is of one
--                    exchange's ratios;
--   n_coins        = the alts in that mean (0 where no alt has open interest in the bucket);
--   n_exchanges    = max(n_exchanges_with_oi) over the bucket's coins: how many exchanges the
--                    view combines there (a coin listed on fewer exchanges counts fewer).
-- A bucket has a row when any coin has one in cross_exchange.
CREATE OR REPLACE TABLE cross_lines AS
WITH recomputed AS (  -- per period, from the earliest bucket any exchange changed
    SELECT period, min(since) AS since
    FROM refresh_window
    GROUP BY period
),
cells AS (
    SELECT c.*
    FROM cross_exchange AS c
    SEMI JOIN recomputed AS w
        ON w.period = c.period
       AND c.ts >= w.since
    WHERE c.ts >= (SELECT min(since) FROM recomputed)
),
btc AS (
    SELECT metric, period, ts, exp(oi_weighted_ln_ratio) AS btc_ratio
    FROM cells
    WHERE coin = 'BTC'
),
alts AS (
    SELECT
        metric,
        period,
        ts,
        exp(avg(oi_weighted_ln_ratio))       AS alt_mean_ratio,
        count(oi_weighted_ln_ratio)::INTEGER AS n_coins
    FROM cells
    WHERE coin <> 'BTC'
    GROUP BY metric, period, ts
),
contributors AS (
    SELECT metric, period, ts, max(n_exchanges_with_oi)::INTEGER AS n_exchanges
    FROM cells
    GROUP BY metric, period, ts
)
SELECT
    metric,
    period,
    ts,
    btc.btc_ratio,
    alts.alt_mean_ratio,
    coalesce(alts.n_coins, 0) AS n_coins,
    contributors.n_exchanges
FROM btc
FULL JOIN alts USING (metric, period, ts)
JOIN contributors USING (metric, period, ts)
ORDER BY ts, metric, period;

COMMENT ON TABLE cross_lines IS 'BTC and altcoin-average L/S per metric kind, period and bucket, each weighted by open interest across exchanges (from cross_exchange): the top panel of the cross-exchange image.';
COMMENT ON COLUMN cross_lines.btc_ratio IS 'exp(cross_exchange.oi_weighted_ln_ratio) of BTC: its OI-weighted geometric-mean ratio over exchanges; NULL without open interest';
COMMENT ON COLUMN cross_lines.alt_mean_ratio IS 'exp(avg(oi_weighted_ln_ratio)) over the other coins: geometric mean of the alts'' OI-weighted ratios; NULL when no alt has one';
COMMENT ON COLUMN cross_lines.n_coins IS 'Alts in alt_mean_ratio (0 when no alt has open interest in the bucket)';
COMMENT ON COLUMN cross_lines.n_exchanges IS 'Exchanges behind the bucket: the most exchanges whose ratio and open interest any coin''s cell combines (max of cross_exchange.n_exchanges_with_oi)';
