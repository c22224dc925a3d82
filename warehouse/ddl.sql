-- The warehouse's stored tables. Derived tables live in warehouse/sql/<table>.sql.
-- All timestamps are UTC (TIMESTAMP without zone; the connection runs SET TimeZone='UTC').

CREATE TABLE IF NOT EXISTS ls_ratio (
    exchange     VARCHAR   NOT NULL,
    coin         VARCHAR   NOT NULL,
    instrument   VARCHAR   NOT NULL,
    metric       VARCHAR   NOT NULL,
    period       VARCHAR   NOT NULL,
    ts           TIMESTAMP NOT NULL,
    long_share   DOUBLE,
    short_share  DOUBLE,
    ratio        DOUBLE,
    source_ratio DOUBLE,
    fetched_at   TIMESTAMP NOT NULL,
    source_ts    BIGINT,
    locked_share DOUBLE,
    derived_from VARCHAR,
    PRIMARY KEY (exchange, instrument, metric, period, ts)
);
COMMENT ON TABLE ls_ratio IS 'One long/short observation per exchange, instrument, metric kind, period and UTC bucket start. Never deleted by a later fetch; a refetch that changes a value overwrites it.';
COMMENT ON COLUMN ls_ratio.metric IS 'global_account (all accounts, by count), top_account (top traders, by count), top_position (top traders, by position size), taker_volume (taker buy vs sell volume)';
COMMENT ON COLUMN ls_ratio.long_share IS 'Share of longs 0..1 (accounts, position size or taker buy volume)';
COMMENT ON COLUMN ls_ratio.ratio IS 'long_share / short_share recomputed from the shares; NULL when undefined (never 0 or inf)';
COMMENT ON COLUMN ls_ratio.source_ratio IS 'The ratio exactly as the exchange published it, if it published one';
COMMENT ON COLUMN ls_ratio.fetched_at IS 'When this value was first fetched (UTC); unchanged by refetches that return the same value';
COMMENT ON COLUMN ls_ratio.locked_share IS 'Share of accounts neither long nor short, where published (HTX locked_ratio); long + short + locked = 1';
COMMENT ON COLUMN ls_ratio.derived_from IS 'NULL when the exchange publishes the period natively; else the finer period whose snapshot at the bucket start this row is (HTX 1d = its 4h row at 00:00 UTC)';
COMMENT ON COLUMN ls_ratio.source_ts IS 'The exchange''s own timestamp of the row, epoch milliseconds';

-- Added with the Binance Vision archive: rows stored before came from the REST APIs.
ALTER TABLE ls_ratio ADD COLUMN IF NOT EXISTS source VARCHAR DEFAULT 'rest';
COMMENT ON COLUMN ls_ratio.source IS 'Where the row came from: rest (the exchange''s API) or archive (Binance Vision daily metrics files, the five-minute snapshot at the bucket time). Where both have a bucket the REST row is kept: an archive row never replaces a REST row';

CREATE TABLE IF NOT EXISTS ls_ratio_rejected (
    rejection_id VARCHAR PRIMARY KEY,
    exchange     VARCHAR NOT NULL,
    endpoint     VARCHAR,
    instrument   VARCHAR,
    coin         VARCHAR,
    metric       VARCHAR,
    period       VARCHAR,
    ts           TIMESTAMP,
    reason       VARCHAR NOT NULL,
    raw          VARCHAR NOT NULL,
    fetched_at   TIMESTAMP NOT NULL,
    partition_day DATE
);
COMMENT ON TABLE ls_ratio_rejected IS 'Rows (or whole responses) that failed validation or parsing, with the reason and the raw value; the full body is in the landing zone.';

CREATE TABLE IF NOT EXISTS klines (
    exchange         VARCHAR   NOT NULL,
    coin             VARCHAR   NOT NULL,
    instrument       VARCHAR   NOT NULL,
    period           VARCHAR   NOT NULL,
    ts               TIMESTAMP NOT NULL,
    open             DOUBLE,
    high             DOUBLE,
    low              DOUBLE,
    close            DOUBLE,
    volume           DOUBLE,
    quote_volume     DOUBLE,
    taker_buy_volume DOUBLE,
    fetched_at       TIMESTAMP NOT NULL,
    derived_from     VARCHAR,
    PRIMARY KEY (exchange, instrument, period, ts)
);
COMMENT ON TABLE klines IS 'Candles per exchange-native instrument (prices in the instrument''s own units: 1000PEPEUSDT quotes 1,000 PEPE). ts = candle open time (UTC).';
COMMENT ON COLUMN klines.taker_buy_volume IS 'Base volume bought by takers, where the exchange publishes it (Binance), else NULL';

