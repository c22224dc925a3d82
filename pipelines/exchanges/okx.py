"""OKX v5 swaps: four L/S kinds per instrument, the latest 1,440 rows, `[ts, value]` strings.

Quirks handled here (https://www.okx.com/docs-v5/en/#trading-statistics-rest-api, and answers
seen live in 2026): rows are arrays of strings, newest first;
the L/S endpoints publish only a ratio r, so shares are derived (long = r / (1 + r)); taker rows
are `[ts, sellVol, buyVol]` (sell first); `begin`/`end` are exclusive and `limit` is silently
capped at 100, so pages are walked back by moving `end` to the oldest row; daily bars must be
`1Dutc` (plain `1D` is a UTC+8 bar); errors are `code` != "0" with HTTP 200, 400 or 429; the
rate limit is 5 requests / 2 s per IP *and instrument* on each rubik endpoint.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from pipelines.config import PERIOD_MS
from pipelines.errors import PayloadError
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

NAME = "okx"
DEFAULT_BASE_URL = "https://www.okx.com"
RUBIK = "/api/v5/rubik/stat"
# metric -> (endpoint, rate-limit bucket; each bucket is per IP + instrument: "<bucket>:<instId>")
LS_ENDPOINTS: dict[str, tuple[str, str]] = {
    "global_account": (f"{RUBIK}/contracts/long-short-account-ratio-contract", "rubik_account"),
    "top_account": (
        f"{RUBIK}/contracts/long-short-account-ratio-contract-top-trader",
        "rubik_top_account",
    ),
    "top_position": (
        f"{RUBIK}/contracts/long-short-position-ratio-contract-top-trader",
        "rubik_top_position",
    ),
    "taker_volume": (f"{RUBIK}/taker-volume-contract", "rubik_taker"),
}
METRICS: tuple[str, ...] = tuple(LS_ENDPOINTS)
# Its candles do not split out the takers' buys: candle flow reads finer candles' directions.
TAKER_BUY_CANDLES = False
OI_ENDPOINT = f"{RUBIK}/contracts/open-interest-history"
KLINES_ENDPOINT = "/api/v5/market/candles"
HISTORY_KLINES_ENDPOINT = "/api/v5/market/history-candles"
INSTRUMENTS_ENDPOINT = "/api/v5/public/instruments"
# 6H and longer without "utc" are UTC+8 bars: never ask for them.
PERIODS = {"5m": "5m", "15m": "15m", "1h": "1H", "4h": "4H", "1d": "1Dutc"}
PAGE_LIMIT = 100  # rubik and history-candles; more is silently capped
KLINE_LIMIT = 300
RETAINED_ROWS = 1440  # "latest 1,440 data entries" per period (rubik and candles)
TAKER_UNIT = "0"  # volumes in coins (1 = contracts, the default; 2 = USDT)

LIMITS = {
    **{bucket: RateLimit(5, 2) for _, bucket in LS_ENDPOINTS.values()},  # per IP + instId
    "rubik_oi": RateLimit(10, 2),  # per IP + instId
    "candles": RateLimit(40, 2),
    "history_candles": RateLimit(20, 2),
    "instruments": RateLimit(20, 2),  # per IP + instType; only SWAP is asked for
}


def reach(dataset: str, period: str) -> timedelta | None:
    """Rubik series and OI keep the latest 1,440 rows per period (5 days at 5m, 60 at 1h);
    klines fall back to history-candles, which reach back years."""
    if dataset == "klines":
        return None
    return timedelta(milliseconds=RETAINED_ROWS * PERIOD_MS[period])


VENUE = Venue(
    name=NAME,
    default_base_url=DEFAULT_BASE_URL,
    limits=LIMITS,
    errors=(
        ErrorEnvelope(
            code=("code",),
            message=("msg",),
            success=frozenset({"0"}),
            # rate limit (HTTP 429 or 200), systems busy, service unavailable, timeout: retry
            kinds=dict.fromkeys(("50011", "50013", "50001", "50004"), "rate_limit"),
        ),
    ),
    instrument_suffix="-USDT-SWAP",
)
profile = VENUE.profile
coin_from_instrument = VENUE.coin_from_instrument


async def fetch_instruments(client: HttpClient) -> list[Listing]:
    params = {"instType": "SWAP"}
    body = await client.get_json(
        profile(), INSTRUMENTS_ENDPOINT, params, buckets={"instruments": 1}
    )
    return parse_instruments(body)


def parse_instruments(payload: Any) -> list[Listing]:
    """Live USDT-settled perpetuals; the base is `ctValCcy` (OKX has no 1000-prefix contracts,
    its contract size `ctVal` differs instead)."""
    rows = VENUE.rows(payload, ("data",), INSTRUMENTS_ENDPOINT, None)
    listings = []
    for row in rows:
        if not (isinstance(row, dict) and row.get("settleCcy") == "USDT"):
            continue
        if row.get("state") != "live" or row.get("instType", "SWAP") != "SWAP":
            continue
        inst_id = str(pick(row, ("instId",), NAME, INSTRUMENTS_ENDPOINT, ""))
        base = row.get("ctValCcy") or inst_id.split("-", 1)[0]
        listed = row.get("listTime")
        listings.append(Listing(inst_id, str(base), int(listed) if listed else None))
    return listings


def _page_rows(page: Any) -> list[Any]:
    """A page's rows for deciding whether to page on (its parser judges the page itself)."""
    rows = page.get("data") if isinstance(page, dict) else None
    return rows if isinstance(rows, list) else []


