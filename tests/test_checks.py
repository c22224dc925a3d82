"""Every asset check of the code location, run through the jobs the daemon launches.

A realistic warehouse comes from the `ingest` job itself (each run validates its partition with
the in-step check `rows_valid`) for all six exchanges against the simulator: HTX locked shares
and holes, latest-window series from Bitget and HTX. The `refresh_outputs` job then rebuilds
coverage and the derived tables and runs their checks (the warehouse-wide ones sit on
`coverage`), and `check_warehouse` runs them all on demand.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult

from pipelines.analytics import DERIVED_TABLES
from pipelines.definitions import defs
from pipelines.exchanges import EXCHANGES
from pipelines.partitions import partition_key
from pipelines.simulator import SimulatorThread
from tests.test_incremental import same_rows

SCALE = 0.05
TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
WAREHOUSE_CHECKS = {"ls_ratio_fresh", "ls_ratio_no_gaps", "ls_ratio_rejected_rows"}
WAREHOUSE_CHECKS |= {"ls_ratio_shares_consistent"}
DERIVED_CHECKS = {"heatmap_matrix_cells_consistent", "btc_ls_one_row_per_bucket"}
DERIVED_CHECKS |= {"alt_average_counts_and_means", "signal_zones_consistent"}
DERIVED_CHECKS |= {"divergence_patterns_valid", "cross_exchange_counts_valid"}
DERIVED_CHECKS |= {"candle_flow_shares_valid", "whale_crowd_now_matches_divergence"}


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    severity: str
    metadata: dict[str, Any]


def _checks(result: ExecuteInProcessResult) -> dict[str, CheckOutcome]:
    outcomes = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            outcomes[evaluation.check_name] = CheckOutcome(  # type: ignore[union-attr]
                evaluation.passed,  # type: ignore[union-attr]
                evaluation.severity.value,  # type: ignore[union-attr]
                {k: v.value for k, v in evaluation.metadata.items()},  # type: ignore[union-attr]
            )
    return outcomes


def _run(job: str, partition: str | None = None) -> ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(
        partition_key=partition,
        instance=DagsterInstance.ephemeral(),
        run_config=QUIET,
        raise_on_error=False,
    )


def _environment(monkeypatch: pytest.MonkeyPatch, warehouse: Path) -> None:
    """What the code location reads: the warehouse, periods and pacing (as in `dagster dev`)."""
    monkeypatch.setenv("LSR_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("LSR_PERIODS", "1h")
    monkeypatch.setenv("LSR_RATE_LIMIT_SCALE", str(SCALE))


@dataclass(frozen=True)
class Ingested:
    warehouse: Path
    runs: dict[str, ExecuteInProcessResult]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingested]:
    warehouse = tmp_path_factory.mktemp("checks") / "lsr.duckdb"
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        SimulatorThread(port=0, rate_limit_scale=SCALE) as sim,
    ):
        _environment(monkeypatch, warehouse)
        for name, value in sim.environment.items():
            monkeypatch.setenv(name, value)
        runs = {
            f"{day}|{exchange}": _run("ingest", str(partition_key(day, exchange)))
            for day in (YESTERDAY, TODAY)
            for exchange in EXCHANGES
        }
        yield Ingested(warehouse, runs)


@pytest.fixture
def copy_of(ingested: Ingested, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The realistic warehouse, copied so a test may damage it."""
    copy = tmp_path / "lsr.duckdb"
    shutil.copy(ingested.warehouse, copy)
    _environment(monkeypatch, copy)
    return copy


def test_every_ingestion_run_succeeds_and_validates_its_partition(ingested: Ingested) -> None:
    assert {k: r.success for k, r in ingested.runs.items()} == dict.fromkeys(ingested.runs, True)
    for key, run in ingested.runs.items():
        checks = _checks(run)
        assert set(checks) == {"rows_valid"}, key
        assert checks["rows_valid"].passed and checks["rows_valid"].metadata["rejected_rows"] == 0


def test_refresh_runs_every_check_and_all_pass_on_valid_data(copy_of: Path) -> None:
    result = _run("refresh_outputs")
    assert result.success
    checks = _checks(result)
    assert set(checks) == WAREHOUSE_CHECKS | DERIVED_CHECKS
    assert {n: c.passed for n, c in checks.items()} == dict.fromkeys(checks, True)

    on_demand = _checks(_run("check_warehouse"))
    assert set(on_demand) == set(checks)
    assert all(c.passed for c in on_demand.values())


