-- coverage: which coin has which metric on which exchange, and how much of it the warehouse holds;
-- coverage_gaps: every hole longer than one bucket between a series' first and last bucket.
-- expected_coverage (universe coin x metric the exchange publishes x configured period, with the
-- period's length in seconds) is registered by the caller from the universe file and the
-- connectors' metric lists.
CREATE OR REPLACE TABLE coverage_gaps AS
WITH lengths AS (
    SELECT DISTINCT period, to_seconds(bucket_seconds) AS bucket FROM expected_coverage
),
-- Most series have no hole, and one GROUP BY shows which: those held under one instrument whose
-- buckets all lie on the period's grid and number exactly the buckets from the first to the
-- last. Only the other series need their rows in order (measured on five generated years: 33 s
-- for the window over every row, every hour, against 5 s with the count).
whole AS (
    SELECT b.exchange, b.coin, b.metric, b.period
    FROM ls_ratio AS b
    JOIN lengths AS l USING (period)
    GROUP BY b.exchange, b.coin, b.metric, b.period, l.bucket
    HAVING min(b.instrument) = max(b.instrument)
       AND min(epoch_us(b.ts) % epoch_us(l.bucket)) = max(epoch_us(b.ts) % epoch_us(l.bucket))
       AND count(*) = (epoch(max(b.ts)) - epoch(min(b.ts))) // epoch(l.bucket) + 1
),
-- Per coin, not per instrument: a coin held under two instruments has a bucket if either has.
-- Where both have it, one of the two rows is followed by the other (next_ts = ts, no hole), so
-- the rows need no DISTINCT first (which cost as much again as the window: 14 s against 8 s
-- over a generated year).
steps AS (
    SELECT b.exchange, b.coin, b.metric, b.period, b.ts, l.bucket,
           lead(b.ts) OVER (PARTITION BY b.exchange, b.coin, b.metric, b.period ORDER BY b.ts)
               AS next_ts
    FROM ls_ratio AS b
    JOIN lengths AS l USING (period)
    ANTI JOIN whole AS w
        ON w.exchange = b.exchange
       AND w.coin = b.coin
       AND w.metric = b.metric
       AND w.period = b.period
),
holes AS (
    SELECT exchange, coin, metric, period,
           ts + bucket       AS first_missing,
           next_ts - bucket  AS last_missing,
           (epoch(next_ts) - epoch(ts)) // epoch(bucket) - 1 AS missing_buckets
    FROM steps
    WHERE next_ts - ts > 2 * bucket
)
SELECT
    h.exchange, h.coin, h.metric, h.period, h.first_missing, h.last_missing,
    h.missing_buckets::BIGINT AS missing_buckets,
    CASE
        WHEN count(p.day) FILTER (WHERE p.status = 'failed') > 0 THEN 'fetch failed'
        WHEN count(p.day) FILTER (WHERE p.status = 'unavailable') > 0 THEN 'beyond the exchange''s reach'
        WHEN count(p.day) = 0 THEN 'not fetched'
        ELSE 'the exchange published no rows'
    END AS cause,
    arg_max(p.detail, p.day) FILTER (WHERE p.status <> 'ok') AS last_problem
FROM holes AS h
LEFT JOIN partition_log AS p
       ON p.exchange = h.exchange AND p.coin = h.coin AND p.dataset = h.metric
      AND p.period = h.period
      AND p.day BETWEEN h.first_missing::DATE AND h.last_missing::DATE
GROUP BY ALL
ORDER BY h.exchange, h.coin, h.metric, h.period, h.first_missing;

CREATE OR REPLACE TABLE coverage AS
WITH listed AS (
    SELECT exchange, coin, min(instrument) AS instrument
    FROM instruments
    WHERE in_universe
    GROUP BY exchange, coin
),
stored AS (
    SELECT exchange, coin, metric, period,
           count(*) AS n_rows, min(ts) AS first_ts, max(ts) AS last_ts
    FROM ls_ratio
    GROUP BY exchange, coin, metric, period
),
fetched AS (
    SELECT exchange, coin, dataset AS metric, period,
           count(*) FILTER (WHERE status = 'ok')          AS days_ok,
           count(*) FILTER (WHERE status = 'empty')       AS days_empty,
           count(*) FILTER (WHERE status = 'unavailable') AS days_unavailable,
           count(*) FILTER (WHERE status = 'failed')      AS days_failed,
           arg_max(detail, day) FILTER (WHERE status <> 'ok') AS last_problem
    FROM partition_log
    GROUP BY exchange, coin, dataset, period
),
gaps AS (
    SELECT exchange, coin, metric, period,
           count(*) AS n_gaps, sum(missing_buckets) AS missing_buckets
    FROM coverage_gaps
    GROUP BY exchange, coin, metric, period
)
SELECT
    e.exchange,
    e.coin,
    e.metric,
    e.period,
    l.instrument,
    l.instrument IS NOT NULL         AS listed,
    coalesce(s.n_rows, 0)::BIGINT    AS n_rows,
    s.first_ts,
    s.last_ts,
    coalesce(g.n_gaps, 0)::BIGINT           AS n_gaps,
    coalesce(g.missing_buckets, 0)::BIGINT  AS missing_buckets,
    coalesce(f.days_ok, 0)           AS days_ok,
    coalesce(f.days_empty, 0)        AS days_empty,
    coalesce(f.days_unavailable, 0)  AS days_unavailable,
    coalesce(f.days_failed, 0)       AS days_failed,
    f.last_problem
FROM expected_coverage AS e
LEFT JOIN listed  AS l USING (exchange, coin)
LEFT JOIN stored  AS s USING (exchange, coin, metric, period)
LEFT JOIN fetched AS f USING (exchange, coin, metric, period)
LEFT JOIN gaps    AS g USING (exchange, coin, metric, period)
ORDER BY e.exchange, e.coin, e.metric, e.period;

COMMENT ON TABLE coverage IS 'Per exchange, universe coin, published metric and period: listed or not, rows stored, first/last bucket, holes between them (detail in coverage_gaps), and how many fetched days were ok, empty, unavailable (beyond the exchange''s reach) or failed.';
COMMENT ON TABLE coverage_gaps IS 'Every hole longer than one bucket between the first and last stored bucket of an exchange, coin, metric and period (a single missing bucket is how exchanges publish, not a gap worth a row).';
COMMENT ON COLUMN coverage_gaps.first_missing IS 'The first bucket start with no row';
COMMENT ON COLUMN coverage_gaps.last_missing IS 'The last bucket start with no row (the next bucket has one)';
COMMENT ON COLUMN coverage_gaps.cause IS 'From partition_log for the days of the hole: fetch failed, beyond the exchange''s reach (unavailable), not fetched (no day of it logged), or the exchange published no rows (fetched ok)';
COMMENT ON COLUMN coverage.n_gaps IS 'Holes longer than one bucket between first_ts and last_ts (rows of coverage_gaps)';
COMMENT ON COLUMN coverage.missing_buckets IS 'Buckets missing in those holes';
