"""Exchange access as a Dagster resource: the resource, not the environment, says where the
exchanges are; the environment only fills what the resource leaves empty."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, materialize

from assets.ingest import ingest_exchange_day
from pipelines.exchanges import EXCHANGES, binance_archive, bybit, okx
from pipelines.partitions import partition_key
from pipelines.resources import ExchangeAccess, PipelineSettings
from pipelines.simulator import SimulatorThread
from tests.partition_runs import QUIET, SCALE, YESTERDAY


@pytest.fixture
def no_moved_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the environment points anywhere: only the resource can."""
    for name in [*EXCHANGES, "binance_archive"]:
        monkeypatch.delenv(f"LSR_{name.upper()}_BASE_URL", raising=False)
    monkeypatch.delenv("LSR_BINANCE_ARCHIVE_URL", raising=False)
    monkeypatch.delenv("LSR_RATE_LIMIT_SCALE", raising=False)


def test_a_partition_run_goes_where_the_resource_says(no_moved_hosts: None, tmp_path: Path) -> None:
    """As `lsr demo` runs it: the simulator's hosts handed to Dagster as the resource."""
    warehouse = tmp_path / "lsr.duckdb"
    with SimulatorThread(port=0, rate_limit_scale=SCALE, exchanges=("okx",)) as sim:
        result = materialize(
            [ingest_exchange_day],
            partition_key=str(partition_key(YESTERDAY, "okx")),
            resources={
                "settings": PipelineSettings(warehouse=str(warehouse), periods=["1h"]),
                "exchanges": ExchangeAccess.at_simulator(sim.base_urls, SCALE),
            },
            instance=DagsterInstance.ephemeral(),
            run_config=QUIET,
            raise_on_error=False,
        )
        served = sim.stats_snapshot()
    assert result.success
    assert sum(n for n in served["requests"].values()) > 0  # the simulator answered them all
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        (simulated,) = conn.execute("SELECT bool_and(simulated) FROM partition_log").fetchone()
        (rows,) = conn.execute("SELECT count(*) FROM ls_ratio WHERE exchange = 'okx'").fetchone()
    assert simulated and rows > 0


def test_the_environment_fills_only_what_the_resource_leaves_empty(
    no_moved_hosts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ExchangeAccess().hosts() == {}  # the exchanges' own hosts
    assert ExchangeAccess().limit_scale() == 1.0  # at their real limits
    monkeypatch.setenv("LSR_OKX_BASE_URL", "http://127.0.0.1:9/okx")
    monkeypatch.setenv("LSR_BINANCE_ARCHIVE_URL", "http://127.0.0.1:9/vision")
    monkeypatch.setenv("LSR_RATE_LIMIT_SCALE", "0.5")
    from_environment = ExchangeAccess()
    assert from_environment.hosts() == {
        "okx": "http://127.0.0.1:9/okx",
        binance_archive.VENUE.name: "http://127.0.0.1:9/vision",
    }
    assert from_environment.limit_scale() == 0.5
    chosen = ExchangeAccess(base_urls={"okx": "http://127.0.0.1:8/okx"}, rate_limit_scale=0.1)
    assert chosen.hosts()["okx"] == "http://127.0.0.1:8/okx"
    client = chosen.client()
    assert client.rate_limit_scale == 0.1
    assert client.base_url(okx.profile()) == "http://127.0.0.1:8/okx"
    assert client.base_url(bybit.profile()) == bybit.DEFAULT_BASE_URL  # not moved: its own host


def test_a_misspelt_exchange_in_base_urls_is_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match=r"unknown exchanges \['OKX'\]; known: binance, bybit"):
        ExchangeAccess(base_urls={"OKX": "http://127.0.0.1:9/okx"}).client()


def test_the_folders_beside_the_warehouse_have_one_home(tmp_path: Path) -> None:
    settings = PipelineSettings(warehouse=str(tmp_path / "w" / "lsr.duckdb"))
    folders = (settings.images_dir(), Path(settings.landing_root()), settings.lake_dir())
    assert [f.relative_to(tmp_path / "w").as_posix() for f in folders] == [
        "images",
        "landing",
        "lake",
    ]


def test_the_lake_goes_where_it_is_told_and_only_to_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LSR_LAKE", str(tmp_path / "shared"))
    settings = PipelineSettings(warehouse=str(tmp_path / "w" / "lsr.duckdb"))
    assert settings.lake_dir() == tmp_path / "shared"
    assert PipelineSettings(lake=str(tmp_path / "mine")).lake_dir() == tmp_path / "mine"
    monkeypatch.setenv("LSR_LAKE", "s3://bucket/lake")
    with pytest.raises(ValueError, match="give a local folder"):
        settings.lake_dir()
    settings.run_inputs()  # ingestion does not depend on the lake: it still runs
