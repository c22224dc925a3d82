"""Ingestion against the simulator: wall time vs the rate-limit floor, requests vs allowed.

The floor of a run is the time its busiest rate-limit bucket needs at the documented limit:
(ceil(requests / allowed per window) - 1) windows, plus the time the last requests take.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipelines.config import PERIODS
from pipelines.exchanges import CONNECTORS, EXCHANGES
from pipelines.ingest import fetch_partition
from pipelines.resources import ExchangeAccess
from pipelines.simulator import SimulatorProcess
from pipelines.universe import load_universe


@dataclass
class ExchangeFigures:
    exchange: str
    seconds: float
    requests: int
    retries: int
    floor_seconds: float
    busiest_bucket: str
    busiest_requests: int
    allowed_per_window: int
    window_seconds: float
    peak_in_window: int


async def _poll(
    days: list[date], access: ExchangeAccess
) -> dict[str, tuple[float, dict[str, Any]]]:
    """Every exchange at once (as the schedule's runs are), its days one after another."""

    async def one(exchange: str) -> tuple[str, tuple[float, dict[str, Any]]]:
        start = time.perf_counter()
        totals: dict[str, Any] = {"requests": 0, "retries": 0, "per_bucket": {}}
        for day in days:
            fetched = await fetch_partition(
                exchange, day, universe=load_universe(), periods=PERIODS, client=access.client()
            )
            totals["requests"] += fetched.http_stats.get("requests", 0)
            totals["retries"] += fetched.http_stats.get("retries", 0)
            for bucket, n in fetched.http_stats.get("per_bucket", {}).items():
                totals["per_bucket"][bucket] = totals["per_bucket"].get(bucket, 0) + n
        return exchange, (time.perf_counter() - start, totals)

    return dict(await asyncio.gather(*(one(name) for name in EXCHANGES)))


def _floor(exchange: str, per_bucket: dict[str, int], scale: float) -> tuple[float, str, int]:
    limits = CONNECTORS[exchange].profile().limits
    worst = (0.0, 0.0, "", 0)
    for bucket, n in per_bucket.items():
        limit = limits[bucket.split(":", 1)[0]]
        floor = max(math.ceil(n / limit.requests) - 1, 0) * limit.seconds * scale
        worst = max(worst, (floor, n / limit.requests, bucket, n))
    return worst[0], worst[2], worst[3]


def run(days: int, scale: float) -> list[ExchangeFigures]:
    today = datetime.now(UTC).date()
    wanted = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    with SimulatorProcess(rate_limit_scale=scale) as sim:
        results = asyncio.run(_poll(wanted, ExchangeAccess.at_simulator(sim.base_urls, scale)))
        with urllib.request.urlopen(f"http://127.0.0.1:{sim.port}/_sim/stats") as answer:
            windows = json.load(answer)["windows"]
    figures = []
    for exchange, (seconds, totals) in results.items():
        floor, bucket, n = _floor(exchange, totals["per_bucket"], scale)
        limit = CONNECTORS[exchange].profile().limits[bucket.split(":", 1)[0]] if bucket else None
        peaks = [w["max_used"] / w["allowed"] for k, w in windows.items() if k.startswith(exchange)]
        peak_key = max(
            (k for k in windows if k.startswith(exchange)),
            key=lambda k: windows[k]["max_used"] / windows[k]["allowed"],
            default=None,
        )
        figures.append(
            ExchangeFigures(
                exchange=exchange,
                seconds=seconds,
                requests=totals["requests"],
                retries=totals["retries"],
                floor_seconds=floor,
                busiest_bucket=bucket,
                busiest_requests=n,
                allowed_per_window=limit.requests if limit else 0,
                window_seconds=limit.seconds if limit else 0.0,
                peak_in_window=windows[peak_key]["max_used"] if peak_key and peaks else 0,
            )
        )
    return figures


def report(figures: list[ExchangeFigures], days: int, scale: float) -> str:
    lines = [
        f"Ingestion: {days} day partition(s) x 6 exchanges, periods {','.join(PERIODS)}, "
        f"all coins, simulator in its own process, rate-limit windows x{scale}",
        f"{'exchange':<9}{'wall s':>8}{'requests':>10}{'retries':>9}  busiest bucket "
        f"(requests / allowed per window)  floor s  wall/floor",
    ]
    for f in figures:
        ratio = f"{f.seconds / f.floor_seconds:.2f}" if f.floor_seconds else "-"
        lines.append(
            f"{f.exchange:<9}{f.seconds:>8.1f}{f.requests:>10}{f.retries:>9}  "
            f"{f.busiest_bucket} ({f.busiest_requests} / {f.allowed_per_window} per "
            f"{f.window_seconds:g}s)  {f.floor_seconds:7.1f}  {ratio}"
        )
    return "\n".join(lines)
