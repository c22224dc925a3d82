"""The Dagster code location loads, and its schedule asks for the right partitions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import AssetKey, build_schedule_context

from pipelines import analytics
from pipelines.analytics import DERIVED_TABLES
from pipelines.definitions import defs
from pipelines.exchanges import EXCHANGES
from pipelines.schedules import hourly_poll


def test_definitions_load_with_groups_in_pipeline_order() -> None:
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups["ls_ratio"] == "ingest"
    assert groups["coverage"] == "warehouse"
    assert groups["heatmap_matrix"] == "analytics"
    assert groups["heatmap_images"] == "images"
    assert defs.resolve_job_def("ingest").partitions_def is not None


def test_lineage_shows_what_each_derived_table_reads_in_its_sql() -> None:
    """Read from the SQL files (their FROM and JOIN clauses), as checked by hand here: the UI's
    lineage and the refresh order follow the SQL, never a second list that can drift from it."""
    graph = defs.resolve_asset_graph()

    def parents(table: str) -> set[str]:
        return {key.to_user_string() for key in graph.get(AssetKey(table)).parent_keys}

    assert parents("heatmap_matrix") == {"ls_ratio"}  # instruments is a table, not an asset
    assert parents("candle_flow") == {"klines"}
    assert parents("btc_ls") == {"heatmap_matrix", "ls_ratio", "klines"}
    assert parents("cross_exchange") == {"heatmap_matrix", "open_interest", "klines"}
    assert parents("signal_zones") == {"btc_ls", "alt_average"}
    assert parents("divergence") == {"heatmap_matrix", "signal_zones"}
    assert parents("whale_crowd_now") == {"divergence"}
    order = list(DERIVED_TABLES)
    for table in order:
        for parent in parents(table) & set(order):
            assert order.index(parent) < order.index(table), f"{parent} refreshed after {table}"
    # The images read every view's tables: the cross view's and candle flow's too.
    assert parents("btc_price") == {"klines"}
    assert parents("heatmap_images") == {
        "heatmap_matrix", "btc_ls", "alt_average", "signal_zones", "cross_exchange", "cross_lines",
        "btc_price", "coverage", "candle_flow", "divergence", "whale_crowd_now",
    }  # fmt: skip
    description = graph.get(AssetKey("btc_ls")).description or ""
    assert description.startswith("BTC long/short ratio and BTC close price per bucket")


def test_a_model_that_does_not_say_what_it_holds_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orphan.sql").write_text("CREATE OR REPLACE TABLE orphan AS SELECT 1 AS x;\n")
    monkeypatch.setattr(analytics, "SQL_DIR", tmp_path)
    analytics.derived_tables.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"orphan\.sql: no COMMENT ON TABLE orphan"):
            analytics.derived_tables()
    finally:
        analytics.derived_tables.cache_clear()


def test_a_model_that_stores_its_rows_under_another_name_needs_a_view_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers find a model by its file's name: rows stored under another name must be read
    through a view of that name (as divergence reads divergence_rows)."""
    comment = "COMMENT ON TABLE stray IS 'rows';\n"
    (tmp_path / "stray.sql").write_text(
        "CREATE OR REPLACE TABLE elsewhere AS SELECT 1 AS x;\n" + comment
    )
    monkeypatch.setattr(analytics, "SQL_DIR", tmp_path)
    analytics.derived_tables.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"stray\.sql: one CREATE OR REPLACE TABLE"):
            analytics.derived_tables()
        view = "CREATE OR REPLACE VIEW stray AS SELECT x FROM elsewhere;\n"
        (tmp_path / "stray.sql").write_text(
            "CREATE OR REPLACE TABLE elsewhere AS SELECT 1 AS x;\n" + view + comment
        )
        analytics.derived_tables.cache_clear()
        assert analytics.derived_tables()["stray"].stored == "elsewhere"
    finally:
        analytics.derived_tables.cache_clear()


def test_ingestion_is_partitioned_by_day_and_all_six_exchanges() -> None:
    partitions = defs.resolve_asset_graph().get(AssetKey("ls_ratio")).partitions_def
    assert partitions is not None
    keys = partitions.get_partition_keys(current_time=datetime(2026, 11, 23, tzinfo=UTC))
    assert {k.split("|")[1] for k in keys} == set(EXCHANGES) and len(EXCHANGES) == 6
    assert "2026-11-23|binance" in keys  # today is a partition (hourly polls fill it)


def test_hourly_poll_requests_today_and_in_the_small_hours_yesterday_too() -> None:
    midday = build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 23, 13, 7, tzinfo=UTC)
    )
    requests = hourly_poll(midday)
    assert {r.partition_key for r in requests} == {f"2026-11-23|{e}" for e in EXCHANGES}

    small_hours = build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 23, 0, 7, tzinfo=UTC)
    )
    keys = {r.partition_key for r in hourly_poll(small_hours)}
    assert {f"2026-11-22|{e}" for e in EXCHANGES} <= keys
    assert len({r.run_key for r in requests}) == len(requests)
