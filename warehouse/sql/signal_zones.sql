-- signal_zones: is BTC's, or the altcoin average's, positioning at a historical extreme?
-- Two series per (exchange, metric, period): 'btc' (btc_ls.ratio) and 'alt_avg'
-- (alt_average.alt_mean_ratio, the geometric mean). For each bucket the bands are rolling
-- percentiles of ln(value) over the series' own trailing history:
--   history = the series' non-NULL ln values with ts - $zone_lookback_days days <= t < ts
--   (the bucket itself is EXCLUDED, as in heatmap_matrix: a value is judged against the past
--   only, so a spike cannot widen its own band),
--   ln_lower_band = quantile_cont(history, $zone_lower_pct),
--   ln_upper_band = quantile_cont(history, $zone_upper_pct)
--   (linear interpolation between order statistics, like numpy.quantile's default).
-- Nothing is declared before the history holds $zone_min_history observations: bands, zscore
-- and zone are NULL until then. zone = 'upper' when ln_value > ln_upper_band, 'lower' when
-- ln_value < ln_lower_band (strictly beyond: a value exactly on a band is not in a zone).
-- market_wide is true on both series' rows when BTC and the alt average are in the same zone
-- in the same bucket. The series tables hold at most one row per key, so a window over the
-- bucket replaces a self-join.
CREATE OR REPLACE TABLE signal_zones AS
WITH series AS (  -- from each recomputed bucket's look-back on
    SELECT s.*, w.since
    FROM (
        SELECT exchange, metric, period, 'btc' AS series, ts, ratio AS value
        FROM btc_ls
        UNION ALL
        SELECT exchange, metric, period, 'alt_avg' AS series, ts, alt_mean_ratio AS value
        FROM alt_average
    ) AS s
    JOIN refresh_window AS w
        ON w.exchange = s.exchange
       AND w.period = s.period
       AND s.ts >= w.since - to_days(CAST($zone_lookback_days AS INTEGER))
    WHERE s.ts >= (SELECT min(since) FROM refresh_window)
                  - to_days(CAST($zone_lookback_days AS INTEGER))
),
logged AS (
    SELECT *, CASE WHEN value > 0 THEN ln(value) END AS ln_value
    FROM series
),
-- Two roads to the same history figures. A window computes them for every row it reads, the
-- look-back included; a refresh of a few buckets needs them for those buckets only, and joining
-- each to its own look-back costs a fraction of that (measured: one new hour on five years took
-- 0.7 s by the window, a few hundredths of it by the join). The join costs a look-back per
-- bucket, so it is taken while the buckets recomputed are under a twentieth of the rows read,
-- and while the joined rows stay few enough to hold: the quantiles keep every value joined
-- until their bucket is done, and past DuckDB's memory limit they fail (they do not spill).
-- Both bands come from one quantile_cont, so each value is held once, not twice. With 90 days
-- of 5m history at the 1 GB limit: one hour joins about 11 M rows (0.7 s), three hours 34 M
-- (2.2 s, 1.13 GB peak), four hours 45 M and ran out of memory; so one joined row per 40 bytes
-- of the limit at most (25 M at 1 GB), and past that the window, which took 6.4 to 7.0 s and
-- 0.68 GB for twelve hours (157 M to join).
memory AS (  -- DuckDB's memory limit in bytes, from its setting ('953.6 MiB')
    SELECT CAST(regexp_extract(v, '^[0-9.]+') AS DOUBLE) * CASE regexp_extract(v, '[KMGTP]iB$')
               WHEN 'KiB' THEN 1024 WHEN 'MiB' THEN 1024 ^ 2 WHEN 'GiB' THEN 1024 ^ 3
               WHEN 'TiB' THEN 1024 ^ 4 WHEN 'PiB' THEN 1024 ^ 5 ELSE 1
           END AS bytes
    FROM (SELECT current_setting('memory_limit') AS v)
),
road AS (
    SELECT sum(fresh) * 20 < sum(n) AND sum(fresh * n) <= (SELECT bytes / 40 FROM memory) AS by_join
    FROM (
        SELECT count(*) FILTER (WHERE ts >= since) AS fresh, count(*) AS n  -- joined <= fresh * n
        FROM logged
        GROUP BY exchange, metric, period, series
    )
),
history_by_window AS (
    SELECT
        *,
        quantile_cont(ln_value, $zone_lower_pct) OVER earlier AS history_lower,
        quantile_cont(ln_value, $zone_upper_pct) OVER earlier AS history_upper,
        avg(ln_value)                            OVER earlier AS history_mean,
        stddev_samp(ln_value)                    OVER earlier AS history_sd,
        count(ln_value)                          OVER earlier AS history_n
    FROM logged
    WHERE NOT (SELECT by_join FROM road)
    WINDOW earlier AS (
        PARTITION BY exchange, metric, period, series
        ORDER BY ts
        RANGE BETWEEN to_days(CAST($zone_lookback_days AS INTEGER)) PRECEDING
                  AND INTERVAL 1 MICROSECOND PRECEDING
    )
),
joined AS (
    SELECT
        b.*,
        quantile_cont(h.ln_value, [$zone_lower_pct, $zone_upper_pct]) AS bands,
        avg(h.ln_value)                            AS history_mean,
        stddev_samp(h.ln_value)                    AS history_sd,
        count(h.ln_value)                          AS history_n
    FROM logged AS b
    LEFT JOIN logged AS h
        ON h.exchange = b.exchange
       AND h.metric = b.metric
       AND h.period = b.period
       AND h.series = b.series
       AND h.ts >= b.ts - to_days(CAST($zone_lookback_days AS INTEGER))
       AND h.ts < b.ts
    WHERE b.ts >= b.since
      AND (SELECT by_join FROM road)
    GROUP BY ALL
),
history_by_join AS (
    SELECT
        * EXCLUDE (bands, history_mean, history_sd, history_n),
        bands[1] AS history_lower,
        bands[2] AS history_upper,
        history_mean,
        history_sd,
        history_n
    FROM joined
),
history AS (
    SELECT * FROM history_by_window
    UNION ALL
    SELECT * FROM history_by_join
),
banded AS (
    SELECT
        exchange,
        metric,
        period,
        series,
        ts,
        value,
        ln_value,
        CASE WHEN history_n >= $zone_min_history THEN history_lower END AS ln_lower_band,
        CASE WHEN history_n >= $zone_min_history THEN history_upper END AS ln_upper_band,
        CASE
            WHEN history_n >= $zone_min_history AND history_sd > 0
            THEN (ln_value - history_mean) / history_sd
        END AS zscore,
        history_n::INTEGER AS history_n
    FROM history
),
zoned AS (
    SELECT
        *,
        CASE
            WHEN ln_value > ln_upper_band THEN 'upper'
            WHEN ln_value < ln_lower_band THEN 'lower'
        END AS zone
    FROM banded
)
SELECT
    exchange,
    metric,
    period,
    series,
    ts,
    value,
    ln_value,
    exp(ln_lower_band) AS lower_band,
    exp(ln_upper_band) AS upper_band,
    ln_lower_band,
    ln_upper_band,
    zone,
    coalesce(
        zone IS NOT NULL
        AND count(zone) OVER bucket = 2
        AND min(zone) OVER bucket = max(zone) OVER bucket,
        false
    ) AS market_wide,
    history_n,
    zscore
FROM zoned
WINDOW bucket AS (PARTITION BY exchange, metric, period, ts)
ORDER BY ts, exchange, metric, period, series;

COMMENT ON TABLE signal_zones IS 'Historical-extreme zones of the BTC ratio (series btc) and the altcoin geometric-mean ratio (series alt_avg) per exchange, metric, period and bucket: bands are trailing percentiles of ln(value) (default 10th/90th over 90 days, bucket itself excluded), no zone before the minimum history.';
COMMENT ON COLUMN signal_zones.series IS 'btc = btc_ls.ratio, alt_avg = alt_average.alt_mean_ratio';
COMMENT ON COLUMN signal_zones.value IS 'The series'' long/short ratio in the bucket (NULL when undefined)';
COMMENT ON COLUMN signal_zones.ln_value IS 'ln(value)';
COMMENT ON COLUMN signal_zones.lower_band IS 'exp(ln_lower_band): the lower band in ratio terms, comparable with value';
COMMENT ON COLUMN signal_zones.upper_band IS 'exp(ln_upper_band): the upper band in ratio terms, comparable with value';
COMMENT ON COLUMN signal_zones.ln_lower_band IS 'quantile_cont (linear interpolation) of the series'' ln_value over [ts - zone_lookback_days, ts), at the lower percentile (default 0.10); NULL with fewer than zone_min_history observations';
COMMENT ON COLUMN signal_zones.ln_upper_band IS 'Same as ln_lower_band at the upper percentile (default 0.90)';
COMMENT ON COLUMN signal_zones.zone IS 'upper when ln_value > ln_upper_band, lower when ln_value < ln_lower_band, else NULL (also NULL without bands or value)';
COMMENT ON COLUMN signal_zones.market_wide IS 'True when btc and alt_avg are in the same zone in the same bucket (exchange, metric, period, ts); false otherwise, never NULL';
COMMENT ON COLUMN signal_zones.history_n IS 'Number of non-NULL earlier observations in the trailing window (bucket excluded)';
COMMENT ON COLUMN signal_zones.zscore IS '(ln_value - mean) / sd (sample) over the same trailing window as the bands; NULL before the minimum history or with zero spread';