def test_htx_locked_shares_and_holes_are_valid_data_not_failures(copy_of: Path) -> None:
    with duckdb.connect(str(copy_of), read_only=True) as conn:
        locked = conn.execute(
            "SELECT count(*) FROM ls_ratio WHERE exchange = 'htx' AND locked_share > 0"
        ).fetchall()[0][0]
    assert locked > 100  # rows whose long + short alone is well below 1

    checks = _checks(_run("check_warehouse"))
    assert checks["ls_ratio_shares_consistent"].metadata["share_sum_off"] == 0
    gaps = checks["ls_ratio_no_gaps"]
    assert gaps.passed and gaps.metadata["exchange_holes"] > 0
    assert "htx" in gaps.metadata["series_with_exchange_holes"]
    assert "binance" not in gaps.metadata["series_with_exchange_holes"]


def test_on_an_empty_warehouse_checks_warn_of_missing_data_instead_of_crashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _environment(monkeypatch, tmp_path / "empty.duckdb")
    result = _run("check_warehouse")
    assert result.success  # a failed check is a finding, not a crashed step
    checks = _checks(result)
    assert set(checks) == WAREHOUSE_CHECKS | DERIVED_CHECKS
    failed = {n for n, c in checks.items() if not c.passed}
    # no rows is not fresh; derived tables not built yet cannot be vouched for
    assert failed == {"ls_ratio_fresh"} | DERIVED_CHECKS
    assert {checks[n].severity for n in failed} == {"WARN"}


def test_a_failed_fetch_leaves_a_gap_the_check_names(copy_of: Path) -> None:
    hole = [datetime.combine(YESTERDAY, datetime.min.time()) + timedelta(hours=h) for h in (5, 6)]
    with duckdb.connect(str(copy_of)) as conn:
        conn.execute(
            """DELETE FROM ls_ratio WHERE exchange = 'binance' AND coin = 'ETH'
               AND metric = 'top_position' AND period = '1h' AND ts IN (?, ?)""",
            hole,
        )
        conn.execute(
            """UPDATE partition_log SET status = 'failed' WHERE exchange = 'binance'
               AND coin = 'ETH' AND dataset = 'top_position' AND period = '1h' AND day = ?""",
            [YESTERDAY],
        )
    gaps = _checks(_run("check_warehouse"))["ls_ratio_no_gaps"]
    assert not gaps.passed and gaps.severity == "WARN"
    assert gaps.metadata["missing_buckets"] == 2
    assert f"binance ETH top_position 1h: 2 missing from {hole[0]}" in gaps.metadata["gaps"]


def test_rows_written_around_validation_fail_the_share_check(copy_of: Path) -> None:
    with duckdb.connect(str(copy_of)) as conn:
        conn.execute(
            """UPDATE ls_ratio SET short_share = short_share - 0.1, ratio = long_share / (
                   short_share - 0.1)
               WHERE exchange = 'gate' AND coin = 'BTC' AND metric = 'global_account'"""
        )
        changed = conn.execute(
            "SELECT count(*) FROM ls_ratio WHERE exchange = 'gate' AND coin = 'BTC' "
            "AND metric = 'global_account'"
        ).fetchall()[0][0]
    shares = _checks(_run("check_warehouse"))["ls_ratio_shares_consistent"]
    assert not shares.passed and shares.severity == "ERROR"
    assert shares.metadata["share_sum_off"] == changed > 0
    assert shares.metadata["ratio_inconsistent"] == 0


def _recomputed(result: ExecuteInProcessResult) -> dict[str, str]:
    """Derived table -> what its step recomputed, as the UI shows it (asset metadata)."""
    return {
        table: str(m.metadata["recomputed"].value)
        for table in DERIVED_TABLES
        for m in result.asset_materializations_for_node(table)
    }


