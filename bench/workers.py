"""Several fetch workers, one loader, simulated on one machine.

Each worker process fetches its share of the exchanges (one UTC day each, as a fetch-only
ingestion run does) into its own landing folder; one loader then stores every folder's files
in the warehouse. The same partitions fetched and stored by a single process give the
baseline; both warehouses must end up with the same rows.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipelines.config import PERIODS
from pipelines.exchanges import EXCHANGES
from pipelines.ingest import PartitionFetch, fetch_partition
from pipelines.landing import LandingZone, Manifest
from pipelines.loader import load_waiting
from pipelines.queries import one_row
from pipelines.resources import ExchangeAccess
from pipelines.simulator import SimulatorProcess
from pipelines.universe import load_universe
from pipelines.warehouse import connect, write_partition

WORKERS = 3
SCALE = 0.05  # the simulator's rate-limit windows, 20x shorter (the real ones: minutes a day)
TABLES = ("ls_ratio", "klines", "open_interest")


@dataclass
class Figures:
    partitions: int
    single_seconds: float
    workers_seconds: float
    loader_seconds: float
    rows_single: dict[str, int]
    rows_loaded: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows_loaded.values())


def _yesterday() -> str:
    return str(datetime.now(UTC).date() - timedelta(days=1))


async def _fetch(exchange: str, base_urls: dict[str, str]) -> PartitionFetch:
    return await fetch_partition(
        exchange,
        datetime.fromisoformat(_yesterday()).date(),
        universe=load_universe(),
        periods=PERIODS,
        client=ExchangeAccess.at_simulator(base_urls, SCALE).client(),
    )


def _worker(exchanges: list[str], base_urls: dict[str, str], landing: str) -> None:
    """One fetch worker: fetch and land, never open the warehouse."""
    zone = LandingZone(landing)
    for exchange in exchanges:
        fetched = asyncio.run(_fetch(exchange, base_urls))
        zone.land(fetched, Manifest.of(fetched, PERIODS, load_universe()))


def _single(base_urls: dict[str, str], warehouse: Path) -> None:
    with connect(warehouse) as conn:
        for exchange in EXCHANGES:
            write_partition(conn, asyncio.run(_fetch(exchange, base_urls)), load_universe())


def _rows(warehouse: Path) -> dict[str, int]:
    with connect(warehouse, read_only=True) as conn:
        return {table: int(one_row(conn, f"SELECT count(*) FROM {table}")[0]) for table in TABLES}


def run() -> Figures:
    shares = [list(EXCHANGES[i::WORKERS]) for i in range(WORKERS)]
    with tempfile.TemporaryDirectory() as folder, SimulatorProcess(rate_limit_scale=SCALE) as sim:
        root = Path(folder)
        start = time.perf_counter()
        _single(sim.base_urls, root / "single.duckdb")
        single = time.perf_counter() - start

        landings = [str(root / f"landing-{i}") for i in range(WORKERS)]
        start = time.perf_counter()
        # spawn: each worker starts clean, as a process on another host would
        with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
            pool.starmap(
                _worker, [(s, sim.base_urls, f) for s, f in zip(shares, landings, strict=True)]
            )
        workers = time.perf_counter() - start

        start = time.perf_counter()
        with connect(root / "loaded.duckdb") as conn:
            for landing in landings:
                load_waiting(conn, LandingZone(landing))
        loader = time.perf_counter() - start
        return Figures(
            len(EXCHANGES),
            single,
            workers,
            loader,
            _rows(root / "single.duckdb"),
            _rows(root / "loaded.duckdb"),
        )


def report(f: Figures) -> str:
    same = f.rows_loaded == f.rows_single
    return "\n".join(
        [
            f"workers ({WORKERS} processes, {f.partitions} partitions: yesterday on every "
            f"exchange, simulator at {SCALE:g}x rate-limit windows)",
            f"  one process fetching and storing: {f.single_seconds:6.1f} s",
            f"  {WORKERS} workers landing:             {f.workers_seconds:6.1f} s "
            f"({f.total / f.workers_seconds:,.0f} rows/s landed)",
            f"  one loader storing every file:    {f.loader_seconds:6.1f} s "
            f"({f.total / f.loader_seconds:,.0f} rows/s loaded)",
            f"  rows {f.rows_loaded} (ls_ratio, klines, open_interest); "
            f"same as one process: {same}",
        ]
    )
