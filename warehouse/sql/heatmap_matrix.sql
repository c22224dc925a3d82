-- heatmap_matrix: one row per (exchange, metric, period, coin, bucket) with the ratio, ln(ratio)
-- and a z-score of ln(ratio) against the coin's own trailing history on that venue: venues and
-- coins have different baselines, so raw ratios are not comparable across rows, z-scores are.
--
-- History = the same series' non-NULL ln(ratio) with ts - $lookback_days days <= t < ts (the
-- bucket itself excluded). zscore = (ln_ratio - mean) / sd (sample sd), NULL with fewer than
-- $min_history earlier observations or no spread (a variance below 1e-12, i.e. ln(ratio)
-- moving by less than 1e-6: far below the 4 decimals exchanges publish, far above rounding).
--
-- Incremental: the rows computed are those of refresh_window (per exchange and period, every
-- bucket from `since` on; a full rebuild's window starts in 1970), and only the look-back
-- before them is read. With L = the look-back, the sums over a bucket's window [t - L, t) are
--   the sums over [since - L, since), taken in the pass that finds the series (heatmap_series),
--   + the buckets that entered the window since then (since <= t' < t),
--   - the buckets that left it (since - L <= t' < t - L; a bucket leaves at t' + L, and only
--     those leaving before the last bucket computed can matter).
-- One running total over those enter and leave events in time order gives the last two, so
-- only the buckets being computed and the few leaving are joined and sorted, not the whole
-- look-back: with 90 days of 5m rows an hour's refresh took 5.1 to 6.2 s reading every
-- look-back bucket into heatmap_cells, 1.7 to 1.8 s now. (A coin with two instruments keeps
-- its whole look-back in heatmap_cells: which instrument's bucket counts is decided there.)
-- A full rebuild takes another road to the same sums, in Python (pipelines/rolling.py):
-- prefix sums over each whole series and a binary search for where each bucket's window
-- starts, linear in the rows, where SQL's window functions build a segment tree per running sum
-- and an ASOF join sorts again (a year's rebuild of this table: 11 to 13 s instead of 21 to
-- 26). The Python road would cost the refresh of an hour more than the events (it reads and
-- sorts every look-back row: 1.3 s instead of 0.5). tests/test_incremental.py compares the two
-- roads. Each series (exchange, metric, period, coin) gets a small integer id first: sorting
-- and joining on one BIGINT is several times cheaper than on four VARCHARs.
-- tests/test_analytics.py checks the result against numpy on gappy series.
--
-- One coin, one row: ls_ratio is keyed by instrument, and an exchange can hold two instruments
-- for one coin (PEPEUSDT beside 1000PEPEUSDT, or a renamed contract). Where that happens the
-- instrument marked in_universe wins, then the first by name; series with a single instrument
-- (nearly all) skip the de-duplication. btc_ls, alt_average, divergence and cross_exchange read
-- this table, so they all see the same instrument per coin.
-- The steps are temp tables rather than one query's CTEs: a window over a narrow stored table
-- costs far less than the same window at the end of a pipeline of joins (measured: the full
-- rebuild of a year took 40% less).
CREATE OR REPLACE TEMP TABLE heatmap_series AS
WITH keys AS (
    SELECT
        l.exchange, l.metric, l.period, l.coin, l.instrument,
        any_value(w.since) AS since,
        max(l.ts) AS last_ts,
        -- The look-back's sums (the instrument's buckets before the window), in this one pass.
        count(l.x) FILTER (WHERE l.ts < w.since) AS before_n,
        coalesce(sum(l.x) FILTER (WHERE l.ts < w.since), 0) AS before_s,
        coalesce(sum(l.x * l.x) FILTER (WHERE l.ts < w.since), 0) AS before_ss
    FROM (SELECT *, CASE WHEN ratio > 0 THEN ln(ratio) END AS x FROM ls_ratio) AS l
    JOIN refresh_window AS w
        ON w.exchange = l.exchange
       AND w.period = l.period
    WHERE l.ts >= (SELECT min(since) FROM refresh_window) - to_days(CAST($lookback_days AS INTEGER))
      AND l.ts >= w.since - to_days(CAST($lookback_days AS INTEGER))
    GROUP BY l.exchange, l.metric, l.period, l.coin, l.instrument
)
SELECT
    k.*,
    dense_rank() OVER (ORDER BY k.exchange, k.metric, k.period, k.coin) AS sid,
    dense_rank() OVER (ORDER BY k.period, k.exchange, k.metric) AS block,  -- storage order
    row_number() OVER (
        PARTITION BY k.exchange, k.metric, k.period, k.coin
        ORDER BY coalesce(i.in_universe, false) DESC, k.instrument
    ) AS rank,
    count(*) OVER (PARTITION BY k.exchange, k.metric, k.period, k.coin) AS n_instruments
FROM keys AS k
LEFT JOIN instruments AS i
    ON i.exchange = k.exchange
   AND i.instrument = k.instrument;

CREATE OR REPLACE TEMP TABLE heatmap_cells AS
SELECT
    s.sid,
    s.rank,
    s.n_instruments,
    epoch_us(l.ts) AS t,
    epoch_us(s.since) AS since,
    l.ratio,
    CASE WHEN l.ratio > 0 THEN ln(l.ratio) END AS x
FROM ls_ratio AS l
JOIN heatmap_series AS s
    ON s.exchange = l.exchange
   AND s.metric = l.metric
   AND s.period = l.period
   AND s.coin = l.coin
   AND s.instrument = l.instrument
WHERE l.ts >= (SELECT min(since) FROM refresh_window) - to_days(CAST($lookback_days AS INTEGER))
  AND l.ts >= s.since - to_days(CAST($lookback_days AS INTEGER))
  -- Of the look-back, only the buckets that leave a computed bucket's window (those less than
  -- L before the newest bucket read), unless the coin has two instruments to choose between.
  AND (
      l.ts >= s.since
      OR s.n_instruments > 1
      OR l.ts < (SELECT max(last_ts) FROM heatmap_series) - to_days(CAST($lookback_days AS INTEGER))
  );

-- A coin held by two instruments: only the first instrument's bucket stays.
DELETE FROM heatmap_cells AS c
USING (
    SELECT sid, rank, t
    FROM heatmap_cells
    WHERE n_instruments > 1
    QUALIFY row_number() OVER (PARTITION BY sid, t ORDER BY rank) > 1
) AS shadowed
WHERE c.sid = shadowed.sid
  AND c.rank = shadowed.rank
  AND c.t = shadowed.t;

-- Full rebuild (the window starts in 1970, nothing before it): n, s and ss of each bucket over
-- [t - L, t) from prefix sums over each whole series, in Python (pipelines/rolling.py).
CREATE OR REPLACE TEMP VIEW heatmap_history AS
SELECT * FROM heatmap_cells WHERE since = 0;

PYTHON trailing_sums(heatmap_history, $lookback_days) INTO heatmap_windows;

CREATE OR REPLACE TABLE heatmap_matrix AS
WITH logged AS (
    SELECT *, CAST($lookback_days AS BIGINT) * 86400000000 AS lookback
    FROM heatmap_cells
),
-- Incremental refresh (the window starts after 1970): sums from the look-back and events.
before AS (
    SELECT sid, before_n AS n, before_s AS s, before_ss AS ss
    FROM heatmap_series
    WHERE n_instruments = 1
      AND since > TIMESTAMP '1970-01-01'
    UNION ALL
    SELECT sid, count(x) AS n, coalesce(sum(x), 0) AS s, coalesce(sum(x * x), 0) AS ss
    FROM logged
    WHERE t < since
      AND since > 0
      AND n_instruments > 1
    GROUP BY sid
),
events AS (
    SELECT sid, t AS moment, 0 AS leaving, rank, t, ratio, x,
           (x IS NOT NULL)::INTEGER AS dn, coalesce(x, 0) AS ds, coalesce(x * x, 0) AS dss
    FROM logged
    WHERE t >= since
      AND since > 0
    UNION ALL
    SELECT sid, t + lookback AS moment, 1 AS leaving, NULL, NULL, NULL, NULL, -1, -x, -x * x
    FROM logged
    WHERE t + lookback < (SELECT max(t) FROM logged)
      AND x IS NOT NULL
      AND since > 0
),
stepped AS (
    SELECT
        *,
        sum(dn) OVER upto  AS run_n,
        sum(ds) OVER upto  AS run_s,
        sum(dss) OVER upto AS run_ss
    FROM events
    WINDOW upto AS (PARTITION BY sid ORDER BY moment, leaving ROWS UNBOUNDED PRECEDING)
),
windowed AS (
    SELECT
        e.sid,
        e.rank,
        e.t,
        e.ratio,
        e.x,
        coalesce(b.n, 0) + e.run_n - e.dn AS n,
        coalesce(b.s, 0) + e.run_s - e.ds AS s,
        coalesce(b.ss, 0) + e.run_ss - e.dss AS ss
    FROM stepped AS e
    LEFT JOIN before AS b
        ON b.sid = e.sid
    WHERE e.leaving = 0
    UNION ALL
    SELECT sid, rank, t, ratio, x, n, s, ss
    FROM heatmap_windows
),
scored AS (
    SELECT
        *,
        CASE WHEN n >= 2 THEN ss - s * s / n END AS m2
    FROM windowed
)
SELECT
    r.exchange,
    r.metric,
    r.period,
    r.coin,
    make_timestamp(c.t) AS ts,
    c.ratio,
    c.x AS ln_ratio,
    CASE
        WHEN c.n >= $min_history AND c.m2 > 1e-12 * (c.n - 1)
        THEN (c.x - c.s / c.n) / sqrt(c.m2 / (c.n - 1))
    END AS zscore,
    c.n::INTEGER AS zscore_history,
    r.instrument
FROM scored AS c
JOIN heatmap_series AS r
    ON r.sid = c.sid
   AND r.rank = c.rank
-- Stored by period, exchange and metric, then time: an image reads one such block over a window
-- of time, and each block's row groups then span a few days, so DuckDB skips the others (the 32
-- default images' read took 0.75 instead of 1.15 CPU-s; a full rebuild sorts in the same time).
ORDER BY r.block, c.t;

DROP TABLE heatmap_windows;
DROP VIEW heatmap_history;
DROP TABLE heatmap_cells;
DROP TABLE heatmap_series;

COMMENT ON TABLE heatmap_matrix IS 'Coin x time heatmap cells per exchange, metric and period: one row per coin and bucket in ls_ratio (one instrument per coin: the in-universe one where an exchange holds two). Not stored in any order: filter by exchange, metric, period.';
COMMENT ON COLUMN heatmap_matrix.ratio IS 'The coin''s long/short ratio in the bucket (ls_ratio.ratio); NULL when undefined (zero short share)';
COMMENT ON COLUMN heatmap_matrix.ln_ratio IS 'ln(ratio): 0 = balanced, positive = long-heavy; symmetric for 2:1 and 1:2';
COMMENT ON COLUMN heatmap_matrix.zscore IS '(ln_ratio - mean) / sd (sample) of the coin''s ln_ratio over [ts - lookback_days, ts), same exchange/metric/period, the bucket itself excluded; NULL with fewer than min_history earlier observations or no spread (variance below 1e-12)';
COMMENT ON COLUMN heatmap_matrix.zscore_history IS 'Number of earlier non-NULL observations in the trailing window the z-score was computed from';
COMMENT ON COLUMN heatmap_matrix.instrument IS 'The exchange-native instrument the row comes from';