def _derived(warehouse: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return {table: conn.sql(f"SELECT * FROM {table}").df() for table in DERIVED_TABLES}


def test_refresh_recomputes_what_an_ingestion_run_changed_and_rebuild_starts_over(
    copy_of: Path,
) -> None:
    first = _run("refresh_outputs")
    assert first.success
    assert set(_recomputed(first).values()) == {"all history (rebuilt)"}  # nothing existed yet
    again = _run("refresh_outputs")
    assert set(_recomputed(again).values()) == {"nothing (no change since the last refresh)"}

    # Binance's L/S rows of today go missing, and today's ingestion run brings them back.
    with duckdb.connect(str(copy_of)) as conn:
        conn.execute("DELETE FROM ls_ratio WHERE exchange = 'binance' AND ts >= ?", [TODAY])
    assert _run("ingest", str(partition_key(TODAY, "binance"))).success
    refreshed = _run("refresh_outputs")
    assert refreshed.success
    recomputed = _recomputed(refreshed)
    assert recomputed["heatmap_matrix"] == f"buckets from {TODAY:%Y-%m-%d} 00:00 on"
    # The candles came back unchanged but for the running hour's (if it moved): from there on.
    price = recomputed["btc_price"]
    if price != "nothing (no change since the last refresh)":
        running = datetime.strptime(price, "buckets from %Y-%m-%d %H:%M on").replace(tzinfo=UTC)
        assert datetime.now(UTC) - running < timedelta(hours=2)
    incremental = _derived(copy_of)
    # Its checks examine the rows it wrote; check_warehouse, run after repairs, examines all.
    heatmap_check = "heatmap_matrix_cells_consistent"
    checks = _checks(refreshed)
    assert {n: c.passed for n, c in checks.items()} == dict.fromkeys(checks, True)
    written = checks[heatmap_check]
    assert written.metadata["checked_from"] == f"{TODAY} 00:00:00"
    assert checks["divergence_patterns_valid"].metadata["checked_from"] == f"{TODAY} 00:00:00"
    everything = _checks(_run("check_warehouse"))[heatmap_check]
    assert everything.metadata["checked_from"] == "all rows"
    assert everything.metadata["rows_checked"] > written.metadata["rows_checked"] > 0

    # Cells of the refreshed window go missing behind the pipeline's back: the next refresh
    # recomputes nothing, and its checks of that window, compared with ls_ratio, name them.
    with duckdb.connect(str(copy_of)) as conn:
        lost = conn.execute(
            "DELETE FROM heatmap_matrix WHERE exchange = 'binance' AND coin = 'ETH' AND ts >= ?",
            [TODAY],
        ).fetchall()[0][0]
    assert lost > 0
    found = _checks(_run("refresh_outputs"))
    assert found[heatmap_check].metadata["checked_from"] == f"{TODAY} 00:00:00"
    assert found[heatmap_check].metadata["violations"]["ls_ratio_buckets_without_cell"] == lost
    assert not found["divergence_patterns_valid"].passed  # its sources lost those buckets

    rebuilt = _run("rebuild_derived")
    assert rebuilt.success
    assert set(_recomputed(rebuilt).values()) == {"all history (rebuilt)"}
    assert all(c.passed for c in _checks(rebuilt).values())
    for table, rows in _derived(copy_of).items():
        same_rows(incremental[table], rows, table)


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root (relative path) -> its inode and modification time."""
    return {
        path.relative_to(root).as_posix(): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file()
    }


def test_the_refresh_run_keeps_the_lake_and_rewrites_what_ingestion_changed(
    copy_of: Path,
) -> None:
    """The lake as the daemon keeps it: the sensor's refresh_outputs run writes it beside the
    warehouse; after today's Binance ingestion the next one replaces Binance's file of today in
    the stored tables and no other stored table's file."""
    first = _run("refresh_outputs")
    assert first.success
    lake = copy_of.parent / "lake"
    (written,) = first.asset_materializations_for_node("parquet_lake")
    assert written.metadata["full"].value is True
    before = _files(lake)
    assert f"ls_ratio/exchange=gate/date={TODAY}/part-0.parquet" in before
    assert "coverage/part-0.parquet" in before and "coverage_gaps/part-0.parquet" in before

    with duckdb.connect(str(copy_of)) as conn:
        conn.execute("DELETE FROM ls_ratio WHERE exchange = 'binance' AND ts >= ?", [TODAY])
    assert _run("ingest", str(partition_key(TODAY, "binance"))).success
    refreshed = _run("refresh_outputs")
    assert refreshed.success
    (written,) = refreshed.asset_materializations_for_node("parquet_lake")
    assert written.metadata["full"].value is False
    after = _files(lake)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    today = f"exchange=binance/date={TODAY}/part-0.parquet"
    stored = {p for p in changed if p.split("/")[0] in ("ls_ratio", "klines", "open_interest")}
    assert f"ls_ratio/{today}" in stored
    assert {p.split("/", 1)[1] for p in stored} == {today}
    with duckdb.connect(str(copy_of), read_only=True) as conn:
        expected = conn.execute("SELECT count(*) FROM ls_ratio").fetchall()[0][0]
    glob = f"{lake}/ls_ratio/**/*.parquet"
    query = f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"
    with duckdb.connect() as reader:
        assert reader.sql(query).fetchall()[0][0] == expected
