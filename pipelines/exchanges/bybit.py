"""Bybit v5 linear: the all-accounts ratio only, shares only, newest first, cursor paging.

Quirks handled here (https://bybit-exchange.github.io/docs/v5/market/long-short-ratio, and
answers seen live): periods are `5min`/`1h`/`4h`/`1d`; every value is
a string; business errors come back as HTTP 200 with `retCode` != 0; an IP flood is answered with
HTTP 403 and a ban of at least ten minutes; some rows have been seen with second timestamps.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from pipelines.exchanges.base import (
    OI_COLUMNS,
    ErrorEnvelope,
    Venue,
    Window,
    epoch_ms,
    kline_arrays,
    kline_frame,
    ls_frame,
    pick,
    to_float,
)
from pipelines.http import HttpClient, RateLimit
from pipelines.universe import Listing

NAME = "bybit"
DEFAULT_BASE_URL = "https://api.bybit.com"
LS_ENDPOINT = "/v5/market/account-ratio"
KLINES_ENDPOINT = "/v5/market/kline"
OI_ENDPOINT = "/v5/market/open-interest"
INSTRUMENTS_ENDPOINT = "/v5/market/instruments-info"
METRICS: tuple[str, ...] = ("global_account",)
# Its candles do not split out the takers' buys: candle flow reads finer candles' directions.
TAKER_BUY_CANDLES = False
PERIODS = {"5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "1d"}
KLINE_INTERVALS = {"5m": "5", "15m": "15", "1h": "60", "4h": "240", "1d": "D"}
PAGE_LIMITS = {
    LS_ENDPOINT: 500,
    OI_ENDPOINT: 200,
    KLINES_ENDPOINT: 1000,
    INSTRUMENTS_ENDPOINT: 1000,
}
LIMITS = {"ip": RateLimit(600, 5)}  # all endpoints together


def reach(dataset: str, period: str) -> timedelta | None:
    """Everything pages back to 2020-07 or the listing: no limit the pipeline needs to know."""
    return None


VENUE = Venue(
    name=NAME,
    default_base_url=DEFAULT_BASE_URL,
    limits=LIMITS,
    errors=(
        ErrorEnvelope(
            code=("retCode",),
            message=("retMsg",),
            success=frozenset({"0"}),
            kinds={
                "10006": "rate_limit",
                "10429": "rate_limit",
                # server timeout, internal service error (HTTP 200): try again
                "10000": "busy",
                "10016": "busy",
            },
        ),
    ),
    instrument_suffix="USDT",
    ban_statuses=frozenset({403}),
)
profile = VENUE.profile
coin_from_instrument = VENUE.coin_from_instrument


async def _cursor_pages(
    client: HttpClient, endpoint: str, params: dict[str, str | int], symbol: str | None
) -> list[Any]:
    """Follow `nextPageCursor` until it runs out."""
    pages: list[Any] = []
    cursor = ""
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        page = await client.get_json(profile(), endpoint, query, buckets={"ip": 1}, symbol=symbol)
        pages.append(page)
        cursor = str((page.get("result") or {}).get("nextPageCursor") or "")
        if not cursor or not (page.get("result") or {}).get("list"):
            return pages


async def fetch_instruments(client: HttpClient) -> list[Listing]:
    params: dict[str, str | int] = {
        "category": "linear",
        "limit": PAGE_LIMITS[INSTRUMENTS_ENDPOINT],
    }
    pages = await _cursor_pages(client, INSTRUMENTS_ENDPOINT, params, None)
    return [listing for page in pages for listing in parse_instruments(page)]


def parse_instruments(payload: Any) -> list[Listing]:
    rows = VENUE.rows(payload, ("result", "list"), INSTRUMENTS_ENDPOINT, None)
    return [
        Listing(
            row["symbol"],
            row["baseCoin"],
            int(row["launchTime"]) if row.get("launchTime") else None,
        )
        for row in rows
        if row.get("contractType") == "LinearPerpetual"
        and row.get("quoteCoin") == "USDT"
        and row.get("status") == "Trading"
    ]


def _window_params(window: Window, endpoint: str) -> dict[str, str | int]:
    return {
        "startTime": window.start_ms,
        "endTime": window.end_ms - 1,
        "limit": PAGE_LIMITS[endpoint],
    }


async def fetch_ls(
    client: HttpClient, instrument: str, metric: str, period: str, window: Window
) -> list[Any]:
    if metric not in METRICS:
        raise ValueError(f"bybit does not publish metric {metric!r}")
    params: dict[str, str | int] = {
        "category": "linear",
        "symbol": instrument,
        "period": PERIODS[period],
    }
    return await _cursor_pages(
        client, LS_ENDPOINT, params | _window_params(window, LS_ENDPOINT), instrument
    )


def parse(metric: str, payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """One Bybit account-ratio response -> the normalised frame (README, `ls_ratio`)."""
    if metric not in METRICS:
        raise ValueError(f"bybit publishes only {list(METRICS)}, not {metric!r}")
    rows = VENUE.rows(payload, ("result", "list"), LS_ENDPOINT, instrument)

    def field(keys: tuple[str, ...]) -> list[Any]:
        return [pick(r, keys, NAME, LS_ENDPOINT, instrument) for r in rows]

    return ls_frame(
        NAME,
        coin=coin_from_instrument(instrument),
        instrument=instrument,
        metric=metric,
        period=period,
        source_ts=[epoch_ms(v) for v in field(("timestamp",))],
        long_share=[to_float(v) for v in field(("buyRatio",))],
        short_share=[to_float(v) for v in field(("sellRatio",))],
    )


async def fetch_klines(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    params: dict[str, str | int] = {
        "category": "linear",
        "symbol": instrument,
        "interval": KLINE_INTERVALS[period],
        "start": window.start_ms,
        "end": window.end_ms - 1,
        "limit": PAGE_LIMITS[KLINES_ENDPOINT],
    }
    # Newest first, no cursor: step `end` back below the oldest row until the window is covered.
    pages: list[Any] = []
    while True:
        page = await client.get_json(
            profile(), KLINES_ENDPOINT, params, buckets={"ip": 1}, symbol=instrument
        )
        pages.append(page)
        rows = (page.get("result") or {}).get("list") or []
        if len(rows) < PAGE_LIMITS[KLINES_ENDPOINT]:
            return pages
        oldest = min(epoch_ms(r[0]) for r in rows)
        if oldest <= window.start_ms:
            return pages
        params = params | {"end": oldest - 1}


# [startTime, open, high, low, close, volume, turnover]; no taker split, newest first.
KLINE_POSITIONS = {"ts": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5,
                   "quote_volume": 6}  # fmt: skip


def parse_klines(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    rows = VENUE.rows(payload, ("result", "list"), KLINES_ENDPOINT, instrument)
    values = kline_arrays(rows, KLINE_POSITIONS, NAME, KLINES_ENDPOINT, instrument)
    return kline_frame(
        NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period,
        values=values,
    )  # fmt: skip


async def fetch_open_interest(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    params: dict[str, str | int] = {
        "category": "linear",
        "symbol": instrument,
        "intervalTime": PERIODS[period],
    }
    return await _cursor_pages(
        client, OI_ENDPOINT, params | _window_params(window, OI_ENDPOINT), instrument
    )


def parse_open_interest(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    rows = VENUE.rows(payload, ("result", "list"), OI_ENDPOINT, instrument)
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(
                [epoch_ms(pick(r, ("timestamp",), NAME, OI_ENDPOINT, instrument)) for r in rows],
                unit="ms",
            ),
            "open_interest": [
                to_float(pick(r, ("openInterest",), NAME, OI_ENDPOINT, instrument)) for r in rows
            ],
            "open_interest_value": float("nan"),
        }
    )
    frame = frame.assign(
        exchange=NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period
    )
    return frame.sort_values("ts").reset_index(drop=True)[OI_COLUMNS]
