-- whale_crowd_now: which coins' whales lean against their crowd right now, and since when.
-- One row per exchange, period and coin whose whale_crowd row (divergence) in the latest bucket
-- of that exchange and period is whales_long_crowd_short or whales_short_crowd_long, with the
-- run it belongs to (pattern_since, pattern_buckets: a missing bucket or a bucket with another
-- or no pattern ends a run, see divergence.sql) and the numbers behind it.
--
-- "Now" is the latest bucket of any whale_crowd row of that exchange and period, not each coin's
-- own last row: a coin whose latest reading is older (delisted, or its feed stopped) is not
-- listed, because its state now is unknown. A coin with only one of the two kinds in that bucket
-- has no pattern and is not listed either. For the same reason an exchange and period whose
-- latest bucket is more than two days older than the newest row of divergence (a feed that
-- stopped) has no "now"; it also keeps this refresh to the last days of divergence, not all of it.
--
-- A table, not a view: it is small, and rebuilt right after divergence in every refresh (it reads
-- divergence, so its asset depends on it), where a view would search divergence's last two days
-- at every read.
CREATE OR REPLACE TABLE whale_crowd_now AS
WITH whale_crowd AS (
    SELECT *
    FROM divergence
    WHERE scope = 'whale_crowd'
      AND ts >= (SELECT max(ts) FROM divergence) - INTERVAL 2 DAY
),
latest AS (
    SELECT exchange, period, max(ts) AS ts
    FROM whale_crowd
    GROUP BY exchange, period
)
SELECT
    w.exchange,
    w.period,
    w.coin,
    w.ts,
    w.pattern,
    w.pattern_since,
    w.pattern_buckets,
    w.whale_ratio,
    w.crowd_ratio,
    w.whale_zscore,
    w.crowd_zscore,
    w.side_zscore_threshold
FROM whale_crowd AS w
JOIN latest AS l
    ON l.exchange = w.exchange
   AND l.period = w.period
   AND l.ts = w.ts
WHERE w.pattern IN ('whales_long_crowd_short', 'whales_short_crowd_long');

COMMENT ON TABLE whale_crowd_now IS 'Coins whose whales (top traders by position size) lean against their crowd (all accounts) in the latest bucket of each exchange and period, and since when: the divergence whale_crowd rows with pattern whales_long_crowd_short or whales_short_crowd_long in that bucket. Not stored in any order.';
COMMENT ON COLUMN whale_crowd_now.ts IS 'The latest bucket of this exchange and period in divergence (scope whale_crowd)';
COMMENT ON COLUMN whale_crowd_now.pattern IS 'whales_long_crowd_short (whales leaning long against their own history, the crowd short) or whales_short_crowd_long';
COMMENT ON COLUMN whale_crowd_now.pattern_since IS 'First bucket of the unbroken run of this pattern that reaches ts (a missing bucket, or one with another or no pattern, ends a run)';
COMMENT ON COLUMN whale_crowd_now.pattern_buckets IS 'Buckets in the run, ts included (1 = new in this bucket)';
COMMENT ON COLUMN whale_crowd_now.whale_ratio IS 'top_position ratio in the bucket';
COMMENT ON COLUMN whale_crowd_now.crowd_ratio IS 'global_account ratio in the bucket';
COMMENT ON COLUMN whale_crowd_now.whale_zscore IS 'z-score of ln(whale_ratio) against its own trailing history (heatmap_matrix.zscore)';
COMMENT ON COLUMN whale_crowd_now.crowd_zscore IS 'z-score of ln(crowd_ratio) against its own trailing history';
COMMENT ON COLUMN whale_crowd_now.side_zscore_threshold IS 'divergence_side_zscore: the |z-score| beyond which a side reads long or short';
