"""Binance USD-M futures: four L/S kinds, 30 days deep, time-window paging, oldest first.

Quirks handled here (https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api,
and answers seen live): the position endpoint names its shares
`longAccount`/`shortAccount`; `timestamp` is a JSON integer (docs print a string: both parse);
the published `longShortRatio` is rounded on its own, so it is kept as `source_ratio` only; a
window outside the 30 days is refused with -1130 (2026) or answered with the latest rows (2020),
so rows are always filtered to the window asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from pipelines.config import PERIOD_MS
from pipelines.exchanges import binance_archive
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
    reachable,
    to_float,
)
from pipelines.http import HttpClient, RateLimit
from pipelines.universe import Listing

NAME = "binance"
DEFAULT_BASE_URL = "https://fapi.binance.com"
PAGE_LIMIT = 500
KLINE_LIMIT = 1500

# metric -> (endpoint, long field aliases, short field aliases)
LS_ENDPOINTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "global_account": (
        "/futures/data/globalLongShortAccountRatio",
        ("longAccount",),
        ("shortAccount",),
    ),
    "top_account": ("/futures/data/topLongShortAccountRatio", ("longAccount",), ("shortAccount",)),
    # USD-M reuses the account field names for position shares; COIN-M says longPosition.
    "top_position": (
        "/futures/data/topLongShortPositionRatio",
        ("longAccount", "longPosition"),
        ("shortAccount", "shortPosition"),
    ),
    "taker_volume": ("/futures/data/takerlongshortRatio", ("buyVol",), ("sellVol",)),
}
METRICS: tuple[str, ...] = tuple(LS_ENDPOINTS)
# Its candles split out the takers' buys, which is what candle flow wants: no finer candles needed.
TAKER_BUY_CANDLES = True
RATIO_FIELD = {"taker_volume": "buySellRatio"}
OI_ENDPOINT = "/futures/data/openInterestHist"
KLINES_ENDPOINT = "/fapi/v1/klines"
INSTRUMENTS_ENDPOINT = "/fapi/v1/exchangeInfo"
PERIODS = {"5m": "5m", "15m": "15m", "1h": "1h", "4h": "4h", "1d": "1d"}

# Each /futures/data endpoint has its own 1,000 requests / 5 min per IP; /fapi is weight-based.
LIMITS = {path: RateLimit(1000, 300) for path, *_ in LS_ENDPOINTS.values()} | {
    OI_ENDPOINT: RateLimit(1000, 300),
    "fapi_weight": RateLimit(2400, 60),
}


REST_REACH = timedelta(days=30)  # "Only the data of the latest 30 days is available"


def reach(dataset: str, period: str) -> timedelta | None:
    """Klines since listing; L/S ratios and open interest too, older than the REST API's 30
    days from the daily archive. Taker volume over an hour or more is REST only: the archive's
    five-minute ratios cannot be added up without the volumes behind them."""
    if dataset == "taker_volume" and period != "5m":
        return REST_REACH
    return None


def _split(window: Window, period: str) -> tuple[Window | None, Window | None]:
    """(the part only the archive still has, the part the REST API serves)."""
    recent = reachable(window, REST_REACH, datetime.now(UTC), period)
    if recent is None:
        return window, None
    if recent.start_ms == window.start_ms:
        return None, recent
    return Window(window.start_ms, recent.start_ms), recent


async def _futures_data(
    client: HttpClient, endpoint: str, instrument: str, period: str, window: Window
) -> list[Any]:
    """A /futures/data series (L/S ratios, open interest) over a window: the archive's days
    (one `ArchiveWindow` page) for the part older than the REST window, REST pages after."""
    old, recent = _split(window, period)
    pages: list[Any] = []
    if old is not None:
        pages.append(await binance_archive.fetch_window(client, instrument, old))
    if recent is not None:
        pages += await fetch_rest(client, endpoint, instrument, period, recent)
    return pages


async def fetch_rest(
    client: HttpClient, endpoint: str, instrument: str, period: str, window: Window
) -> list[Any]:
    """A /futures/data series from the REST API alone, whatever the window's age."""
    return await _paged(
        client,
        endpoint,
        {"symbol": instrument, "period": PERIODS[period]},
        window,
        period,
        limit=PAGE_LIMIT,
        buckets={endpoint: 1},
        ts_of=lambda row: epoch_ms(row["timestamp"]),
    )


VENUE = Venue(
    name=NAME,
    default_base_url=DEFAULT_BASE_URL,
    limits=LIMITS,
    errors=(
        ErrorEnvelope(
            code=("code",),
            message=("msg",),
            success=frozenset({"200"}),
            kinds={
                "-1003": "rate_limit",
                # Internal error / backend timeout / "Server is currently overloaded": try again.
                "-1001": "busy",
                "-1007": "busy",
                "-1008": "busy",
            },
            # 2026: a startTime older than the 30-day window is refused outright.
            kinds_by_message=(("-1130", "startTime", "unavailable"),),
        ),
    ),
    instrument_suffix="USDT",
    ban_statuses=frozenset({418}),
)
profile = VENUE.profile
coin_from_instrument = VENUE.coin_from_instrument


