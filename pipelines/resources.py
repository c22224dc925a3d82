"""Resources: where the warehouse is and how the pipeline talks to exchanges, as configuration."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from pipelines.backfill import parse_depth
from pipelines.config import PERIOD_MS, configured_periods, warehouse_path
from pipelines.universe import Universe, load_universe
from pipelines.warehouse import check_warehouse_file


class PipelineSettings(ConfigurableResource):
    """Warehouse location, fetch pacing and periods. Empty values fall back to the environment."""

    warehouse: str = Field(
        default="", description="DuckDB file; empty = LSR_WAREHOUSE or warehouse/lsr.duckdb"
    )
    rate_limit_scale: float = Field(
        default=0.0,
        description="Multiplies every rate-limit window; 0 = LSR_RATE_LIMIT_SCALE or 1 (real "
        "limits). Only the simulator honours shorter windows.",
    )
    periods: list[str] = Field(
        default_factory=list, description="Periods to fetch; empty = LSR_PERIODS or 1h,4h,1d"
    )
    depth: str = Field(
        default="",
        description="How many days back each period is fetched, e.g. '1h=30,4h=120' (periods "
        "not named: as far as the exchange serves them); empty = LSR_DEPTH or full reach",
    )

    def warehouse_file(self) -> Path:
        return Path(self.warehouse) if self.warehouse else warehouse_path()

    def rate_limit_dir(self) -> Path:
        """Beside the warehouse: the requests each exchange's last fetch made, for the next."""
        return self.warehouse_file().parent / ".rate-limits"

    def limit_scale(self) -> float:
        if self.rate_limit_scale > 0:
            return self.rate_limit_scale
        return float(os.environ.get("LSR_RATE_LIMIT_SCALE", "1"))

    def run_inputs(self) -> tuple[Universe, tuple[str, ...]]:
        """What a run needs, checked before its first request (each mistake in one line): the
        warehouse path can hold our file, the universe file reads, the periods are known."""
        check_warehouse_file(self.warehouse_file())
        self.depth_days()
        return load_universe(), self.period_list()

    def depth_days(self) -> dict[str, int | None]:
        depth = parse_depth(self.depth or os.environ.get("LSR_DEPTH", ""))
        unknown = [p for p in depth if p not in PERIOD_MS]
        if unknown:
            raise ValueError(f"depth names unknown periods {unknown}; known: {list(PERIOD_MS)}")
        return dict(depth)

    def period_list(self) -> tuple[str, ...]:
        if not self.periods:
            return configured_periods()
        unknown = [p for p in self.periods if p not in PERIOD_MS]
        if unknown:
            raise ValueError(f"settings name unknown periods {unknown}; known: {list(PERIOD_MS)}")
        return tuple(self.periods)
