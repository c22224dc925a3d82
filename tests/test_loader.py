"""The landing zone and the one loader: fetch workers land, one writer stores, replays re-parse."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context

from pipelines.cli import main
from pipelines.definitions import defs
from pipelines.exchanges import EXCHANGES, bybit
from pipelines.ingest import PartitionFetch, fetch_partition
from pipelines.landing import LandedFile, LandingZone, Manifest, replay
from pipelines.loader import load_waiting
from pipelines.partitions import partition_key
from pipelines.resources import ExchangeAccess, PipelineSettings
from pipelines.sensors import load_after_landing, refresh_after_ingestion
from pipelines.simulator import SimulatorThread
from pipelines.universe import load_universe
from pipelines.warehouse import connect
from tests.partition_runs import QUIET, SCALE, YESTERDAY, ingest, point_at

PERIODS = ("4h",)
LS_SQL = (
    "SELECT exchange, coin, metric, period, ts, long_share, short_share, ratio FROM ls_ratio "
    "WHERE ts::DATE = $day ORDER BY ALL"
)


async def _fetch(exchange: str, sim: SimulatorThread) -> PartitionFetch:
    return await fetch_partition(
        exchange,
        YESTERDAY,
        universe=load_universe(),
        periods=PERIODS,
        client=ExchangeAccess.at_simulator(sim.base_urls, SCALE).client(),
    )


def _land(zone: LandingZone, fetched: PartitionFetch) -> LandedFile:
    return zone.land(fetched, Manifest.of(fetched, PERIODS, load_universe()))


@pytest.fixture(scope="module")
def okx_fetch() -> Iterator[PartitionFetch]:
    import asyncio

    with SimulatorThread(port=0, rate_limit_scale=SCALE, exchanges=("okx",)) as sim:
        yield asyncio.run(_fetch("okx", sim))


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_a_landed_fetch_replays_into_the_same_rows_without_a_request(
    exchange: str, tmp_path: Path
) -> None:
    with SimulatorThread(port=0, rate_limit_scale=SCALE, exchanges=(exchange,)) as sim:
        fetched = await _fetch(exchange, sim)
        zone = LandingZone(str(tmp_path / "landing"))
        landed = _land(zone, fetched)
        asked = sim.stats.total_requests(exchange)
        manifest, responses = zone.read(landed)
        again = replay(manifest, responses)
        assert sim.stats.total_requests(exchange) == asked  # the exchange was not asked again
    assert fetched.failures == [] and len(fetched.ls) > 0
    for table in ("ls", "klines", "open_interest"):
        pd.testing.assert_frame_equal(getattr(again, table), getattr(fetched, table))
    assert [(o.task, o.status, o.rows) for o in again.outcomes] == [
        (o.task, o.status, o.rows) for o in fetched.outcomes
    ]
    assert again.simulated and again.covered_days == fetched.covered_days


def test_landed_files_are_new_whole_files_named_for_their_partition_and_days(
    okx_fetch: PartitionFetch, tmp_path: Path
) -> None:
    zone = LandingZone(str(tmp_path / "landing"))
    first, second = _land(zone, okx_fetch), _land(zone, okx_fetch)
    folder = tmp_path / "landing" / "exchange=okx" / f"date={YESTERDAY}"
    assert first.path != second.path and first.path.startswith(f"exchange=okx/date={YESTERDAY}/")
    assert (first.first, first.last, first.day) == (YESTERDAY, YESTERDAY, YESTERDAY)
    assert sorted(p.name for p in folder.iterdir()) == [first.name, second.name]  # no .tmp left
    assert pq.read_table(folder / first.name).num_rows == len(okx_fetch.responses)
    assert zone.files() == [first, second]  # in landing order
    (folder / "20260101T000000-0123456789ab.parquet").write_bytes(b"")  # an older release's
    (folder / f".{first.name}.tmp").write_bytes(b"")  # a write killed half-way
    assert zone.files() == [first, second]
    with pytest.raises(ValueError, match="refusing a landing-zone path component"):
        _land(zone, replace(okx_fetch, exchange="../evil"))


def test_the_landing_zone_can_be_a_bucket(okx_fetch: PartitionFetch) -> None:
    zone = LandingZone("memory://lsr-tests/landing")
    landed = _land(zone, okx_fetch)
    assert zone.files("okx") == [landed] and zone.files("bybit") == []
    manifest, responses = zone.read(landed)
    assert manifest.plan == okx_fetch.plan and len(responses) == len(okx_fetch.responses)
    zone.fs.rm(zone.root, recursive=True)


def test_fetch_workers_land_only_and_the_loader_stores_what_one_process_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers (LSR_FETCH_ONLY) never open the warehouse; the sensor starts `load_landed` once
    files land; the rows equal an ordinary run's, stored once however often the loader runs."""
    inline = PipelineSettings(
        warehouse=str(tmp_path / "inline" / "w.duckdb"), periods=list(PERIODS)
    )
    landing = tmp_path / "shared-landing"
    central = tmp_path / "central" / "w.duckdb"
    workers = PipelineSettings(warehouse=str(central), periods=list(PERIODS))
    monkeypatch.setenv("LSR_WAREHOUSE", str(central))
    monkeypatch.setenv("LSR_LANDING", str(landing))
    instance = DagsterInstance.ephemeral()
    with SimulatorThread(port=0, rate_limit_scale=SCALE, exchanges=("okx", "gate")) as sim:
        point_at(monkeypatch, sim)
        for exchange in ("okx", "gate"):
            with monkeypatch.context() as ordinary:
                ordinary.delenv("LSR_LANDING")
                assert ingest(inline, exchange).success
        assert _tick(instance, None).skip_message.startswith("ingestion runs store their own")
        monkeypatch.setenv("LSR_FETCH_ONLY", "1")
        for exchange in ("okx", "gate"):
            assert ingest(workers, exchange, instance=instance).success
    assert not central.exists()  # the workers never opened it
    tick = _tick(instance, None)
    assert len(tick.run_requests) == 1 and tick.cursor
    assert _tick(instance, tick.cursor).skip_message == (
        "nothing landed since the last load was requested"
    )
    refresh = _refresh_tick(instance)  # the refresh must not run before the loader has stored
    assert refresh.skip_message == "waiting for load_landed to store 2 landed fetches"
    load = defs.resolve_job_def("load_landed")
    for _ in range(2):  # the second run finds nothing waiting
        assert load.execute_in_process(instance=instance, run_config=QUIET).success
    assert len(_refresh_tick(instance).run_requests) == 1
    with duckdb.connect(str(central), read_only=True) as conn:
        stored = conn.execute(LS_SQL, {"day": YESTERDAY}).df()
        noted = conn.execute("SELECT status, count(*) FROM landed_files GROUP BY ALL").fetchall()
    with duckdb.connect(inline.warehouse, read_only=True) as conn:
        expected = conn.execute(LS_SQL, {"day": YESTERDAY}).df()
    assert len(stored) > 0 and set(stored["exchange"]) == {"okx", "gate"}
    pd.testing.assert_frame_equal(stored, expected)
    assert noted == [("loaded", 2)]
    done = instance.get_materialized_partitions(AssetKey("ls_ratio"))
    assert {str(partition_key(YESTERDAY, x)) for x in ("okx", "gate")} <= done


