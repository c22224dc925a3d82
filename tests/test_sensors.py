"""The refresh sensor, evaluated tick by tick on a real instance as the daemon evaluates it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DagsterRunStatus,
    build_sensor_context,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData

from pipelines import sensors
from pipelines.definitions import defs
from pipelines.sensors import MAX_WAIT, refresh_after_ingestion


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


def _tick(instance: DagsterInstance, cursor: str | None) -> SensorExecutionData:
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return refresh_after_ingestion.evaluate_tick(context)


def _ingested(instance: DagsterInstance, asset: str = "ls_ratio") -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset, partition="2026-11-30|binance"))


def _run_of(
    instance: DagsterInstance,
    job: str,
    status: DagsterRunStatus,
    tags: dict[str, str] | None = None,
) -> None:
    instance.create_run_for_job(job_def=defs.resolve_job_def(job), status=status, tags=tags)


def test_one_refresh_per_burst_of_ingestion_and_none_without(instance: DagsterInstance) -> None:
    idle = _tick(instance, None)
    assert not idle.run_requests and "no ingestion" in (idle.skip_message or "")

    _ingested(instance)
    _ingested(instance, "klines")
    first = _tick(instance, None)
    assert len(first.run_requests or []) == 1 and first.cursor
    again = _tick(instance, first.cursor)
    assert not again.run_requests  # the same burst is answered once

    _ingested(instance, "open_interest")
    later = _tick(instance, first.cursor)
    assert len(later.run_requests or []) == 1
    assert later.run_requests[0].run_key != first.run_requests[0].run_key  # type: ignore[index]


def test_waits_for_ingestion_in_flight_then_gives_up_waiting_after_a_while(
    instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingested(instance)
    # a backfill from an asset page runs Dagster's implicit asset job, not `ingest`: the
    # partition's exchange tag is what marks it
    _run_of(
        instance, "__ASSET_JOB", DagsterRunStatus.STARTED, {"dagster/partition/exchange": "okx"}
    )
    waiting = _tick(instance, None)
    assert not waiting.run_requests and "waiting for 1 ingestion runs" in str(waiting.skip_message)

    later = sensors.time.time() + MAX_WAIT.total_seconds() + 1
    monkeypatch.setattr(sensors.time, "time", lambda: later)
    assert len(_tick(instance, None).run_requests or []) == 1


def test_never_queues_a_second_refresh_behind_one_in_flight(instance: DagsterInstance) -> None:
    _ingested(instance)
    _run_of(instance, "refresh_outputs", DagsterRunStatus.STARTING)
    tick = _tick(instance, None)
    assert not tick.run_requests and tick.cursor is None  # answered once that one is done