CREATE TABLE IF NOT EXISTS open_interest (
    exchange            VARCHAR   NOT NULL,
    coin                VARCHAR   NOT NULL,
    instrument          VARCHAR   NOT NULL,
    period              VARCHAR   NOT NULL,
    ts                  TIMESTAMP NOT NULL,
    open_interest       DOUBLE,
    open_interest_value DOUBLE,
    fetched_at          TIMESTAMP NOT NULL,
    derived_from        VARCHAR,
    PRIMARY KEY (exchange, instrument, period, ts)
);
ALTER TABLE open_interest ADD COLUMN IF NOT EXISTS source VARCHAR DEFAULT 'rest';
COMMENT ON COLUMN open_interest.source IS 'rest (the exchange''s API) or archive (Binance Vision daily metrics files); an archive row never replaces a REST row';
COMMENT ON COLUMN open_interest.open_interest IS 'Open interest in the instrument''s base units (Binance sumOpenInterest, Bybit openInterest)';
COMMENT ON COLUMN open_interest.open_interest_value IS 'Open interest in USDT where published (Binance sumOpenInterestValue), else NULL';

CREATE TABLE IF NOT EXISTS instruments (
    exchange    VARCHAR NOT NULL,
    instrument  VARCHAR NOT NULL,
    coin        VARCHAR NOT NULL,
    base_asset  VARCHAR NOT NULL,
    multiplier  INTEGER NOT NULL,
    onboard_at  TIMESTAMP,
    in_universe BOOLEAN NOT NULL,
    first_seen  TIMESTAMP NOT NULL,
    last_seen   TIMESTAMP NOT NULL,
    PRIMARY KEY (exchange, instrument)
);
COMMENT ON TABLE instruments IS 'USDT perpetuals each exchange lists (from its instrument endpoint); in_universe marks the instrument chosen for a universe coin.';

CREATE TABLE IF NOT EXISTS partition_log (
    exchange  VARCHAR NOT NULL,
    day       DATE    NOT NULL,
    dataset   VARCHAR NOT NULL,
    coin      VARCHAR NOT NULL,
    period    VARCHAR NOT NULL,
    status    VARCHAR NOT NULL,
    rows      INTEGER NOT NULL,
    detail    VARCHAR,
    simulated BOOLEAN NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (exchange, day, dataset, coin, period)
);
-- Added after the first release: warehouses created before gain them here.
ALTER TABLE partition_log ADD COLUMN IF NOT EXISTS window_start TIMESTAMP;
ALTER TABLE partition_log ADD COLUMN IF NOT EXISTS window_end TIMESTAMP;
COMMENT ON COLUMN partition_log.window_start IS 'Start of the part of the day asked of the exchange (its reach may cut the day); NULL when nothing was asked';
COMMENT ON COLUMN partition_log.window_end IS 'End (exclusive) of the part of the day asked of the exchange: the fetch time for today';
COMMENT ON TABLE partition_log IS 'What the last fetch of each exchange/day/dataset/coin/period found: ok, empty, unavailable (out of the exchange''s reach), failed (see detail).';

CREATE TABLE IF NOT EXISTS landed_files (
    path     VARCHAR PRIMARY KEY,
    status   VARCHAR NOT NULL,
    detail   VARCHAR,
    ls_rows  BIGINT,
    noted_at TIMESTAMP NOT NULL
);
COMMENT ON TABLE landed_files IS 'Each landing-zone file the loader has taken: loaded (its rows stored, in the same transaction), or unloadable (detail says why; the file stays in the zone). Files not listed here wait for the loader.';
COMMENT ON COLUMN landed_files.path IS 'Relative to the landing root: exchange=<x>/date=<partition day>/<stamp>-<first day>-<last day>-<id>.fetch.parquet';

CREATE TABLE IF NOT EXISTS heatmap_images (
    path         VARCHAR PRIMARY KEY,
    exchange     VARCHAR NOT NULL,
    metric       VARCHAR NOT NULL,
    period       VARCHAR NOT NULL,
    range        VARCHAR NOT NULL,
    theme        VARCHAR NOT NULL,
    color_by     VARCHAR NOT NULL,
    data_end     TIMESTAMP,
    n_coins      INTEGER NOT NULL,
    n_buckets    INTEGER NOT NULL,
    simulated    BOOLEAN NOT NULL,
    bytes        BIGINT NOT NULL,
    generated_at TIMESTAMP NOT NULL
);
COMMENT ON TABLE heatmap_images IS 'PNG heatmaps written under warehouse/images/<exchange>/<metric>/<period>_<range>.png, one row per file (the latest render).';

