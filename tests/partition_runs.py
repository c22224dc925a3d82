"""One ingestion partition run as Dagster runs it, against the simulator; shared by tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from assets.ingest import ingest_exchange_day
from pipelines.partitions import partition_key
from pipelines.resources import ExchangeAccess, PipelineSettings
from pipelines.simulator import SimulatorThread

SCALE = 0.05  # the simulator's and the client's rate-limit windows, 20x shorter
YESTERDAY = datetime.now(UTC).date() - timedelta(days=1)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def point_at(monkeypatch: pytest.MonkeyPatch, sim: SimulatorThread) -> None:
    for name, value in sim.environment.items():
        monkeypatch.setenv(name, value)


def ingest(
    settings: PipelineSettings,
    exchange: str,
    day: date = YESTERDAY,
    instance: DagsterInstance | None = None,
) -> Any:
    return materialize(
        [ingest_exchange_day],
        partition_key=str(partition_key(day, exchange)),
        # The hosts come from the environment (point_at): the resource's defaults.
        resources={"settings": settings, "exchanges": ExchangeAccess(rate_limit_scale=SCALE)},
        instance=instance or DagsterInstance.ephemeral(),
        run_config=QUIET,
        raise_on_error=False,
    )