def _kline_weight(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


async def fetch_instruments(client: HttpClient) -> list[Listing]:
    body = await client.get_json(profile(), INSTRUMENTS_ENDPOINT, {}, buckets={"fapi_weight": 1})
    return parse_instruments(body)


def parse_instruments(payload: Any) -> list[Listing]:
    rows = VENUE.rows(payload, ("symbols",), INSTRUMENTS_ENDPOINT, None)
    return [
        Listing(row["symbol"], row["baseAsset"], row.get("onboardDate"))
        for row in rows
        if row.get("contractType") == "PERPETUAL"
        and row.get("quoteAsset") == "USDT"
        and row.get("status") == "TRADING"
    ]


async def _paged(
    client: HttpClient,
    endpoint: str,
    params: dict[str, str | int],
    window: Window,
    period: str,
    *,
    limit: int,
    buckets: dict[str, int],
    ts_of: Any,
) -> list[Any]:
    """Step startTime forward through the window; rows come oldest first."""
    pages: list[Any] = []
    start = window.start_ms
    while start < window.end_ms:
        query = params | {"startTime": start, "endTime": window.end_ms - 1, "limit": limit}
        page = await client.get_json(
            profile(), endpoint, query, buckets=buckets, symbol=str(params["symbol"])
        )
        pages.append(page)
        if not isinstance(page, list) or len(page) < limit:
            break
        last = max(ts_of(row) for row in page)
        if last < start:  # an out-of-window answer: paging further would loop
            break
        start = last + PERIOD_MS[period]
    return pages


async def fetch_ls(
    client: HttpClient, instrument: str, metric: str, period: str, window: Window
) -> list[Any]:
    return await _futures_data(client, LS_ENDPOINTS[metric][0], instrument, period, window)


def parse(metric: str, payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """One Binance L/S response -> the normalised frame (README, `ls_ratio`)."""
    if metric not in LS_ENDPOINTS:
        raise ValueError(f"binance does not publish metric {metric!r}; it has {list(METRICS)}")
    if isinstance(payload, binance_archive.ArchiveWindow):
        return payload.ls(metric, period)
    endpoint, long_keys, short_keys = LS_ENDPOINTS[metric]
    rows = VENUE.rows(payload, (), endpoint, instrument)
    ratio_key = RATIO_FIELD.get(metric, "longShortRatio")
    longs = [to_float(pick(r, long_keys, NAME, endpoint, instrument)) for r in rows]
    shorts = [to_float(pick(r, short_keys, NAME, endpoint, instrument)) for r in rows]
    if metric == "taker_volume":
        # Volumes, not shares: the buy share is buy / (buy + sell).
        totals = [b + s for b, s in zip(longs, shorts, strict=True)]
        longs, shorts = (
            [b / t if t > 0 else float("nan") for b, t in zip(longs, totals, strict=True)],
            [s / t if t > 0 else float("nan") for s, t in zip(shorts, totals, strict=True)],
        )
    return ls_frame(
        NAME,
        coin=coin_from_instrument(instrument),
        instrument=instrument,
        metric=metric,
        period=period,
        source_ts=[epoch_ms(pick(r, ("timestamp",), NAME, endpoint, instrument)) for r in rows],
        long_share=longs,
        short_share=shorts,
        source_ratio=[to_float(r.get(ratio_key)) for r in rows],
    )


async def fetch_klines(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    return await _paged(
        client,
        KLINES_ENDPOINT,
        {"symbol": instrument, "interval": PERIODS[period]},
        window,
        period,
        limit=KLINE_LIMIT,
        buckets={"fapi_weight": _kline_weight(KLINE_LIMIT)},
        ts_of=lambda row: epoch_ms(row[0]),
    )


KLINE_POSITIONS = {"ts": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5,
                   "quote_volume": 7, "taker_buy_volume": 9}  # fmt: skip


def parse_klines(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    rows = VENUE.rows(payload, (), KLINES_ENDPOINT, instrument)
    values = kline_arrays(rows, KLINE_POSITIONS, NAME, KLINES_ENDPOINT, instrument)
    return kline_frame(
        NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period,
        values=values,
    )  # fmt: skip


async def fetch_open_interest(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    return await _futures_data(client, OI_ENDPOINT, instrument, period, window)


def parse_open_interest(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    if isinstance(payload, binance_archive.ArchiveWindow):
        return payload.open_interest(period)[[*OI_COLUMNS, "source", "derived_from"]]
    rows = VENUE.rows(payload, (), OI_ENDPOINT, instrument)
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(
                [epoch_ms(pick(r, ("timestamp",), NAME, OI_ENDPOINT, instrument)) for r in rows],
                unit="ms",
            ),
            "open_interest": [
                to_float(pick(r, ("sumOpenInterest",), NAME, OI_ENDPOINT, instrument)) for r in rows
            ],
            "open_interest_value": [to_float(r.get("sumOpenInterestValue")) for r in rows],
        }
    )
    return frame.assign(
        exchange=NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period
    )[OI_COLUMNS]
