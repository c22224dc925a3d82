"""Gate v4 futures, settle `usdt`: all four L/S kinds and open interest in one call, ratios only.

Quirks handled here (https://www.gate.io/docs/developers/apiv4/#list-futures-stats, and answers
seen live in 2026): `contract_stats` returns one row per bucket
holding `lsr_account`, `top_lsr_account`, `top_lsr_size`, `lsr_taker` and `open_interest`, so one
request serves five datasets (`HttpClient.get_shared_json` makes it once per run); times are
seconds, values JSON numbers (ccxt shows strings: both parse); only ratios are published, so
shares are derived (long = r / (1 + r)) and a ratio of 0 (thin contracts' top ratios) means "not
published"; `lsr_taker` swings widely and is stored raw; newer rows add count fields, which are
ignored. Paging is `from` + `limit` only (`to` is ignored once `from` is set; a page may hold one
or two rows past `limit`), so pages are cut to the window and the next page starts one interval
after the last row. Sizes are in contracts: `quanto_multiplier` from the contract list (fetched
once per run, shared) turns them into coins.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pandas as pd

from pipelines.config import PERIOD_MS
from pipelines.errors import DataUnavailable, PayloadError
from pipelines.exchanges.base import (
    OI_COLUMNS,
    ErrorEnvelope,
    Venue,
    Window,
    epoch_ms,
    kline_frame,
    ls_frame,
    pick,
    to_float,
)
from pipelines.http import HttpClient, RateLimit
from pipelines.universe import Listing

NAME = "gate"
DEFAULT_BASE_URL = "https://api.gateio.ws/api/v4"
STATS_ENDPOINT = "/futures/usdt/contract_stats"
KLINES_ENDPOINT = "/futures/usdt/candlesticks"
CONTRACTS_ENDPOINT = "/futures/usdt/contracts"
# metric -> the ratio field of a contract_stats row
FIELDS: dict[str, str] = {
    "global_account": "lsr_account",
    "top_account": "top_lsr_account",
    "top_position": "top_lsr_size",
    "taker_volume": "lsr_taker",
}
METRICS: tuple[str, ...] = tuple(FIELDS)
# Its candles do not split out the takers' buys: candle flow reads finer candles' directions.
TAKER_BUY_CANDLES = False
PERIODS = {"5m": "5m", "15m": "15m", "1h": "1h", "4h": "4h", "1d": "1d"}
STATS_LIMIT = 2000  # larger is refused with INVALID_PARAM_VALUE
KLINE_POINTS = 2000  # per query, counted over from..to
KLINE_DEPTH_POINTS = 10_000  # "Candlestick too long ago. Maximum 10000 points recently ..."
CONTRACTS_PAGE = 100  # the documented default page size
QUANTO = "quanto_multiplier"  # added to contract_stats / candlestick rows by fetch_*

# Public endpoints: 200 requests per 10 s per endpoint per IP.
LIMITS = {
    path: RateLimit(200, 10) for path in (STATS_ENDPOINT, KLINES_ENDPOINT, CONTRACTS_ENDPOINT)
}


def reach(dataset: str, period: str) -> timedelta | None:
    """Klines: the latest 10,000 points per interval. contract_stats (L/S kinds, OI): no known
    limit; 60 days were seen, which is a floor, not a cut-off, so older windows are asked for
    (walking past the stretch Gate no longer keeps) and reported unavailable when Gate has no
    rows for them."""
    if dataset == "klines":
        return timedelta(milliseconds=KLINE_DEPTH_POINTS * PERIOD_MS[period])
    return None


VENUE = Venue(
    name=NAME,
    default_base_url=DEFAULT_BASE_URL,
    limits=LIMITS,
    errors=(
        ErrorEnvelope(  # any body with a label is an error; good answers are lists
            code=("label",),
            message=("message",),
            kinds={"TOO_MANY_REQUESTS": "rate_limit", "SERVER_ERROR": "busy", "TOO_BUSY": "busy"},
            kinds_by_message=((None, "too long ago", "unavailable"),),
        ),
    ),
    instrument_suffix="_USDT",
)
profile = VENUE.profile
coin_from_instrument = VENUE.coin_from_instrument


# ---------------------------------------------------------------------------------------------
# Instruments


async def _contract_pages(client: HttpClient) -> list[Any]:
    """The whole contract list, `limit` + `offset` pages, each request made once per run."""
    pages: list[Any] = []
    while True:
        params: dict[str, str | int] = {
            "limit": CONTRACTS_PAGE,
            "offset": len(pages) * CONTRACTS_PAGE,
        }
        page = await client.get_shared_json(
            profile(), CONTRACTS_ENDPOINT, params, buckets={CONTRACTS_ENDPOINT: 1}
        )
        pages.append(page)
        # A short page is the last; a longer one means the server ignored `limit`.
        if not isinstance(page, list) or len(page) != CONTRACTS_PAGE:
            return pages


async def fetch_instruments(client: HttpClient) -> list[Listing]:
    return [
        listing for page in await _contract_pages(client) for listing in parse_instruments(page)
    ]


def parse_instruments(payload: Any) -> list[Listing]:
    listings = []
    for row in VENUE.rows(payload, (), CONTRACTS_ENDPOINT, None):
        if not isinstance(row, dict):
            raise PayloadError(NAME, CONTRACTS_ENDPOINT, f"expected contract objects, got {row!r}")
        name = str(row.get("name", ""))
        live = not row.get("in_delisting") and row.get("status", "trading") == "trading"
        if name.endswith("_USDT") and live:
            launched = row.get("launch_time") or row.get("create_time")
            onboard = epoch_ms(launched) if launched else None
            listings.append(Listing(name, name.removesuffix("_USDT"), onboard))
    return listings


async def _quanto(client: HttpClient, instrument: str) -> str | None:
    """The contract's coins per contract, from the shared contract list (no extra request)."""
    for page in await _contract_pages(client):
        for row in page if isinstance(page, list) else []:
            if isinstance(row, dict) and row.get("name") == instrument and row.get(QUANTO):
                return str(row[QUANTO])
    return None


