"""Resources: where the warehouse is and how the pipeline talks to exchanges, as configuration."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from pipelines.backfill import parse_depth
from pipelines.config import (
    FLOW_LOWER_DEPTH_DAYS,
    FLOW_LOWER_PERIOD,
    PERIOD_MS,
    configured_periods,
    warehouse_path,
)
from pipelines.exchanges import EXCHANGES, binance_archive
from pipelines.http import HttpClient, RateLimitLedger
from pipelines.landing import LandingZone
from pipelines.universe import Universe, load_universe
from pipelines.warehouse import check_warehouse_file


class ExchangeAccess(ConfigurableResource):
    """Where the exchanges are and how fast to ask them: their own hosts at their real limits,
    or the simulator (as `lsr demo` and the tests choose), the way Dagster's
    project_fully_featured swaps its real and sampled Hacker News clients. It builds the HTTP
    client every fetch uses. Empty values fall back to the environment, then to the real hosts.
    """

    base_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Exchange name -> base URL; a missing one = LSR_<EXCHANGE>_BASE_URL or the "
        "exchange's own host",
    )
    archive_url: str = Field(
        default="",
        description=f"Binance's daily archive; empty = LSR_BINANCE_ARCHIVE_URL or "
        f"{binance_archive.DEFAULT_BASE_URL}",
    )
    rate_limit_scale: float = Field(
        default=0.0,
        description="Multiplies every rate-limit window; 0 = LSR_RATE_LIMIT_SCALE or 1 (real "
        "limits). Only the simulator honours shorter windows.",
    )

    @classmethod
    def at_simulator(cls, base_urls: Mapping[str, str], rate_limit_scale: float) -> ExchangeAccess:
        """The simulator's hosts: each exchange under its own prefix, the archive under
        Binance's (as `lsr demo`, the benchmarks and the tests use it)."""
        return cls(
            base_urls=dict(base_urls),
            archive_url=base_urls.get("binance", ""),
            rate_limit_scale=rate_limit_scale,
        )

    def hosts(self) -> dict[str, str]:
        """Where each exchange's requests (and the archive's) go, when not to its own host."""
        known = [*EXCHANGES, binance_archive.VENUE.name]
        unknown = sorted(set(self.base_urls) - set(known))
        if unknown:  # a typo ("OKX") would otherwise send that exchange to its real host
            raise ValueError(
                f"exchanges.base_urls names unknown exchanges {unknown}; known: {', '.join(known)}"
            )
        moved = {
            name: os.environ[f"LSR_{name.upper()}_BASE_URL"]
            for name in EXCHANGES
            if os.environ.get(f"LSR_{name.upper()}_BASE_URL")
        }
        archive = self.archive_url or os.environ.get("LSR_BINANCE_ARCHIVE_URL", "")
        if archive:
            moved[binance_archive.VENUE.name] = archive
        return moved | self.base_urls

    def limit_scale(self) -> float:
        if self.rate_limit_scale > 0:
            return self.rate_limit_scale
        return float(os.environ.get("LSR_RATE_LIMIT_SCALE", "1"))

    def client(self, ledger: RateLimitLedger | None = None) -> HttpClient:
        """A client for one run (enter it with `async with`)."""
        return HttpClient(
            rate_limit_scale=self.limit_scale(), ledger=ledger, base_urls=self.hosts()
        )


class PipelineSettings(ConfigurableResource):
    """Warehouse location and its folders, periods and depth. Empty values fall back to the
    environment."""

    warehouse: str = Field(
        default="", description="DuckDB file; empty = LSR_WAREHOUSE or warehouse/lsr.duckdb"
    )
    periods: list[str] = Field(
        default_factory=list, description="Periods to fetch; empty = LSR_PERIODS or 1h,4h,1d"
    )
    depth: str = Field(
        default="",
        description="How many days back each period is fetched, e.g. '1h=30,4h=120' (periods "
        "not named: as far as the exchange serves them); empty = LSR_DEPTH or full reach",
    )
    landing: str = Field(
        default="",
        description="Landing zone for raw responses: a folder or an fsspec URL (s3://..., "
        "gs://...) that every fetch worker and the loader reach; empty = LSR_LANDING or "
        "`landing/` beside the warehouse",
    )
    fetch_only: bool = Field(
        default=False,
        description="Fetch workers on other hosts: land raw responses only and leave storing "
        "them to the `load_landed` job (one writer); false = LSR_FETCH_ONLY or store in the run",
    )
    lake: str = Field(
        default="",
        description="Folder of the Parquet lake (pipelines/lake.py); empty = LSR_LAKE or "
        "<warehouse dir>/lake",
    )

    def warehouse_file(self) -> Path:
        return Path(self.warehouse) if self.warehouse else warehouse_path()

    def rate_limit_dir(self) -> Path:
        """Beside the warehouse: the requests each exchange's last fetch made, for the next."""
        return self.warehouse_file().parent / ".rate-limits"

    def images_dir(self) -> Path:
        """The PNGs and their gallery page, beside the warehouse."""
        return self.warehouse_file().parent / "images"

    def landing_root(self) -> str:
        """Every raw response, append-only: beside the warehouse unless set."""
        return (
            self.landing
            or os.environ.get("LSR_LANDING", "")
            or str(self.warehouse_file().parent / "landing")
        )

    def landing_zone(self) -> LandingZone:
        return LandingZone(self.landing_root())

    def fetches_only(self) -> bool:
        """True on a fetch worker: its runs land what they fetch and never open the warehouse."""
        if self.fetch_only:
            return True
        return os.environ.get("LSR_FETCH_ONLY", "").lower() in ("1", "true", "yes")

    def lake_dir(self) -> Path:
        """The Parquet lake readers scan without the warehouse's lock: `lake`, else LSR_LAKE,
        else beside the warehouse. A local (or mounted) folder: files are replaced by rename."""
        chosen = self.lake or os.environ.get("LSR_LAKE", "")
        if "://" in chosen:
            raise ValueError(
                f"lake {chosen}: give a local folder (mount a bucket to write it there); "
                "partitions are replaced by an atomic rename"
            )
        return Path(chosen) if chosen else self.warehouse_file().parent / "lake"

    def run_inputs(self) -> tuple[Universe, tuple[str, ...]]:
        """What a run needs, checked before its first request (each mistake in one line): the
        warehouse path can hold our file, the universe file reads, the periods are known."""
        if not self.fetches_only():  # a worker never opens the warehouse (it may not see it)
            check_warehouse_file(self.warehouse_file())
        self.depth_days()
        return load_universe(), self.period_list()

    def depth_days(self) -> dict[str, int | None]:
        """Days back per period (absent: full reach). Candle flow's lower timeframe, fetched as
        candles only, goes FLOW_LOWER_DEPTH_DAYS back unless named: five-minute candles at full
        reach would be years of them per coin."""
        depth = parse_depth(self.depth or os.environ.get("LSR_DEPTH", ""))
        unknown = [p for p in depth if p not in PERIOD_MS]
        if unknown:
            raise ValueError(f"depth names unknown periods {unknown}; known: {list(PERIOD_MS)}")
        if FLOW_LOWER_PERIOD not in self.period_list():
            depth.setdefault(FLOW_LOWER_PERIOD, FLOW_LOWER_DEPTH_DAYS)
        return dict(depth)

    def period_list(self) -> tuple[str, ...]:
        if not self.periods:
            return configured_periods()
        unknown = [p for p in self.periods if p not in PERIOD_MS]
        if unknown:
            raise ValueError(f"settings name unknown periods {unknown}; known: {list(PERIOD_MS)}")
        return tuple(self.periods)
