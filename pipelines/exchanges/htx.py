"""HTX USDT-margined linear swap: top-trader ("elite") account and position shares, latest window.

Quirks handled here (https://huobiapi.github.io/docs/usdt_swap/v1/en/, and answers seen live in
2026): only `top_account` and `top_position` exist;
they take no time range and no size, so each call returns the latest fixed window (48 rows assumed)
and the pipeline must poll; rows are JSON numbers with ms timestamps, oldest first, and hourly
series have holes; accounts carry a `locked_ratio` beside long and short (kept as `locked_share`,
never renormalised away); errors are HTTP 200 bodies with `"status":"error"`, spelled `err_code`
on /linear-swap-api and `err-code` on /linear-swap-ex; `err_code` 1032 is the rate limit.
HTX days start at 00:00 Singapore time = 16:00 UTC (the documented `period=1day` examples are
stamped 16:00 UTC, as Huobi documents for its klines), so a UTC `1d` is taken from the 4hour
series: the snapshot at 00:00 UTC for shares and OI, six 4hour candles added up for klines.
Kline ids are seconds; OI ticks come newest first.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from pipelines.config import PERIOD_MS
from pipelines.errors import DataUnavailable
from pipelines.exchanges.base import (
    KLINE_COLUMNS,
    OI_COLUMNS,
    ErrorEnvelope,
    Venue,
    Window,
    epoch_ms,
    ls_frame,
    pick,
    to_float,
)
from pipelines.http import HttpClient, RateLimit
from pipelines.universe import Listing

NAME = "htx"
DEFAULT_BASE_URL = "https://api.hbdm.com"
LS_ENDPOINTS = {
    "top_account": "/linear-swap-api/v1/swap_elite_account_ratio",
    "top_position": "/linear-swap-api/v1/swap_elite_position_ratio",
}
METRICS: tuple[str, ...] = tuple(LS_ENDPOINTS)
# Its candles do not split out the takers' buys: candle flow reads finer candles' directions.
TAKER_BUY_CANDLES = False
KLINES_ENDPOINT = "/linear-swap-ex/market/history/kline"
OI_ENDPOINT = "/linear-swap-api/v1/swap_his_open_interest"
INSTRUMENTS_ENDPOINT = "/linear-swap-api/v1/swap_contract_info"

# `1d` is not HTX's `1day` (a Singapore day): it is the 4hour row at 00:00 UTC.
PERIODS = {"5m": "5min", "15m": "15min", "1h": "60min", "4h": "4hour", "1d": "4hour"}
_NATIVE = {"5m": "5min", "15m": "15min", "1h": "60min", "4h": "4hour", "1d": "1day"}
_OUR_PERIOD = {native: ours for ours, native in PERIODS.items() if ours != "1d"}
OI_PERIODS = {"1h": "60min", "4h": "4hour", "1d": "4hour"}  # OI history starts at 60min
NATIVE_MS = {"5min": 300_000, "15min": 900_000, "60min": 3_600_000, "4hour": 14_400_000}
ELITE_ROWS = 48  # the fixed latest window; the real count is unverified
OI_SIZE = 200  # `size` maximum of the OI history; no time range either
KLINE_SIZE = 2000  # candles per from/to request

# Elite ratios, contract info and OI history share 240 / 3 s per IP; market data 800 / s.
LIMITS = {"public": RateLimit(240, 3), "market": RateLimit(800, 1)}


def reach(dataset: str, period: str) -> timedelta | None:
    """Elite ratios: the latest 48 native rows; OI: the latest 200; klines: since listing."""
    if dataset in LS_ENDPOINTS:
        return timedelta(milliseconds=ELITE_ROWS * NATIVE_MS[PERIODS[period]])
    if dataset == "open_interest" and period in OI_PERIODS:
        return timedelta(milliseconds=OI_SIZE * NATIVE_MS[OI_PERIODS[period]])
    return None


VENUE = Venue(
    name=NAME,
    default_base_url=DEFAULT_BASE_URL,
    limits=LIMITS,
    errors=(
        ErrorEnvelope(  # both spellings: err_code (api) and err-code (market)
            marker=("status", "error"),
            code=("err_code", "err-code"),
            message=("err_msg", "err-msg"),
            kinds={
                "1032": "rate_limit",
                # System error / not ready / "System busy. Please try again later" (HTTP 200)
                "1000": "busy",
                "1001": "busy",
                "1004": "busy",
            },
        ),
        # An unknown path is answered by the web framework: {"status": 404, "error", "path"}.
        ErrorEnvelope(code=("status",), message=("error", "path"), success=frozenset({"ok"})),
    ),
    instrument_suffix="-USDT",
    # HTX documents no IP ban: over-limit calls are answered with 1032 and retried.
)
profile = VENUE.profile
coin_from_instrument = VENUE.coin_from_instrument


async def fetch_instruments(client: HttpClient) -> list[Listing]:
    params = {"business_type": "swap"}
    body = await client.get_json(profile(), INSTRUMENTS_ENDPOINT, params, buckets={"public": 1})
    return parse_instruments(body)


def _listed_ms(create_date: Any) -> int | None:
    try:
        day = datetime.strptime(str(create_date), "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp() * 1000)


def parse_instruments(payload: Any) -> list[Listing]:
    """Live USDT-margined crypto perpetuals (status 1, no delivery date, no TradFi label)."""
    rows = VENUE.rows(payload, ("data",), INSTRUMENTS_ENDPOINT, None)
    return [
        Listing(row["contract_code"], row["symbol"], _listed_ms(row.get("create_date")))
        for row in rows
        if str(row.get("contract_status")) == "1"
        and str(row.get("contract_code", "")).endswith("-USDT")
        and row.get("business_type", "swap") == "swap"
        and not row.get("delivery_date")
        and not row.get("tradfi_labels")  # stocks and metals: their tickers can look like coins
    ]


async def fetch_ls(
    client: HttpClient, instrument: str, metric: str, period: str, window: Window
) -> list[Any]:
    """One call: the latest window whatever `window` asks (the caller keeps what is inside).
    4h and 1d ask the same question, so a run sends it once."""
    if metric not in LS_ENDPOINTS:
        raise ValueError(f"htx publishes only {list(METRICS)}, not {metric!r}")
    params = {"contract_code": instrument, "period": PERIODS[period]}
    endpoint = LS_ENDPOINTS[metric]
    page = await client.get_shared_json(
        profile(), endpoint, params, buckets={"public": 1}, symbol=instrument
    )
    return [page]


def _snapshots(frame: pd.DataFrame, native: str | None, period: str) -> pd.DataFrame:
    """Where the native series is finer than `period` (1d from 4hour), keep the snapshot that
    starts each `period` bucket; elsewhere keep every row (misaligned ones fail validation)."""
    if native is None or NATIVE_MS[native] >= PERIOD_MS[period]:
        return frame.reset_index(drop=True)
    on_grid = frame["ts"].astype("int64") // 1_000_000 % PERIOD_MS[period] == 0
    return frame[on_grid].assign(derived_from=_OUR_PERIOD[native]).reset_index(drop=True)


def _unpublished(long: float, short: float, locked: float) -> bool:
    """Missing shares, or all of them zero: HTX had nothing for that bucket."""
    total = long + short + (0.0 if math.isnan(locked) else locked)
    return not total > 0


def parse(metric: str, payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """One HTX elite-ratio response -> the normalised frame (README, `ls_ratio`)."""
    if metric not in LS_ENDPOINTS:
        raise ValueError(f"htx publishes only {list(METRICS)}, not {metric!r}")
    endpoint = LS_ENDPOINTS[metric]
    rows = VENUE.rows(payload, ("data", "list"), endpoint, instrument)

    def field(key: str) -> list[float]:
        return [to_float(pick(r, (key,), NAME, endpoint, instrument)) for r in rows]

    longs, shorts = field("buy_ratio"), field("sell_ratio")
    locked = [to_float(r.get("locked_ratio")) for r in rows]  # NaN where not published
    blank = [_unpublished(*shares) for shares in zip(longs, shorts, locked, strict=True)]
    nan = float("nan")
    frame = ls_frame(
        NAME,
        coin=coin_from_instrument(instrument),
        instrument=instrument,
        metric=metric,
        period=period,
        source_ts=[epoch_ms(pick(r, ("ts",), NAME, endpoint, instrument)) for r in rows],
        long_share=[nan if b else v for v, b in zip(longs, blank, strict=True)],
        short_share=[nan if b else v for v, b in zip(shorts, blank, strict=True)],
        locked_share=[nan if b else v for v, b in zip(locked, blank, strict=True)],
    )
    return _snapshots(frame, PERIODS[period], period)


async def fetch_klines(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    """`from`/`to` in seconds, at most 2,000 native candles a call (never with `size`, which
    would make HTX ignore the range)."""
    native = PERIODS[period]
    step = PERIOD_MS[period]
    chunk = max(KLINE_SIZE * NATIVE_MS[native] // step, 1) * step  # whole periods per call
    pages: list[Any] = []
    start = window.start_ms
    while start < window.end_ms:
        end = min(start + chunk, window.end_ms)
        params: dict[str, str | int] = {
            "contract_code": instrument,
            "period": native,
            "from": start // 1000,
            "to": (end - 1) // 1000,
        }
        pages.append(
            await client.get_shared_json(
                profile(), KLINES_ENDPOINT, params, buckets={"market": 1}, symbol=instrument
            )
        )
        start = end
    return pages


def parse_klines(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """Candles (`id` = open time in seconds; `amount` is base volume, `vol` contracts)."""
    rows = VENUE.rows(payload, ("data",), KLINES_ENDPOINT, instrument)

    def field(key: str) -> list[float]:
        return [to_float(pick(r, (key,), NAME, KLINES_ENDPOINT, instrument)) for r in rows]

    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime([epoch_ms(v) for v in field("id")], unit="ms"),
            "open": field("open"),
            "high": field("high"),
            "low": field("low"),
            "close": field("close"),
            "volume": field("amount"),
            "quote_volume": field("trade_turnover"),
        }
    ).sort_values("ts")
    if NATIVE_MS[PERIODS[period]] < PERIOD_MS[period]:  # 1d: add up the 4hour candles of a day
        frame = (
            frame.groupby(frame["ts"].dt.floor(pd.Timedelta(milliseconds=PERIOD_MS[period])))
            .agg(
                open=("open", "first"),
                high=("high", "max"),
                low=("low", "min"),
                close=("close", "last"),
                volume=("volume", "sum"),
                quote_volume=("quote_volume", "sum"),
            )
            .reset_index()
        )
    frame = frame.assign(
        exchange=NAME,
        coin=coin_from_instrument(instrument),
        instrument=instrument,
        period=period,
        taker_buy_volume=float("nan"),  # HTX klines do not split taker buys out
    )
    derived = _OUR_PERIOD[PERIODS[period]] if PERIODS[period] != _NATIVE[period] else None
    return frame.reset_index(drop=True)[KLINE_COLUMNS].assign(derived_from=derived)


async def fetch_open_interest(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    """The latest 200 rows in coins (`amount_type=2`); no time range exists."""
    if period not in OI_PERIODS:
        raise DataUnavailable(
            NAME,
            OI_ENDPOINT,
            f"open interest history is published at 60min, 4hour, 12hour, 1day, not {period}",
            symbol=instrument,
        )
    params: dict[str, str | int] = {
        "contract_code": instrument,
        "period": OI_PERIODS[period],
        "amount_type": 2,
        "size": OI_SIZE,
    }
    page = await client.get_shared_json(
        profile(), OI_ENDPOINT, params, buckets={"public": 1}, symbol=instrument
    )
    return [page]


def parse_open_interest(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """`volume` is coins when `amount_type` is 2; contract counts (type 1) are not coins, so they
    are left out and only the USDT `value` is kept."""
    rows = VENUE.rows(payload, ("data", "tick"), OI_ENDPOINT, instrument)
    volume = [to_float(pick(r, ("volume",), NAME, OI_ENDPOINT, instrument)) for r in rows]
    in_coins = [str(r.get("amount_type", 2)) == "2" for r in rows]
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(
                [epoch_ms(pick(r, ("ts",), NAME, OI_ENDPOINT, instrument)) for r in rows],
                unit="ms",
            ),
            "open_interest": [
                v if c else float("nan") for v, c in zip(volume, in_coins, strict=True)
            ],
            "open_interest_value": [to_float(r.get("value")) for r in rows],
        }
    )
    frame = frame.assign(
        exchange=NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period
    ).sort_values("ts")
    return _snapshots(frame, OI_PERIODS.get(period), period)[OI_COLUMNS]