-- What this warehouse holds, decided by its first write and never changed: real exchange data
-- or the simulator's. One row at most (the key can only be true).
CREATE TABLE IF NOT EXISTS warehouse_origin (
    only_row   BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    origin     VARCHAR NOT NULL CHECK (origin IN ('exchanges', 'simulated')),
    decided_at TIMESTAMP NOT NULL
);
COMMENT ON TABLE warehouse_origin IS 'Whether this file holds real exchange data (origin = exchanges) or the simulator''s (simulated); set by the first write, every later write must match';

-- Incremental refresh of the derived tables (pipelines/analytics.py). Every write to ls_ratio,
-- klines or open_interest notes here, in its own transaction, the earliest bucket it changed per
-- exchange and period; each derived table notes the same for its own rows when it refreshes.
-- A derived table then recomputes only from those buckets on, and records in derived_state which
-- change it has taken in, in the transaction that writes its rows: a crash between ingestion and
-- refresh loses nothing, the next refresh picks the changes up.
CREATE SEQUENCE IF NOT EXISTS derived_change_id;
CREATE TABLE IF NOT EXISTS derived_changes (
    id        BIGINT PRIMARY KEY DEFAULT nextval('derived_change_id'),
    source    VARCHAR   NOT NULL,
    exchange  VARCHAR   NOT NULL,
    period    VARCHAR   NOT NULL,
    since     TIMESTAMP NOT NULL,
    logged_at TIMESTAMP NOT NULL
);
COMMENT ON TABLE derived_changes IS 'Which buckets changed in which table since the derived tables last read them: one row per write, exchange and period (exchange and period * with since 1970-01-01 after a full rebuild). Rows every reader has taken in are pruned.';
COMMENT ON COLUMN derived_changes.source IS 'The table whose rows changed: ls_ratio, klines, open_interest or a derived table';
COMMENT ON COLUMN derived_changes.since IS 'The earliest bucket start (ts) written with a new or changed value';

CREATE TABLE IF NOT EXISTS derived_state (
    model        VARCHAR PRIMARY KEY,
    consumed_id  BIGINT    NOT NULL,
    fingerprint  VARCHAR   NOT NULL,
    rebuilt_at   TIMESTAMP NOT NULL,
    refreshed_at TIMESTAMP NOT NULL,
    recomputed_since TIMESTAMP NOT NULL
);
COMMENT ON TABLE derived_state IS 'Per derived table: the last derived_changes row it has taken in, and a fingerprint of its SQL, settings and universe (a different one rebuilds it in full).';
COMMENT ON COLUMN derived_state.recomputed_since IS 'The earliest bucket the last refresh that recomputed anything wrote (1970-01-01 after a full rebuild): the rows the table''s asset checks examine';

-- The Parquet lake (pipelines/lake.py): what each table's files hold, so that a refresh rewrites
-- only the partitions whose rows changed. The lake reads derived_changes like a derived table
-- does; notes are pruned only once the lake's tables have taken them in too.
CREATE TABLE IF NOT EXISTS lake_tables (
    table_name         VARCHAR   PRIMARY KEY,
    consumed_id        BIGINT    NOT NULL,
    root               VARCHAR   NOT NULL,
    schema_hash        VARCHAR   NOT NULL,
    refreshed_at       TIMESTAMP NOT NULL,
    written_in_full_at TIMESTAMP NOT NULL
);
COMMENT ON TABLE lake_tables IS 'Per table of the Parquet lake: the last derived_changes row its files have taken in, the lake root and a hash of the files'' schema (another root or schema rewrites the table in full)';
CREATE TABLE IF NOT EXISTS lake_partitions (
    table_name  VARCHAR   NOT NULL,
    partition   VARCHAR   NOT NULL,
    exchange    VARCHAR,
    day         DATE,
    rows        BIGINT    NOT NULL,
    fingerprint UBIGINT   NOT NULL,
    written_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (table_name, partition)
);
COMMENT ON TABLE lake_partitions IS 'One row per file of the Parquet lake: <root>/<table_name>/<partition>/part-0.parquet, with the rows and the fingerprint (bit_xor of the rows'' hashes) it was written with; a partition whose fingerprint moved is rewritten';
COMMENT ON COLUMN lake_partitions.partition IS 'The folder below the table''s, e.g. exchange=binance/date=2026-11-30; empty for a table kept in one file';