def _refresh_tick(instance: DagsterInstance) -> Any:
    context = build_sensor_context(instance=instance, definitions=defs)
    return refresh_after_ingestion.evaluate_tick(context)


def _tick(instance: DagsterInstance, cursor: str | None) -> Any:
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return load_after_landing.evaluate_tick(context)


def test_a_parser_fix_reaches_stored_history_by_reload_without_refetching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "w.duckdb"
    monkeypatch.setenv("LSR_WAREHOUSE", str(warehouse))
    settings = PipelineSettings(warehouse=str(warehouse), periods=list(PERIODS))
    right = bybit.parse

    def swapped(metric: str, payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
        """A parser bug: long and short read from each other's fields."""
        frame = right(metric, payload, instrument=instrument, period=period)
        frame[["long_share", "short_share"]] = frame[["short_share", "long_share"]].to_numpy()
        frame["ratio"] = frame["long_share"] / frame["short_share"]
        return frame

    with SimulatorThread(port=0, rate_limit_scale=SCALE, exchanges=("bybit",)) as sim:
        point_at(monkeypatch, sim)
        assert ingest(settings, "bybit").success  # the correct history, for comparison
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            correct = conn.execute(LS_SQL, {"day": YESTERDAY}).df()
        with monkeypatch.context() as bug:
            bug.setattr(bybit, "parse", swapped)
            assert ingest(settings, "bybit").success
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        wrong = conn.execute(LS_SQL, {"day": YESTERDAY}).df()
    assert len(correct) > 0 and not wrong["long_share"].equals(correct["long_share"])

    # The simulator is gone: reloading cannot have asked an exchange for anything.
    assert main(["reload", "--exchange", "bybit", "--day", str(YESTERDAY)]) == 0
    out = capsys.readouterr().out
    assert out.count("stored exchange=bybit/date=") == 2  # both runs' files, oldest first
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        fixed = conn.execute(LS_SQL, {"day": YESTERDAY}).df()
    pd.testing.assert_frame_equal(fixed, correct)


def test_a_file_this_version_cannot_read_is_noted_and_the_rest_load(
    okx_fetch: PartitionFetch, warehouse_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zone = LandingZone(str(warehouse_file.parent / "landing"))
    future = _land(zone, okx_fetch)
    path = warehouse_file.parent / "landing" / future.path
    table = pq.read_table(path)
    newer = (
        Manifest.of(okx_fetch, PERIODS, load_universe())
        .to_json()
        .replace('"version": 1', '"version": 99')
    )
    pq.write_table(table.replace_schema_metadata({b"lsr.fetch": newer.encode()}), path)
    good = _land(zone, okx_fetch)

    assert main(["reload"]) == 1  # something was not loaded: said, and the exit code shows it
    out = capsys.readouterr().out
    assert f"not loaded {future.path}: UnreadableLanding: manifest version 99" in out
    assert f"stored {good.path}" in out
    with connect(warehouse_file) as conn:
        noted = dict(conn.execute("SELECT path, status FROM landed_files").fetchall())
        assert load_waiting(conn, zone) == []  # neither is tried again
    assert noted == {future.path: "unloadable", good.path: "loaded"}
    assert path.exists()  # kept in the zone for a later version
