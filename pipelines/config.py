"""Settings read from the environment, in one place, and never at import time of Dagster code."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WAREHOUSE_DIR = REPO_ROOT / "warehouse"
SQL_DIR = WAREHOUSE_DIR / "sql"

METRICS: tuple[str, ...] = ("global_account", "top_account", "top_position", "taker_volume")
# The kinds and the exchanges in words, for what people read (image titles); the README's
# "Metric kinds" table says the same.
METRIC_WORDS: dict[str, str] = {
    "global_account": "all accounts, by count",
    "top_account": "top traders, by count",
    "top_position": "top traders, by position size",
    "taker_volume": "taker buy vs sell volume",
}
EXCHANGE_NAMES: dict[str, str] = {
    "binance": "Binance",
    "bybit": "Bybit",
    "okx": "OKX",
    "bitget": "Bitget",
    "gate": "Gate",
    "htx": "HTX",
}
PERIODS: tuple[str, ...] = ("1h", "4h", "1d")
PERIOD_MS: dict[str, int] = {
    "5m": 5 * 60_000,
    "15m": 15 * 60_000,
    "1h": 3_600_000,
    "4h": 4 * 3_600_000,
    "1d": 24 * 3_600_000,
}
DEFAULT_RANGE_DAYS: dict[str, int] = {"1h": 7, "4h": 30, "1d": 90}
# Images that are not one exchange's one metric: the pseudo-exchange of the cross-exchange view
# (the `cross_exchange` table), and the pseudo-metrics of the candle-flow image (`candle_flow`)
# and of the whale-vs-crowd image (`divergence` scope whale_crowd, `whale_crowd_now`).
CROSS = "cross"
FLOW = "candle_flow"
WHALES = "whale_vs_crowd"
# Candle flow's lower timeframe: where candles carry no taker buys, the 1h and 4h flow is read from
# the directions of the 5m candles inside each bucket (12 and 48 of them; 1d reads 1h candles).
# They are fetched as candles only, FLOW_LOWER_DEPTH_DAYS back unless the depth names 5m.
FLOW_LOWER_PERIOD = "5m"
FLOW_LOWER_DEPTH_DAYS = 8  # the hourly image's 7 days reach into an eighth before today


def warehouse_path() -> Path:
    """The DuckDB file: `LSR_WAREHOUSE` or `warehouse/lsr.duckdb`."""
    return Path(os.environ.get("LSR_WAREHOUSE", WAREHOUSE_DIR / "lsr.duckdb"))


def configured_periods() -> tuple[str, ...]:
    """`1h, 4h, 1d`, plus `5m` when `LSR_PERIODS` asks for it (comma separated)."""
    raw = os.environ.get("LSR_PERIODS")
    if not raw:
        return PERIODS
    periods = tuple(p.strip() for p in raw.split(",") if p.strip())
    unknown = [p for p in periods if p not in PERIOD_MS]
    if unknown:
        raise ValueError(f"LSR_PERIODS names unknown periods {unknown}; known: {list(PERIOD_MS)}")
    return periods
