"""Bitget v2 mix (USDT-M): four L/S feeds, each a fixed latest window of 30 rows, no paging.

Which Bitget series feeds which metric kind (the mapping is ours; the README's
"Metric kinds" table states it for every exchange):

| kind             | Bitget endpoint (`/api/v2/mix/market/...`) | Bitget's title                   |
|------------------|--------------------------------------------|----------------------------------|
| `global_account` | `long-short`                               | Futures Long and Short Ratio     |
| `top_account`    | `account-long-short`                       | Futures *Active* L/S Account     |
| `top_position`   | `position-long-short`                      | Futures *Active* L/S Position    |
| `taker_volume`   | `taker-buy-sell`                           | Futures Active Buy Sell Volume   |

Bitget documents no "top trader" population: it calls the second and third series "active"
accounts and positions and never defines "active" (a recent-activity filter? a size cut?). We
map them to `top_account` / `top_position` because, besides the all-accounts ratio, they
are the only by-account and by-position-size splits Bitget publishes, and the two come from one
population, so comparing them (the `divergence` table) stays like with like. Read Bitget's `top_*`
rows as "active traders", not as a top-N% cut like Binance's or OKX's; never pool them with
those exchanges' top-trader rows as if they were one population.

Quirks handled here (https://www.bitget.com/api-doc/common/apidata/Long-Short and its
neighbours, and answers seen live in 2026): no startTime/endTime/limit, so every call
returns the latest 30 rows, oldest first (history exists only in our warehouse: poll hourly);
every value is a string, `ts` too; the combined ratio field was divided by 100 in 2025 samples
and not in a 2026 one, so `ratio` always comes from the shares and the field is kept verbatim as
`source_ratio`; `/long-short` names its UTC day `1Dutc`, the others `1d`; errors are HTTP
400/429 with `code` != "00000"; `40054` "The data fetched by X is empty" (some coins' taker
data) means not published. Open interest exists only as the current snapshot.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from pipelines.config import PERIOD_MS
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

NAME = "bitget"
DEFAULT_BASE_URL = "https://api.bitget.com"
PRODUCT: dict[str, str | int] = {"productType": "USDT-FUTURES"}
WINDOW_ROWS = 30  # the fixed latest window of every L/S feed
KLINE_LIMIT = 1000
KLINE_MAX_SPAN = timedelta(days=90)  # startTime..endTime may span 90 days at most

# metric -> (endpoint, long field, short field, combined ratio field or None)
LS_ENDPOINTS: dict[str, tuple[str, str, str, str | None]] = {
    "global_account": (
        "/api/v2/mix/market/long-short",
        "longRatio",
        "shortRatio",
        "longShortRatio",
    ),
    "top_account": (
        "/api/v2/mix/market/account-long-short",
        "longAccountRatio",
        "shortAccountRatio",
        "longShortAccountRatio",
    ),
    "top_position": (
        "/api/v2/mix/market/position-long-short",
        "longPositionRatio",
        "shortPositionRatio",
        "longShortPositionRatio",
    ),
    "taker_volume": ("/api/v2/mix/market/taker-buy-sell", "buyVolume", "sellVolume", None),
}
METRICS: tuple[str, ...] = tuple(LS_ENDPOINTS)
# Its candles do not split out the takers' buys: candle flow reads finer candles' directions.
TAKER_BUY_CANDLES = False
PERIODS = {"5m": "5m", "15m": "15m", "1h": "1h", "4h": "4h", "1d": "1d"}
PERIOD_OVERRIDES = {"global_account": {"1d": "1Dutc"}}  # `/long-short` has no `1d`
KLINE_GRANULARITY = {"5m": "5m", "15m": "15m", "1h": "1H", "4h": "4H", "1d": "1Dutc"}
# How far back /candles serves each granularity [doc]; 1Dutc is not stated.
KLINE_DEPTH = {
    "5m": timedelta(days=30),
    "15m": timedelta(days=52),
    "1h": timedelta(days=83),
    "4h": timedelta(days=240),
}
KLINES_ENDPOINT = "/api/v2/mix/market/candles"
OI_ENDPOINT = "/api/v2/mix/market/open-interest"
INSTRUMENTS_ENDPOINT = "/api/v2/mix/market/contracts"
IP = "ip"

# 1 request/s per IP on each L/S endpoint; 20/s on the market endpoints; 6,000/min per IP overall.
LIMITS = {path: RateLimit(1, 1) for path, *_ in LS_ENDPOINTS.values()} | {
    KLINES_ENDPOINT: RateLimit(20, 1),
    OI_ENDPOINT: RateLimit(20, 1),
    INSTRUMENTS_ENDPOINT: RateLimit(20, 1),
    IP: RateLimit(6000, 60),
}


def native_period(metric: str, period: str) -> str:
    return PERIOD_OVERRIDES.get(metric, {}).get(period, PERIODS[period])


def reach(dataset: str, period: str) -> timedelta | None:
    """L/S: the 30-row window; klines: the documented depth; OI: the current bucket only."""
    step = timedelta(milliseconds=PERIOD_MS[period])
    if dataset == "klines":
        return KLINE_DEPTH.get(period)
    if dataset == "open_interest":
        return step
    return WINDOW_ROWS * step


VENUE = Venue(
    name=NAME,
    default_base_url=DEFAULT_BASE_URL,
    limits=LIMITS,
    errors=(
        ErrorEnvelope(
            code=("code",),
            message=("msg",),
            success=frozenset({"00000"}),
            kinds={
                "429": "rate_limit",
                # "service return an error" and "request timed out", both as HTTP 200: retry
                "40725": "busy",
                "40010": "busy",
                "40054": "unavailable",  # "The data fetched by X is empty"
            },
        ),
    ),
    instrument_suffix="USDT",
)
profile = VENUE.profile
coin_from_instrument = VENUE.coin_from_instrument


async def fetch_instruments(client: HttpClient) -> list[Listing]:
    body = await client.get_json(
        profile(), INSTRUMENTS_ENDPOINT, PRODUCT, buckets={INSTRUMENTS_ENDPOINT: 1, IP: 1}
    )
    return parse_instruments(body)


def parse_instruments(payload: Any) -> list[Listing]:
    rows = VENUE.rows(payload, ("data",), INSTRUMENTS_ENDPOINT, None)
    return [
        # The symbol carries any multiplier (1000BONKUSDT) even where baseCoin may not.
        Listing(row["symbol"], row["symbol"].removesuffix("USDT"), _launch_ms(row))
        for row in rows
        if row.get("symbolType") == "perpetual"
        and row.get("symbolStatus") == "normal"
        and row.get("quoteCoin") == "USDT"
    ]


def _launch_ms(row: dict[str, Any]) -> int | None:
    value = str(row.get("launchTime") or "")  # "" for old contracts [doc]
    return epoch_ms(value) if value.strip("-").isdigit() and int(value) > 0 else None


async def fetch_ls(
    client: HttpClient, instrument: str, metric: str, period: str, window: Window
) -> list[Any]:
    """One call: the fixed latest window whatever `window` asks (ingest keeps what is inside)."""
    endpoint = LS_ENDPOINTS[metric][0]
    params = {"symbol": instrument, "period": native_period(metric, period)}
    page = await client.get_json(
        profile(), endpoint, params, buckets={endpoint: 1, IP: 1}, symbol=instrument
    )
    return [page]


def parse(metric: str, payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """One Bitget L/S response -> the normalised frame (README, `ls_ratio`)."""
    if metric not in LS_ENDPOINTS:
        raise ValueError(f"bitget does not publish metric {metric!r}; it has {list(METRICS)}")
    endpoint, long_key, short_key, ratio_key = LS_ENDPOINTS[metric]
    rows = VENUE.rows(payload, ("data",), endpoint, instrument)
    longs = [to_float(pick(r, (long_key,), NAME, endpoint, instrument)) for r in rows]
    shorts = [to_float(pick(r, (short_key,), NAME, endpoint, instrument)) for r in rows]
    # Shares (or volumes) that add up to nothing were not published: NaN, never a 0 ratio.
    totals = [lo + sh for lo, sh in zip(longs, shorts, strict=True)]
    if metric == "taker_volume":  # volumes: the buy share is buy / (buy + sell)
        longs = [lo / t if t > 0 else float("nan") for lo, t in zip(longs, totals, strict=True)]
        shorts = [sh / t if t > 0 else float("nan") for sh, t in zip(shorts, totals, strict=True)]
    else:
        longs = [lo if t > 0 else float("nan") for lo, t in zip(longs, totals, strict=True)]
        shorts = [sh if t > 0 else float("nan") for sh, t in zip(shorts, totals, strict=True)]
    return ls_frame(
        NAME,
        coin=coin_from_instrument(instrument),
        instrument=instrument,
        metric=metric,
        period=period,
        source_ts=[epoch_ms(pick(r, ("ts",), NAME, endpoint, instrument)) for r in rows],
        long_share=longs,
        short_share=shorts,
        # Kept exactly as published: /100 in 2025 samples, not in 2026. Never used for `ratio`.
        source_ratio=[to_float(r.get(ratio_key)) if ratio_key else float("nan") for r in rows],
    )


async def fetch_klines(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    """Chunks of at most 999 candles and 90 days, so no chunk can overflow the 1000 limit
    whichever end the exchange keeps and whether endTime is inclusive."""
    step = PERIOD_MS[period]
    span = min((KLINE_LIMIT - 1) * step, int(KLINE_MAX_SPAN.total_seconds() * 1000))
    pages: list[Any] = []
    start = window.start_ms - window.start_ms % step
    while start < window.end_ms:
        end = min(start + span, window.end_ms)
        params = PRODUCT | {
            "symbol": instrument,
            "granularity": KLINE_GRANULARITY[period],
            "startTime": start,
            "endTime": end,
            "limit": KLINE_LIMIT,
        }
        pages.append(
            await client.get_json(
                profile(),
                KLINES_ENDPOINT,
                params,
                buckets={KLINES_ENDPOINT: 1, IP: 1},
                symbol=instrument,
            )
        )
        start = end
    return pages


# [ts, open, high, low, close, baseVolume, quoteVolume]; no taker split.
KLINE_POSITIONS = {"ts": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5,
                   "quote_volume": 6}  # fmt: skip


def parse_klines(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    rows = VENUE.rows(payload, ("data",), KLINES_ENDPOINT, instrument)
    values = kline_arrays(rows, KLINE_POSITIONS, NAME, KLINES_ENDPOINT, instrument)
    return kline_frame(
        NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period,
        values=values,
    )  # fmt: skip


async def fetch_open_interest(
    client: HttpClient, instrument: str, period: str, window: Window
) -> list[Any]:
    """The current snapshot, fetched once per run and shared by every period."""
    body = await client.get_shared_json(
        profile(),
        OI_ENDPOINT,
        PRODUCT | {"symbol": instrument},
        buckets={OI_ENDPOINT: 1, IP: 1},
        symbol=instrument,
    )
    return [body]


def parse_open_interest(payload: Any, *, instrument: str, period: str) -> pd.DataFrame:
    """The snapshot as one row at its time floored to the period (no OI history exists)."""
    rows = VENUE.rows(payload, ("data", "openInterestList"), OI_ENDPOINT, instrument)
    taken = epoch_ms(pick(payload["data"], ("ts",), NAME, OI_ENDPOINT, instrument))
    mine = [r for r in rows if not isinstance(r, dict) or r.get("symbol", instrument) == instrument]
    step = PERIOD_MS[period]
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime([taken - taken % step] * len(mine), unit="ms"),
            "open_interest": [
                to_float(pick(r, ("size",), NAME, OI_ENDPOINT, instrument)) for r in mine
            ],
            "open_interest_value": float("nan"),
        }
    )
    return frame.assign(
        exchange=NAME, coin=coin_from_instrument(instrument), instrument=instrument, period=period
    )[OI_COLUMNS]
