"""The Dagster assets end to end, in-process, against the simulator and a temporary warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from assets.images import heatmap_image_on_request
from pipelines.partitions import partition_key
from pipelines.resources import PipelineSettings
from pipelines.runner import output_assets
from pipelines.simulator import FaultConfig, SimulatorThread
from tests.partition_runs import QUIET, SCALE, YESTERDAY
from tests.partition_runs import ingest as _ingest
from tests.partition_runs import point_at as _point_at


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorThread]:
    with SimulatorThread(port=0, rate_limit_scale=SCALE) as sim:
        yield sim


@pytest.fixture
def sim_env(simulator: SimulatorThread, monkeypatch: pytest.MonkeyPatch) -> SimulatorThread:
    _point_at(monkeypatch, simulator)
    return simulator


def _settings(warehouse: Path, periods: tuple[str, ...] = ("1h",)) -> PipelineSettings:
    return PipelineSettings(warehouse=str(warehouse), periods=list(periods))


def _query(warehouse: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.sql(sql).df()


def test_binance_partition_loads_four_kinds_for_45_plus_coins_and_reruns_identically(
    sim_env: SimulatorThread, warehouse_file: Path
) -> None:
    settings = _settings(warehouse_file)
    assert _ingest(settings, "binance").success  # type: ignore[attr-defined]
    first = _query(warehouse_file, "SELECT * FROM ls_ratio ORDER BY ALL")

    per_metric = first.groupby("metric")["coin"].nunique()
    assert set(per_metric.index) == {
        "global_account",
        "top_account",
        "top_position",
        "taker_volume",
    }
    assert per_metric.min() >= 45
    assert (first.groupby(["coin", "metric"]).size() == 24).all()  # every hour of the day
    assert first["ts"].dt.date.eq(YESTERDAY).all()

    assert _ingest(settings, "binance").success  # type: ignore[attr-defined]
    pd.testing.assert_frame_equal(
        first, _query(warehouse_file, "SELECT * FROM ls_ratio ORDER BY ALL")
    )


def test_bybit_partition_then_derived_tables_and_images(
    sim_env: SimulatorThread, warehouse_file: Path
) -> None:
    settings = _settings(warehouse_file, ("1h", "1d"))
    assert _ingest(settings, "bybit").success  # type: ignore[attr-defined]
    result = materialize(
        output_assets(),
        resources={"settings": settings},
        instance=DagsterInstance.ephemeral(),
        run_config=QUIET,
    )
    assert result.success

    alt = _query(warehouse_file, "SELECT * FROM alt_average WHERE period = '1h'")
    assert len(alt) == 24 and alt["n_coins"].min() >= 44 and alt["btc_ratio"].notna().all()
    btc = _query(warehouse_file, "SELECT * FROM btc_ls WHERE period = '1h'")
    assert len(btc) == 24 and btc["price_close"].notna().all()
    matrix = _query(warehouse_file, "SELECT count(DISTINCT coin) AS n FROM heatmap_matrix")
    assert matrix["n"].iloc[0] >= 45

    images = _query(warehouse_file, "SELECT * FROM heatmap_images ORDER BY path")
    # bybit's own images, its candle flow (from the 5m candles fetched for it) and the
    # cross-exchange view (bybit is the only exchange here)
    drawn = zip(images["exchange"], images["metric"], images["period"], strict=True)
    assert sorted(drawn) == [
        ("bybit", "candle_flow", "1h"),
        ("bybit", "global_account", "1d"),
        ("bybit", "global_account", "1h"),
        ("cross", "global_account", "1d"),
        ("cross", "global_account", "1h"),
    ]
    flow = _query(warehouse_file, "SELECT * FROM candle_flow WHERE period = '1h'")
    assert set(flow["lower_period"].dropna()) == {"5m"} and flow["buy_share"].notna().all()
    assert images["simulated"].all()
    for path in images["path"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(path).is_relative_to(warehouse_file.parent / "images")

    on_request = materialize(
        [*output_assets(), heatmap_image_on_request],
        selection=[heatmap_image_on_request],
        resources={"settings": settings},
        instance=DagsterInstance.ephemeral(),
        run_config={"ops": {"heatmap_image_on_request": {"config": {
            "exchange": "bybit", "period": "1h", "range_days": 30, "theme": "berlin",
            "color_by": "zscore"}}}},
    )  # fmt: skip
    assert on_request.success
    wanted = warehouse_file.parent / "images" / "bybit" / "global_account" / "1h_30d.png"
    assert wanted.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gallery = (warehouse_file.parent / "images" / "index.html").read_text()
    assert "bybit/global_account/1h_30d.png" in gallery and "1h_7d.png" in gallery

    coverage = _query(warehouse_file, "SELECT * FROM coverage WHERE exchange = 'bybit'")
    listed = coverage[coverage["listed"]]
    assert len(listed) >= 45 * 2 and (listed["n_rows"] > 0).all()
    assert (coverage.loc[~coverage["listed"], "n_rows"] == 0).all()


def test_schema_drift_is_recorded_with_the_raw_body_and_fails_the_run_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "drift.duckdb"
    faults = FaultConfig(rate=1.0, kinds=("drift",))
    instance = DagsterInstance.ephemeral()
    with SimulatorThread(port=0, rate_limit_scale=SCALE, faults=faults) as sim:
        _point_at(monkeypatch, sim)
        result = _ingest(_settings(warehouse, ("1d",)), "bybit", instance=instance)
    assert not result.success  # type: ignore[attr-defined]
    failure = next(e for e in result.all_events if e.is_failure)  # type: ignore[attr-defined]
    text = failure.step_failure_data.user_failure_data.description
    assert "bybit" in text and "/v5/market/" in text and "symbol=" in text
    # The partition shows as failed (Dagster: a materialization planned by a run that failed
    # and never made), not as materialized with whatever happened to load.
    attempts = instance.event_log_storage
    failed = attempts.get_latest_asset_partition_materialization_attempts_without_materializations(
        AssetKey("ls_ratio")
    )
    assert set(failed) == {str(partition_key(YESTERDAY, "bybit"))}
    rejected = _query(warehouse, "SELECT * FROM ls_ratio_rejected")
    assert len(rejected) >= 45 and rejected["raw"].str.len().gt(2).all()
    assert rejected["reason"].str.match(r"bybit /v5/market/[a-z-]+ symbol=[A-Z0-9]+USDT: ").all()
    account_ratio = rejected[rejected["metric"] == "global_account"]
    assert account_ratio["reason"].str.contains("lacks field").all()

    # Re-executing the partition once the exchange answers properly fills it and clears it.
    with SimulatorThread(port=0, rate_limit_scale=SCALE) as sim:
        _point_at(monkeypatch, sim)
        rerun = _ingest(_settings(warehouse, ("1d",)), "bybit", instance=instance)
    assert rerun.success  # type: ignore[attr-defined]
    assert (
        not attempts.get_latest_asset_partition_materialization_attempts_without_materializations(
            AssetKey("ls_ratio")
        )
    )
    filled = _query(warehouse, "SELECT count(DISTINCT coin) AS n FROM ls_ratio")
    assert filled["n"].iloc[0] >= 45


def test_a_ban_stops_calls_to_that_exchange_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = FaultConfig(rate=1.0, kinds=("ban",))
    with SimulatorThread(port=0, rate_limit_scale=SCALE, faults=faults) as sim:
        _point_at(monkeypatch, sim)
        result = _ingest(_settings(tmp_path / "ban.duckdb", ("1d",)), "binance")
        served = sum(sim.stats.as_dict()["requests"].values())
    assert not result.success  # type: ignore[attr-defined]
    failure = next(e for e in result.all_events if e.is_failure)  # type: ignore[attr-defined]
    assert "banned" in failure.step_failure_data.user_failure_data.description.lower()
    assert served == 1  # the instrument list was the first call; nothing after the ban