def _oldest(rows: list[Any]) -> int | None:
    """The oldest row's time, or None if there are no rows or they are not `[ts, ...]` arrays
    (the parser then says what is wrong)."""
    try:
        return min(epoch_ms(row[0]) for row in rows)
    except (TypeError, ValueError, KeyError, IndexError):
        return None


async def _walk_back(
    client: HttpClient,
    endpoint: str,
    params: dict[str, str | int],
    window: Window,
    bucket: str,
    symbol: str,
) -> list[Any]:
    """Pages newest first inside (begin, end), both exclusive; `end` moves to the oldest row."""
    pages: list[Any] = []
    end = window.end_ms
    while True:
        query = params | {"begin": window.start_ms - 1, "end": end, "limit": PAGE_LIMIT}
        page = await client.get_json(profile(), endpoint, query, buckets={bucket: 1}, symbol=symbol)
        pages.append(page)
        rows = _page_rows(page)
        oldest = _oldest(rows)
        if len(rows) < PAGE_LIMIT or oldest is None or oldest <= window.start_ms:
            return pages
        if oldest >= end:  # the cursor did not move: paging on would loop
            return pages
        end = oldest


async def fetch_ls(
    client: HttpClient, instrument: str, metric: str, period: str, window: Window
) -> list[Any]:
    if metric not in LS_ENDPOINTS:
        raise ValueError(f"okx does not publish metric {metric!r}; it has {list(METRICS)}")
    endpoint, bucket = LS_ENDPOINTS[metric]
    params: dict[str, str | int] = {"instId": instrument, "period": PERIODS[period]}
    if metric == "taker_volume":
        params["unit"] = TAKER_UNIT
    return await _walk_back(client, endpoint, params, window, f"{bucket}:{instrument}", instrument)


def _cells(rows: list[Any], width: int, endpoint: str, instrument: str) -> list[list[Any]]:
    for row in rows:
        if not isinstance(row, list) or len(row) < width:
            raise PayloadError(
                NAME,
                endpoint,
                f"expected [ts, ...] rows of at least {width} values, got {str(row)[:120]}",
                symbol=instrument,
            )
    return rows


def _shares_of_ratio(ratio: float) -> tuple[float, float]:
    """A published long/short ratio as (long, short) shares; r <= 0 or blank: not published."""
    if not ratio > 0:  # also NaN
        return float("nan"), float("nan")
    return ratio / (1 + ratio), 1 / (1 + ratio)


def _shares_of_volumes(buy: float, sell: float) -> tuple[float, float]:
    """Taker buy share; a side at 0 (the half-filled newest bucket) is not a ratio to store."""
    if not (buy > 0 and sell > 0):
        return float("nan"), float("nan")
    return buy / (buy + sell), sell / (buy + sell)