def _with_quanto(pages: list[Any], quanto: str | None) -> list[Any]:
    if quanto is None:
        return pages
    return [
        [{**r, QUANTO: quanto} if isinstance(r, dict) else r for r in p]
        if isinstance(p, list)
        else p
        for p in pages
    ]


def _inside(page: list[Any], key: str, window: Window) -> list[Any]:
    """Rows of the window; rows without a time stay, so the parser names what is missing."""
    return [
        r
        for r in page
        if not isinstance(r, dict) or key not in r or window.contains(epoch_ms(r[key]))
    ]


# ---------------------------------------------------------------------------------------------
# contract_stats: the four L/S kinds and open interest


async def _stats_pages(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    """Page forward with `from` + `limit`; every dataset asks the same, so it is sent once."""
    step = PERIOD_MS[period]
    limit = max(1, min(STATS_LIMIT, math.ceil((window.end_ms - window.start_ms) / step)))
    start = window.start_ms
    pages: list[Any] = []
    while start < window.end_ms:
        params: dict[str, str | int] = {
            "contract": instrument,
            "interval": PERIODS[period],
            "from": start // 1000,
            "limit": limit,
        }
        page = await client.get_shared_json(
            profile(), STATS_ENDPOINT, params, buckets={STATS_ENDPOINT: 1}, symbol=instrument
        )
        if not isinstance(page, list):
            return [*pages, page]  # the parser raises on it, naming what it is
        pages.append(_inside(page, "time", window))
        stamps = [epoch_ms(r["time"]) for r in page if isinstance(r, dict) and "time" in r]
        if not page and not any(pages[:-1]):
            # Nothing from `start` to `limit` buckets on: older than Gate keeps (or before the
            # listing). Walk on past that stretch until it answers rows or the window ends.
            start += limit * step
            continue
        if len(page) < limit or not stamps or max(stamps) + step <= start:
            break  # the newest rows, or an answer that does not move forward
        start = max(stamps) + step
    if not any(pages):
        raise DataUnavailable(
            NAME,
            STATS_ENDPOINT,
            "no rows inside this window (older than Gate keeps, before the listing, or not "
            "published yet)",
            symbol=instrument,
        )
    return pages


async def fetch_ls(
    client: HttpClient, instrument: str, metric: str, period: str, window: Window
) -> list[Any]:
    if metric not in FIELDS:
        raise ValueError(f"gate does not publish metric {metric!r}; it has {list(METRICS)}")
    return await _stats_pages(client, instrument, period, window)


def _shares(ratio: float) -> tuple[float, float]:
    """(long, short) from a published long/short ratio; NaN when it is not published (<= 0)."""
    if not math.isfinite(ratio) or ratio <= 0:
        return float("nan"), float("nan")
    return ratio / (1 + ratio), 1 / (1 + ratio)


def parse(metric: str, payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """One contract_stats response -> the normalised frame of one metric kind (README,
    `ls_ratio`)."""
    if metric not in FIELDS:
        raise ValueError(f"gate does not publish metric {metric!r}; it has {list(METRICS)}")
    rows = VENUE.rows(payload, (), STATS_ENDPOINT, instrument)
    field = FIELDS[metric]
    ratios = [to_float(pick(r, (field,), NAME, STATS_ENDPOINT, instrument)) for r in rows]
    shares = [_shares(r) for r in ratios]
    return ls_frame(
        NAME,
        coin=coin_from_instrument(instrument),
        instrument=instrument,
        metric=metric,
        period=period,
        source_ts=[epoch_ms(pick(r, ("time",), NAME, STATS_ENDPOINT, instrument)) for r in rows],
        long_share=[s[0] for s in shares],
        short_share=[s[1] for s in shares],
        # 0 is Gate's "not published", not a ratio: kept as NULL like the shares.
        source_ratio=[r if math.isfinite(r) and r > 0 else float("nan") for r in ratios],
    )


async def fetch_open_interest(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    pages = await _stats_pages(client, instrument, period, window)
    return _with_quanto(pages, await _quanto(client, instrument))


def parse_open_interest(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """`open_interest` is in contracts: coins = contracts x quanto_multiplier (NaN when a row
    does not carry the multiplier); the value is `open_interest_usd`."""
    rows = VENUE.rows(payload, (), STATS_ENDPOINT, instrument)

    def field(row: Any, key: str) -> float:
        return to_float(pick(row, (key,), NAME, STATS_ENDPOINT, instrument))

    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime([epoch_ms(field(r, "time")) for r in rows], unit="ms"),
            "open_interest": [field(r, "open_interest") * to_float(r.get(QUANTO)) for r in rows],
            "open_interest_value": [to_float(r.get("open_interest_usd")) for r in rows],
        }
    )
    frame = frame.assign(
        exchange=NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period
    )
    return frame.sort_values("ts").reset_index(drop=True)[OI_COLUMNS]


# ---------------------------------------------------------------------------------------------
# Candlesticks


async def fetch_klines(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    """`from`/`to` in seconds, at most 2,000 points each; `to` stops short of the next bucket
    start, so the count is right whether Gate reads `to` as inclusive or not."""
    step_s = PERIOD_MS[period] // 1000
    start, end = window.start_ms // 1000, -(-window.end_ms // 1000)
    pages: list[Any] = []
    while start < end:
        to = min(end, start + KLINE_POINTS * step_s) - 1
        params: dict[str, str | int] = {
            "contract": instrument,
            "interval": PERIODS[period],
            "from": start,
            "to": to,
        }
        page = await client.get_json(
            profile(), KLINES_ENDPOINT, params, buckets={KLINES_ENDPOINT: 1}, symbol=instrument
        )
        pages.append(_inside(page, "t", window) if isinstance(page, list) else page)
        start = to + 1
    return _with_quanto(pages, await _quanto(client, instrument))


def parse_klines(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """Rows `{"t", "v" (contracts), "c", "h", "l", "o", "sum" (quote volume)}`, oldest first."""
    rows = VENUE.rows(payload, (), KLINES_ENDPOINT, instrument)

    def field(key: str) -> list[float]:
        return [to_float(pick(r, (key,), NAME, KLINES_ENDPOINT, instrument)) for r in rows]

    values = {
        "ts": [float(epoch_ms(t)) for t in field("t")],
        "open": field("o"),
        "high": field("h"),
        "low": field("l"),
        "close": field("c"),
        "volume": [v * to_float(r.get(QUANTO)) for v, r in zip(field("v"), rows, strict=True)],
        "quote_volume": field("sum"),
    }  # Gate candles do not split taker buys out
    return kline_frame(
        NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period,
        values=values,
    )  # fmt: skip
