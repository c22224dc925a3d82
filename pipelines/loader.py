"""The one writer: normalises landed fetches (pipelines/landing.py) into the warehouse.

Fetch workers on any number of hosts only land files; this module parses them again under
their manifests and stores the rows, each file in one transaction that also notes it in
`landed_files`, so a file is loaded once however often the loader runs or crashes. The same
replay re-normalises a partition already stored (`lsr reload --exchange X --day D`), which is
how a parser fix reaches history fetched before it, without asking the exchange again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date

import duckdb
import pandas as pd
from dagster import AssetMaterialization, DagsterInstance

from pipelines.ingest import PartitionFetch, asset_of
from pipelines.landing import LandedFile, LandingZone, replay
from pipelines.partitions import partition_key
from pipelines.warehouse import (
    PreparedPartition,
    WarehouseLocked,
    WriteSummary,
    note_landed,
    noted_landed,
    prepare_partition,
    write_prepared,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """What became of one landed file: stored (`summary`), or set aside (`problem`)."""

    landed: LandedFile
    fetched: PartitionFetch | None = None
    summary: WriteSummary | None = None
    problem: str | None = None
    reported: bool = False  # its fetch's run already told Dagster (manifest.reported)


def waiting(
    conn: duckdb.DuckDBPyConnection,
    zone: LandingZone,
    *,
    exchange: str | None = None,
    before: str | None = None,
) -> list[LandedFile]:
    """Landed files the warehouse has not taken yet, oldest first (of one exchange; landed
    before the file named `before`)."""
    taken = noted_landed(conn)
    return [
        f
        for f in zone.files(exchange)
        if f.path not in taken and (before is None or f.name < before)
    ]


def load_waiting(
    conn: duckdb.DuckDBPyConnection,
    zone: LandingZone,
    *,
    exchange: str | None = None,
    before: str | None = None,
) -> list[Loaded]:
    """Store every waiting file, oldest first, so a later fetch of the same buckets wins."""
    return [load_file(conn, zone, f) for f in waiting(conn, zone, exchange=exchange, before=before)]


def load_file(
    conn: duckdb.DuckDBPyConnection,
    zone: LandingZone,
    landed: LandedFile,
    *,
    only_day: date | None = None,
) -> Loaded:
    """Replay one file and store its rows (only those of `only_day`, when given).

    A file that cannot be replayed or stored for a reason of its own (an unknown manifest
    version, data of the other origin, a parser error) is noted `unloadable` with the reason
    and left in the zone; the lock or the disk failing is raised, and the file waits.
    """
    try:
        manifest, responses = zone.read(landed)
        fetched = replay(manifest, responses)
        prepared = prepare_partition(fetched, manifest.universe)
        if only_day is not None:
            prepared = restricted_to(prepared, only_day)
        summary = write_prepared(conn, prepared, landed=landed.path)
    except (WarehouseLocked, duckdb.IOException, OSError):
        raise
    except Exception as error:  # anything else is the file's own: UnreadableLanding, a parser
        problem = f"{type(error).__name__}: {error}"
        log.warning("%s: not loaded: %s", landed.path, problem)
        note_landed(conn, landed.path, "unloadable", detail=problem[:2000])
        return Loaded(landed, problem=problem)
    return Loaded(landed, fetched, summary, reported=manifest.reported)


def reload_day(
    conn: duckdb.DuckDBPyConnection, zone: LandingZone, exchange: str, day: date
) -> list[Loaded]:
    """Normalise one exchange's day again from every landed file that covers it, oldest first.

    Only that day's rows are written: a file that covered a stretch of days is not allowed to
    put its older values back over the other days, which later files may have refreshed.
    """
    covering = [f for f in zone.files(exchange) if f.covers(day)]
    return [load_file(conn, zone, f, only_day=day) for f in covering]


def restricted_to(prepared: PreparedPartition, day: date) -> PreparedPartition:
    """The prepared rows that fall on one UTC day (the instrument list is kept whole)."""

    def on_day(frame: pd.DataFrame, column: str = "ts") -> pd.DataFrame:
        if frame.empty:
            return frame
        days = pd.to_datetime(frame[column]).dt.date
        return frame[days.eq(day) | frame[column].isna()]

    return replace(
        prepared,
        ls=on_day(prepared.ls),
        klines=on_day(prepared.klines),
        open_interest=on_day(prepared.open_interest),
        rejections=on_day(prepared.rejections),
        log=on_day(prepared.log, "day"),
    )


def record_stored(instance: DagsterInstance, loads: list[Loaded]) -> None:
    """Tell Dagster about partitions stored outside their own run (a run that met a busy
    warehouse), so the partition grid shows them materialized. A fetch-only run has reported
    its partition itself, with its asset checks: a later event from the loader would leave
    those checks behind the latest materialization."""
    for load in loads:
        if load.fetched is None or load.summary is None or load.reported:
            continue
        key = str(partition_key(load.fetched.day, load.fetched.exchange))
        failed = {asset_of(o.task.dataset) for o in load.fetched.failures}
        for asset, rows in load.summary.by_table().items():
            if asset in failed:
                continue
            instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key=asset,
                    partition=key,
                    metadata={"dagster/row_count": rows, "stored_from": load.landed.path},
                )
            )
