"""Exchange simulator: the six exchanges' public endpoints (and Binance's daily archive) served
from synthetic data.

One aiohttp server mounts every exchange under a path prefix (`/binance/...`, `/bybit/...`) with
the real shapes, JSON types, ordering, limits, retention, paging, rate limits and error envelopes,
plus optional injected faults. Every response carries `X-LSR-Simulated: 1`.

    async with run_simulator(port=0, clock=lambda: frozen) as sim:
        url = sim.base_urls["binance"] + "/futures/data/globalLongShortAccountRatio"

Layout: `server.py` (app factory, rate limits, faults, stats, runners), `series.py` (deterministic
synthetic series of a market the coins share), `spec.py` + `grid.py` (what an exchange module
declares), one module per exchange (`binance.py`, `bybit.py`, `okx.py`, `bitget.py`, `gate.py`,
`htx.py`, and `binance_archive.py`) holding that exchange's differences as data.
"""

from pipelines.simulator.server import (
    EXCHANGES,
    FAULT_KINDS,
    FaultConfig,
    RunningSimulator,
    SimStats,
    SimulatorProcess,
    SimulatorThread,
    create_app,
    get_stats,
    run_simulator,
    serve,
)

__all__ = [
    "EXCHANGES",
    "FAULT_KINDS",
    "FaultConfig",
    "RunningSimulator",
    "SimStats",
    "SimulatorProcess",
    "SimulatorThread",
    "create_app",
    "get_stats",
    "run_simulator",
    "serve",
]
