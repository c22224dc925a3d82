-- coverage: which coin has which metric on which exchange, and how much of it the warehouse holds.
-- expected_coverage (universe coin x metric the exchange publishes x configured period) is
-- registered by the caller from the universe file and the connectors' metric lists.
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
    coalesce(f.days_ok, 0)           AS days_ok,
    coalesce(f.days_empty, 0)        AS days_empty,
    coalesce(f.days_unavailable, 0)  AS days_unavailable,
    coalesce(f.days_failed, 0)       AS days_failed,
    f.last_problem
FROM expected_coverage AS e
LEFT JOIN listed  AS l USING (exchange, coin)
LEFT JOIN stored  AS s USING (exchange, coin, metric, period)
LEFT JOIN fetched AS f USING (exchange, coin, metric, period)
ORDER BY e.exchange, e.coin, e.metric, e.period;

COMMENT ON TABLE coverage IS 'Per exchange, universe coin, published metric and period: listed or not, rows stored, first/last bucket, and how many fetched days were ok, empty, unavailable (beyond the exchange''s reach) or failed.';
