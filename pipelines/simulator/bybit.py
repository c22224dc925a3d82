"""Bybit v5 `category=linear` (`api.bybit.com`): account ratio, open interest, klines, instruments.

Differences from other exchanges, as data below: `{"retCode","retMsg","result",...}` envelopes
with HTTP 200 even for errors, every value a string (timestamps too), newest rows first, opaque
`nextPageCursor` paging back in time, history from 2020-07-20, and one shared 600 per 5 s IP limit
whose breach is an immediate 10-minute HTTP 403 ban.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, unquote

from pipelines.simulator import series
from pipelines.simulator.coins import coin, extras, universe
from pipelines.simulator.grid import (
    DAY,
    HOUR,
    MINUTE,
    MONTHLY,
    WEEKLY,
    Grid,
    every,
    ms_of,
    quarter_expiries,
    window,
)
from pipelines.simulator.spec import (
    Breach,
    Call,
    ExchangeSpec,
    Handler,
    Instrument,
    ParamErrors,
    Params,
    RateLimit,
    Refusal,
    Reply,
    Route,
    fixed,
    per_request,
    price_decimals,
    qty_decimals,
    trimmed,
)

NAME = "bybit"
PERIODS: dict[str, Grid] = {
    "5min": every(5 * MINUTE),
    "15min": every(15 * MINUTE),
    "30min": every(30 * MINUTE),
    "1h": every(HOUR),
    "4h": every(4 * HOUR),
    "1d": every(DAY),
}
KLINE_INTERVALS: dict[str, Grid] = {
    **{str(m): every(m * MINUTE) for m in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)},
    "D": every(DAY),
    "W": WEEKLY,
    "M": MONTHLY,
}
RATIO_SINCE = ms_of("2020-07-20")  # "Earliest query start: July 20, 2020" [doc]
USDT_PERPS_SINCE = ms_of("2020-03-30")  # BTCUSDT launchTime; no linear perp is older
BUCKET = "ip-5s"

# Listing: Bybit's own multiplier names (SHIB1000USDT, not 1000SHIBUSDT), and one universe coin
# Bybit does not list, so the pipeline's instrument intersection is exercised.
MULTIPLIED = {"PEPE": "1000PEPE", "SHIB": "SHIB1000", "BONK": "1000BONK", "FLOKI": "1000FLOKI"}
UNLISTED = frozenset({"ICP"})
USDC_PERPS = ("BTC", "ETH", "SOL")  # BTCPERP etc.: USDC-settled, to be filtered out


def _envelope(result: object, now_ms: int, code: int = 0, msg: str = "OK") -> dict[str, object]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}


def _ok(result: object, call: Call) -> Reply:
    return Reply(200, _envelope(result, call.now_ms))


def _fail(call: Call, what: str, result: object | None = None) -> Refusal:
    """Business errors are HTTP 200 with retCode 10001 (https://bybit-exchange.github.io/docs/v5/error)."""
    body = _envelope(
        {} if result is None else result, call.now_ms, 10001, f"params error: {what} invalid"
    )
    return Refusal(Reply(200, body))


# ---------------------------------------------------------------------------------------------
# Parameters


def _category(call: Call) -> None:
    if call.query.get("category") != "linear":
        raise _fail(call, "category")


# Missing, unknown and malformed values all get the same 10001 "params error: <name> invalid".
ERRORS = ParamErrors(missing=_fail, invalid=_fail, malformed=_fail)


def _instrument(call: Call, *, data: bool = True) -> Instrument:
    _category(call)
    # Exact match only: a lowercase symbol is refused like an unknown one [doc; 3p measured].
    found = call.instruments.get(call.query.get("symbol", ""))
    if found is None or (data and not found.has_data):
        raise _fail(call, "symbol")
    return found


def _cursor_for(oldest_ms: int) -> str:
    return quote(f"lastid=0&lasttime={oldest_ms // 1000}", safe="")


def _cursor_end(call: Call) -> int | None:
    """The newest timestamp (ms) the next page may hold, from `cursor`; None without one."""
    raw = call.query.get("cursor")
    if not raw:
        return None
    try:
        lasttime = int(parse_qs(unquote(raw))["lasttime"][0])
    except (KeyError, ValueError, IndexError):
        raise _fail(call, "cursor") from None
    return lasttime * 1000 - 1


# ---------------------------------------------------------------------------------------------
# History endpoints: account ratio and open interest, newest first, paged back by cursor

RowFn = Callable[[Instrument, int, int, int], dict[str, str]]  # (inst, bucket, length, now)


def _ratio_row(inst: Instrument, t: int, length: int, now: int) -> dict[str, str]:
    buy = round(series.share_at(NAME, inst.coin, "global_account", t, length, now), 4)
    return {
        "symbol": inst.symbol,
        "buyRatio": trimmed(buy, 4),
        "sellRatio": trimmed(1 - buy, 4),
        "timestamp": str(t),
    }


def _oi_row(inst: Instrument, t: int, length: int, now: int) -> dict[str, str]:
    amount = series.open_interest_at(NAME, inst.coin, t, length, now) / inst.multiplier
    return {"openInterest": fixed(amount, 8), "timestamp": str(t)}


@dataclass(frozen=True)
class History:
    path: str
    period_param: str
    limit: tuple[int, int]  # (default, max)
    row: RowFn
    since: int = 0  # no rows before this, whatever the listing date
    echo_symbol: bool = False  # result repeats symbol and category


HISTORIES: tuple[History, ...] = (
    History("/v5/market/account-ratio", "period", (50, 500), _ratio_row, since=RATIO_SINCE),
    History("/v5/market/open-interest", "intervalTime", (50, 200), _oi_row, echo_symbol=True),
)


def _history_handler(h: History) -> Handler:
    def handle(call: Call) -> Reply:
        params = Params(call, ERRORS)
        inst = _instrument(call)
        grid = params.choice(h.period_param, PERIODS)
        limit = params.limit(*h.limit)
        start, end = params.integer("startTime"), params.integer("endTime")
        cursor_end = _cursor_end(call)
        if cursor_end is not None:
            end = cursor_end if end is None else min(end, cursor_end)
        first = max(h.since, inst.listed_ms)
        buckets = window(
            grid,
            first=first,
            last=grid.floor(call.now_ms),
            start=start,
            end=end,
            limit=limit,
            oldest_first=False,
        )
        oldest_available = grid.ceil(first if start is None else max(first, start))
        more = bool(buckets) and buckets[0] > oldest_available
        head = {"symbol": inst.symbol, "category": "linear"} if h.echo_symbol else {}
        return _ok(
            {
                **head,
                "list": [h.row(inst, t, grid.step, call.now_ms) for t in reversed(buckets)],
                "nextPageCursor": _cursor_for(buckets[0]) if more else "",
            },
            call,
        )

    return handle


# ---------------------------------------------------------------------------------------------
# /v5/market/kline and /v5/market/instruments-info


def _kline(call: Call) -> Reply:
    params = Params(call, ERRORS)
    inst = _instrument(call, data=False)
    grid = params.choice("interval", KLINE_INTERVALS)
    limit = params.limit(200, 1000)
    start, end = params.integer("start"), params.integer("end")
    buckets = window(
        grid,
        first=inst.listed_ms,
        last=grid.floor(call.now_ms),
        start=start,
        end=end,
        limit=limit,
        oldest_first=False,
    )
    level = coin(inst.coin).price * inst.multiplier
    p, q = price_decimals(level), qty_decimals(level)
    rows = []
    for t in reversed(buckets):  # the newest candle may still be open [doc]
        c = series.candle(NAME, inst.coin, t, grid.next(t), call.now_ms, inst.multiplier)
        rows.append(
            [
                str(t),
                fixed(c.open, p),
                fixed(c.high, p),
                fixed(c.low, p),
                fixed(c.close, p),
                fixed(c.volume, q),
                fixed(c.quote_volume, 4),
            ]
        )
    return _ok({"category": "linear", "symbol": inst.symbol, "list": rows}, call)


def _instrument_entry(inst: Instrument) -> dict[str, object]:
    level = coin(inst.coin).price * inst.multiplier
    p, q = price_decimals(level), qty_decimals(level)
    step = fixed(10.0**-q, q)
    return {
        "symbol": inst.symbol,
        "contractType": inst.contract_type,
        "status": inst.status,
        "baseCoin": inst.base,
        "quoteCoin": inst.quote,
        "launchTime": str(inst.listed_ms),
        "deliveryTime": str(inst.delivery_ms or 0),
        "deliveryFeeRate": "",
        "priceScale": str(p),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "50.00", "leverageStep": "0.01"},
        "priceFilter": {
            "minPrice": fixed(10.0**-p, p),
            "maxPrice": fixed(level * 20, p),
            "tickSize": fixed(10.0**-p, p),
        },
        "lotSizeFilter": {
            "maxOrderQty": "1000000",
            "minOrderQty": step,
            "qtyStep": step,
            "postOnlyMaxOrderQty": "1000000",
            "maxMktOrderQty": "200000",
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": inst.quote,
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "isPreListing": False,
        "preListingInfo": None,
        "displayName": "",
    }


def _instruments_info(call: Call) -> Reply:
    empty = {"category": "", "list": [], "nextPageCursor": ""}  # recorded error shape
    if call.query.get("category") != "linear":
        raise _fail(call, "category", empty)
    listed = list(call.instruments.values())
    if symbol := call.query.get("symbol"):
        listed = [i for i in listed if i.symbol == symbol]
        if not listed:
            raise _fail(call, "symbol", empty)
    if base := call.query.get("baseCoin"):
        listed = [i for i in listed if i.base == base]
    limit = Params(call, ERRORS).limit(500, 1000)
    after = _instrument_cursor(call)
    listed = [i for i in listed if after is None or i.symbol > after]
    page = listed[:limit]
    more = len(listed) > limit
    cursor = quote(f"first={page[0].symbol}&last={page[-1].symbol}", safe="") if more else ""
    return _ok(
        {
            "category": "linear",
            "list": [_instrument_entry(i) for i in page],
            "nextPageCursor": cursor,
        },
        call,
    )


def _instrument_cursor(call: Call) -> str | None:
    raw = call.query.get("cursor")
    if not raw:
        return None
    try:
        return parse_qs(unquote(raw))["last"][0]
    except (KeyError, IndexError):
        raise _fail(call, "cursor") from None


# ---------------------------------------------------------------------------------------------
# Listing


def _perpetual(name: str) -> Instrument:
    base = MULTIPLIED.get(name, name)
    # Bybit listed most coins some days after the first venue, never before its USDT perps began.
    lag_days = int(30 * series.unit(series.seed("bybit-listing", name), 0))
    listed = max(coin(name).listed_ms + lag_days * DAY, USDT_PERPS_SINCE)
    return Instrument(
        symbol=f"{base}USDT",
        coin=name,
        base=base,
        listed_ms=listed,
        multiplier=1000 if base != name else 1,
        contract_type="LinearPerpetual",
        status="Trading",
    )


def _others(now_ms: int) -> list[Instrument]:
    """USDC perpetuals and dated USDT futures: listed, but not what the pipeline wants."""
    out = [
        Instrument(
            symbol=f"{c}PERP",
            coin=c,
            base=c,
            listed_ms=ms_of("2022-10-10"),
            quote="USDC",
            contract_type="LinearPerpetual",
            status="Trading",
            has_data=False,
        )
        for c in USDC_PERPS
    ]
    for delivery in quarter_expiries(now_ms):
        label = _expiry_label(delivery)
        out.append(
            Instrument(
                symbol=f"BTCUSDT-{label}",
                coin="BTC",
                base="BTC",
                listed_ms=delivery - 90 * DAY,
                contract_type="LinearFutures",
                status="Trading",
                delivery_ms=delivery,
                has_data=False,
            )
        )
    return out


def _expiry_label(delivery_ms: int) -> str:
    return datetime.fromtimestamp(delivery_ms / 1000, UTC).strftime("%d%b%y").upper()


def instruments(listing_gaps: bool, now_ms: int) -> tuple[Instrument, ...]:
    """Alphabetical, as instruments-info pages them."""
    names = [c for c in universe() if not (listing_gaps and c in UNLISTED)] + list(extras())
    listed = [_perpetual(name) for name in names] + _others(now_ms)
    return tuple(sorted(listed, key=lambda inst: inst.symbol))


# ---------------------------------------------------------------------------------------------
# Rate-limit answers


def _banned(breach: Breach) -> Reply:
    # Real Bybit sends no Retry-After here (clients should wait >= 10 minutes); the simulator
    # adds one because its bans are scaled and a client cannot know the scale.
    return Reply(
        403,
        "access too frequent",
        {"Retry-After": str(breach.retry_after_s)},
        content_type="text/plain",
    )


def _busy(now_ms: int) -> Reply:
    return Reply(200, _envelope({}, now_ms, 10016, "Internal server error."))


def _throttled(now_ms: int) -> Reply:
    return Reply(429, _envelope({}, now_ms, 10006, "Too many visits!"), {"Retry-After": "1"})


SPEC = ExchangeSpec(
    name=NAME,
    routes=(
        *(Route(h.path, _history_handler(h), per_request(BUCKET)) for h in HISTORIES),
        Route("/v5/market/kline", _kline, per_request(BUCKET)),
        Route("/v5/market/instruments-info", _instruments_info, per_request(BUCKET)),
    ),
    limits=(RateLimit(BUCKET, 600, 5, "5 seconds"),),
    strikes_before_ban=0,  # no 429 stage: the first breach is a ban
    ban_s=600,
    too_many=_banned,
    banned=_banned,
    throttled=_throttled,
    busy=_busy,
    instruments=instruments,
    drift=(("buyRatio", "buy_ratio"), ("openInterest", "open_interest")),
)