def parse(metric: str, payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """One OKX rubik response -> the normalised frame (README, `ls_ratio`)."""
    if metric not in LS_ENDPOINTS:
        raise ValueError(f"okx does not publish metric {metric!r}; it has {list(METRICS)}")
    endpoint = LS_ENDPOINTS[metric][0]
    rows = VENUE.rows(payload, ("data",), endpoint, instrument)
    if metric == "taker_volume":
        cells = _cells(rows, 3, endpoint, instrument)
        # [ts, sellVol, buyVol]: sell first.
        shares = [_shares_of_volumes(to_float(r[2]), to_float(r[1])) for r in cells]
        source_ratio = [float("nan")] * len(cells)
    else:
        cells = _cells(rows, 2, endpoint, instrument)
        source_ratio = [to_float(r[1]) for r in cells]
        shares = [_shares_of_ratio(r) for r in source_ratio]
    return ls_frame(
        NAME,
        coin=coin_from_instrument(instrument),
        instrument=instrument,
        metric=metric,
        period=period,
        source_ts=[epoch_ms(r[0]) for r in cells],
        long_share=[long for long, _ in shares],
        short_share=[short for _, short in shares],
        source_ratio=source_ratio,
    )


async def fetch_klines(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    """`candles` (latest 1,440, 300 a page) back from the window's end; where it runs out
    before the window's start, `history-candles` (100 a page) continues from there."""
    pages: list[Any] = []
    endpoint, bucket, limit = KLINES_ENDPOINT, "candles", KLINE_LIMIT
    after = window.end_ms  # rows older than `after`, newer than `before`; both exclusive
    while True:
        query: dict[str, str | int] = {
            "instId": instrument,
            "bar": PERIODS[period],
            "after": after,
            "before": window.start_ms - 1,
            "limit": limit,
        }
        page = await client.get_json(
            profile(), endpoint, query, buckets={bucket: 1}, symbol=instrument
        )
        pages.append(page)
        rows = _page_rows(page)
        oldest = _oldest(rows) if rows else after
        if oldest is None or oldest <= window.start_ms or oldest > after:
            return pages
        if rows and oldest == after:  # the cursor did not move: paging on would loop
            return pages
        if len(rows) < limit:  # candles ran out (1,440 rows): older ones are in the history
            if endpoint == HISTORY_KLINES_ENDPOINT:
                return pages
            endpoint, bucket, limit = HISTORY_KLINES_ENDPOINT, "history_candles", PAGE_LIMIT
        after = oldest


# [ts, o, h, l, c, vol (contracts), volCcy (coins), volCcyQuote, confirm]: volume in coins.
KLINE_POSITIONS = {"ts": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 6,
                   "quote_volume": 7}  # fmt: skip


def parse_klines(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """[ts, o, h, l, c, vol (contracts), volCcy (coins), volCcyQuote, confirm], newest first."""
    endpoint = KLINES_ENDPOINT
    rows = VENUE.rows(payload, ("data",), endpoint, instrument)
    values = kline_arrays(rows, KLINE_POSITIONS, NAME, endpoint, instrument)
    return kline_frame(
        NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period,
        values=values,
    )  # fmt: skip


async def fetch_open_interest(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    params: dict[str, str | int] = {"instId": instrument, "period": PERIODS[period]}
    return await _walk_back(
        client, OI_ENDPOINT, params, window, f"rubik_oi:{instrument}", instrument
    )


def parse_open_interest(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """[ts, oi (contracts), oiCcy (coins), oiUsd], newest first."""
    rows = VENUE.rows(payload, ("data",), OI_ENDPOINT, instrument)
    cells = _cells(rows, 4, OI_ENDPOINT, instrument)
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime([epoch_ms(r[0]) for r in cells], unit="ms"),
            "open_interest": [to_float(r[2]) for r in cells],
            "open_interest_value": [to_float(r[3]) for r in cells],
        },
        index=pd.RangeIndex(len(cells)),
    )
    frame = frame.assign(
        exchange=NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period
    )
    return frame.sort_values("ts").reset_index(drop=True)[OI_COLUMNS]
