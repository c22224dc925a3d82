"""Bitget v2 mix, USDT-M (`api.bitget.com`): L/S feeds, taker volume, candles, OI, contracts.

Differences from other exchanges, as data below: `{"code","msg","requestTime","data"}` envelopes
with code "00000" on success and HTTP 400 + a 4xxxx code on errors; every value a string (ms
timestamps too) but `requestTime`, a JSON integer; L/S feeds take only `symbol` and `period` and
answer a fixed window of the latest 30 rows, oldest first, ignoring limit/startTime/endTime;
`/long-short` calls its UTC day `1Dutc`, the others `1d`; the combined ratio field is the share
quotient divided by 100 before SCALED_UNTIL and plain after it (2025 samples vs a 2026 one); some
coins' taker data is answered with `40054` "The data fetched by X is empty"; candles have a
documented depth per granularity and a 90-day range cap; open interest is the current snapshot
only; 1 request/s per IP on each L/S endpoint, 20/s on the market endpoints, 6,000/min overall,
HTTP 429 `{"code":"429","msg":"Too Many Requests"}` when broken (no ban is documented).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pipelines.simulator import series
from pipelines.simulator.coins import coin, extras, universe
from pipelines.simulator.grid import (
    DAY,
    HOUR,
    MINUTE,
    MONTHLY,
    WEEK,
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
    price_decimals,
    qty_decimals,
    trimmed,
)

NAME = "bitget"
_UTC8 = 16 * HOUR  # Bitget's non-"utc" day candles start at 00:00 UTC+8
_INTRADAY: dict[str, Grid] = {
    "5m": every(5 * MINUTE),
    "15m": every(15 * MINUTE),
    "30m": every(30 * MINUTE),
    "1h": every(HOUR),
    "2h": every(2 * HOUR),
    "4h": every(4 * HOUR),
    "6h": every(6 * HOUR),
    "12h": every(12 * HOUR),
}
RATIO_PERIODS: dict[str, Grid] = _INTRADAY | {"1Dutc": every(DAY)}  # /long-short [doc]
OTHER_PERIODS: dict[str, Grid] = _INTRADAY | {"1d": every(DAY)}  # the other three [doc]
DEFAULT_PERIOD = "5m"
WINDOW_ROWS = 30  # fixed latest window, limit/startTime/endTime ignored (seen live)
# The newest row is the last closed bucket, stamped with its start: the 2025 fixture's rows
# (04:45..05:00 at requestTime 07:18) are the first 4 of a 30-row window ending 07:10.
LAG = 1
SCALED_UNTIL = ms_of("2026-01-01")  # the /100 field: seen 2025-09, gone 2026-08; date unknown
# "The data fetched by X is empty" for these coins' taker data (2026-09-17 observation).
NO_TAKER = frozenset({"DOGE", "BNB", "LINK", "ADA", "PEPE"})

KLINE_GRANULARITIES: dict[str, Grid] = {
    "1m": every(MINUTE),
    "3m": every(3 * MINUTE),
    "5m": every(5 * MINUTE),
    "15m": every(15 * MINUTE),
    "30m": every(30 * MINUTE),
    "1H": every(HOUR),
    "2H": every(2 * HOUR),
    "4H": every(4 * HOUR),
    "6H": Grid(6 * HOUR, _UTC8 % (6 * HOUR)),
    "12H": Grid(12 * HOUR, _UTC8 % (12 * HOUR)),
    "1D": Grid(DAY, _UTC8),
    "3D": Grid(3 * DAY, _UTC8),
    "1W": Grid(WEEK, WEEKLY.offset + _UTC8 - DAY),
    "1M": MONTHLY,  # approximation: calendar months in UTC
    "6Hutc": every(6 * HOUR),
    "12Hutc": every(12 * HOUR),
    "1Dutc": every(DAY),
    "3Dutc": every(3 * DAY),
    "1Wutc": WEEKLY,
    "1Mutc": MONTHLY,
}
# How far back /candles serves [doc]; coarser granularities: since listing (not documented).
KLINE_DEPTH = {
    "1m": 30 * DAY,
    "3m": 30 * DAY,
    "5m": 30 * DAY,
    "15m": 52 * DAY,
    "30m": 62 * DAY,
    "1H": 83 * DAY,
    "2H": 120 * DAY,
    "4H": 240 * DAY,
    "6H": 360 * DAY,
    "6Hutc": 360 * DAY,
}
KLINE_LIMIT = (100, 1000)
KLINE_MAX_RANGE = 90 * DAY
PRODUCT_TYPE = "USDT-FUTURES"
IP_BUCKET = "ip-1m"

# Listing: Bitget lists most coins plainly (PEPEUSDT, SHIBUSDT); 1000BONKUSDT is a multiplier
# name (unverified) that keeps the mapping exercised. One universe coin is left unlisted.
MULTIPLIED = {"BONK": "1000BONK"}
UNLISTED = frozenset({"STX"})
# coin, status, listed: entries the pipeline must filter out.
OTHER_ENTRIES: tuple[tuple[str, str, str], ...] = (
    ("LUNA", "off", "2022-05-30"),
    ("FTT", "maintain", "2021-09-10"),
    ("LINEA", "listed", "2025-09-10"),
)
_NO_LAUNCH_TIME_BEFORE = ms_of("2021-01-01")  # the doc's BTCUSDT entry has launchTime ""


# ---------------------------------------------------------------------------------------------
# Envelopes and errors


def _envelope(call: Call, data: object, code: str = "00000", msg: str = "success") -> object:
    return {"code": code, "msg": msg, "requestTime": call.now_ms, "data": data}


def _error(call: Call, code: str, msg: str, status: int = 400) -> Refusal:
    return Refusal(Reply(status, _envelope(call, None, code, msg)))


ERRORS = ParamErrors(
    missing=lambda call, p: _error(call, "40019", f"Parameter {p} cannot be empty"),
    invalid=lambda call, p: _error(call, "40017", f"Parameter verification failed {p}"),
    malformed=lambda call, p: _error(call, "40017", f"Parameter verification failed {p}"),
)


def _instrument(params: Params, call: Call, *, data: bool) -> Instrument:
    symbol = params.text("symbol")
    found = call.instruments.get(symbol)
    if found is None or found.status == "off" or (data and not found.has_data):
        raise _error(call, "40034", f"Parameter {symbol} does not exist")
    return found


def _product(call: Call) -> None:
    value = call.query.get("productType")
    if not value:
        raise ERRORS.missing(call, "productType")
    if value.upper() != PRODUCT_TYPE:  # the docs' own examples send it lower case
        raise ERRORS.invalid(call, "productType")


# ---------------------------------------------------------------------------------------------
# The four L/S feeds

RowFn = Callable[[Instrument, int, int, int], dict[str, object]]  # (inst, bucket, length, now)


def _share_row(metric: str, long_key: str, short_key: str, ratio_key: str) -> RowFn:
    def row(inst: Instrument, t: int, length: int, now: int) -> dict[str, object]:
        long = float(fixed(series.share_at(NAME, inst.coin, metric, t, length, now), 4))
        short = round(1 - long, 4)
        combined = long / short / (100 if now < SCALED_UNTIL else 1)
        return {
            long_key: fixed(long, 4),
            short_key: fixed(short, 4),
            ratio_key: fixed(combined, 4),
            "ts": str(t),
        }

    return row


def _taker_row(inst: Instrument, t: int, length: int, now: int) -> dict[str, object]:
    buy, sell = series.taker_volumes(NAME, inst.coin, t, t + length, now)
    return {
        "buyVolume": trimmed(buy / inst.multiplier, 4),
        "sellVolume": trimmed(sell / inst.multiplier, 4),
        "ts": str(t),
    }


@dataclass(frozen=True)
class Feed:
    path: str
    periods: Mapping[str, Grid]
    row: RowFn
    unpublished: frozenset[str] = frozenset()  # coins answered with 40054


FEEDS: tuple[Feed, ...] = (
    Feed(
        "/api/v2/mix/market/long-short",
        RATIO_PERIODS,
        _share_row("global_account", "longRatio", "shortRatio", "longShortRatio"),
    ),
    Feed(
        "/api/v2/mix/market/account-long-short",
        OTHER_PERIODS,
        _share_row("top_account", "longAccountRatio", "shortAccountRatio", "longShortAccountRatio"),
    ),
    Feed(
        "/api/v2/mix/market/position-long-short",
        OTHER_PERIODS,
        _share_row(
            "top_position", "longPositionRatio", "shortPositionRatio", "longShortPositionRatio"
        ),
    ),
    Feed("/api/v2/mix/market/taker-buy-sell", OTHER_PERIODS, _taker_row, NO_TAKER),
)


def _feed_handler(feed: Feed) -> Handler:
    def handle(call: Call) -> Reply:
        params = Params(call, ERRORS)
        inst = _instrument(params, call, data=True)
        period = call.query.get("period") or DEFAULT_PERIOD
        if period not in feed.periods:
            raise ERRORS.invalid(call, "period")
        if inst.coin in feed.unpublished:
            raise _error(call, "40054", f"The data fetched by {inst.symbol} is empty")
        grid = feed.periods[period]
        newest = grid.floor(call.now_ms) - LAG * grid.step
        buckets = window(
            grid,
            first=inst.listed_ms,
            last=newest,
            start=None,
            end=None,
            limit=WINDOW_ROWS,
            oldest_first=True,
        )
        rows = [feed.row(inst, t, grid.step, call.now_ms) for t in buckets]
        return Reply(200, _envelope(call, rows))

    return handle


# ---------------------------------------------------------------------------------------------
# Candles, open interest, contracts


def _candles(call: Call) -> Reply:
    params = Params(call, ERRORS)
    inst = _instrument(params, call, data=False)
    _product(call)
    name = params.text("granularity")
    grid = params.choice("granularity", KLINE_GRANULARITIES)
    limit = params.limit(*KLINE_LIMIT)
    start, end = params.integer("startTime"), params.integer("endTime")
    if start is not None and end is not None and end - start > KLINE_MAX_RANGE:
        raise _error(call, "00001", "startTime and endTime interval cannot be greater than 90 days")
    depth = KLINE_DEPTH.get(name)
    first = max(inst.listed_ms, call.now_ms - depth) if depth else inst.listed_ms
    buckets = window(
        grid,
        first=first,
        last=grid.floor(call.now_ms),
        start=start,
        end=end,
        limit=limit,
        oldest_first=False,
    )
    level = coin(inst.coin).price * inst.multiplier
    p, q = price_decimals(level), max(2, qty_decimals(level))
    rows = []
    for t in buckets:  # oldest first; the newest candle may still be open
        c = series.candle(NAME, inst.coin, t, grid.next(t), call.now_ms, inst.multiplier)
        prices = (c.open, c.high, c.low, c.close)
        rows.append(
            [
                str(t),
                *(trimmed(v, p) for v in prices),
                trimmed(c.volume, q),
                trimmed(c.quote_volume, 2),
            ]
        )
    return Reply(200, _envelope(call, rows))


def _open_interest(call: Call) -> Reply:
    params = Params(call, ERRORS)
    inst = _instrument(params, call, data=True)
    _product(call)
    size = series.open_interest(NAME, inst.coin, call.now_ms) / inst.multiplier
    data = {
        "openInterestList": [{"symbol": inst.symbol, "size": trimmed(size, 2)}],
        "ts": str(call.now_ms),
    }
    return Reply(200, _envelope(call, data))


def _contract_entry(inst: Instrument) -> dict[str, object]:
    level = coin(inst.coin).price * inst.multiplier
    p, q = price_decimals(level), qty_decimals(level)
    launch = "" if inst.listed_ms < _NO_LAUNCH_TIME_BEFORE else str(inst.listed_ms)
    return {
        "symbol": inst.symbol,
        "baseCoin": inst.base,
        "quoteCoin": inst.quote,
        "buyLimitPriceRatio": "0.9",
        "sellLimitPriceRatio": "0.9",
        "feeRateUpRatio": "0.1",
        "makerFeeRate": "0.0002",
        "takerFeeRate": "0.0006",
        "openCostUpRatio": "0.1",
        "supportMarginCoins": [inst.quote],
        "minTradeNum": fixed(10.0**-q, q),
        "priceEndStep": "1",
        "volumePlace": str(q),
        "pricePlace": str(p),
        "sizeMultiplier": fixed(10.0**-q, q),
        "symbolType": inst.contract_type,
        "minTradeUSDT": "5",
        "maxSymbolOrderNum": "999999",
        "maxProductOrderNum": "999999",
        "maxPositionNum": "150",
        "symbolStatus": inst.status,
        "offTime": "-1",
        "limitOpenTime": "-1",
        "deliveryTime": str(inst.delivery_ms) if inst.delivery_ms else "",
        "deliveryStartTime": str(inst.delivery_ms - HOUR) if inst.delivery_ms else "",
        "launchTime": launch,
        "fundInterval": "8",
        "minLever": "1",
        "maxLever": "125" if inst.coin in ("BTC", "ETH") else "50",
        "posLimit": "0.05",
        "maintainTime": "",
        "maxMarketOrderQty": "220",
        "maxOrderQty": "1200",
        "isRwa": "NO",
    }


def _contracts(call: Call) -> Reply:
    _product(call)
    listed = list(call.instruments.values())
    if symbol := call.query.get("symbol"):
        listed = [i for i in listed if i.symbol == symbol]
        if not listed:
            raise _error(call, "40034", f"Parameter {symbol} does not exist")
    return Reply(200, _envelope(call, [_contract_entry(i) for i in listed]))


# ---------------------------------------------------------------------------------------------
# Listing


def _perpetual(name: str) -> Instrument:
    base = MULTIPLIED.get(name, name)
    return Instrument(
        symbol=f"{base}USDT",
        coin=name,
        base=base,
        listed_ms=coin(name).listed_ms,
        multiplier=1000 if base != name else 1,
        contract_type="perpetual",
        status="normal",
    )


def _others(now_ms: int) -> list[Instrument]:
    """Delivery futures and contracts that are off, in maintenance or not yet trading."""
    out = [
        Instrument(
            symbol=f"BTCUSDT{datetime.fromtimestamp(d / 1000, UTC):%y%m%d}",
            coin="BTC",
            base="BTC",
            listed_ms=d - 90 * DAY,
            contract_type="delivery",
            status="normal",
            delivery_ms=d,
            has_data=False,
        )
        for d in quarter_expiries(now_ms)
    ]
    out += [
        Instrument(
            symbol=f"{c}USDT",
            coin=c,
            base=c,
            listed_ms=ms_of(day),
            contract_type="perpetual",
            status=status,
            has_data=status != "off",
        )
        for c, status, day in OTHER_ENTRIES
    ]
    return out


def instruments(listing_gaps: bool, now_ms: int) -> tuple[Instrument, ...]:
    """In listing order, like the real list."""
    names = [c for c in universe() if not (listing_gaps and c in UNLISTED)] + list(extras())
    listed = [_perpetual(name) for name in names] + _others(now_ms)
    return tuple(sorted(listed, key=lambda inst: (inst.listed_ms, inst.symbol)))


# ---------------------------------------------------------------------------------------------
# Rate limits


def _too_many(_breach: Breach) -> Reply:
    # The body as a third-party mock quotes it; whether Retry-After is sent is not documented.
    return Reply(429, {"code": "429", "msg": "Too Many Requests"})


def _busy(now_ms: int) -> Reply:
    # Seen as HTTP 200 from the real API: the envelope alone says "try again".
    body = {"code": "40725", "msg": "service return an error", "requestTime": now_ms, "data": None}
    return Reply(200, body)


def _throttled(_now_ms: int) -> Reply:
    return Reply(429, {"code": "429", "msg": "Too Many Requests"})


def _cost(path: str) -> Callable[[Mapping[str, str]], Mapping[str, int]]:
    charge = {path: 1, IP_BUCKET: 1}
    return lambda _query: charge


MARKET_ROUTES: tuple[tuple[str, Handler], ...] = (
    ("/api/v2/mix/market/candles", _candles),
    ("/api/v2/mix/market/open-interest", _open_interest),
    ("/api/v2/mix/market/contracts", _contracts),
)

SPEC = ExchangeSpec(
    name=NAME,
    routes=(
        *(Route(f.path, _feed_handler(f), _cost(f.path)) for f in FEEDS),
        *(Route(path, handler, _cost(path)) for path, handler in MARKET_ROUTES),
    ),
    limits=(
        # "1 req/s (IP)" on each L/S feed [doc]; live 429s began near 4.3/s (measured in 2026).
        *(RateLimit(f.path, 1, 1, "second") for f in FEEDS),
        *(RateLimit(path, 20, 1, "second") for path, _ in MARKET_ROUTES),
        RateLimit(IP_BUCKET, 6000, 60, "minute"),
    ),
    strikes_before_ban=1_000_000,  # no IP ban is documented: only 429s
    ban_s=0,
    too_many=_too_many,
    banned=_too_many,
    throttled=_throttled,
    busy=_busy,
    instruments=instruments,
    drift=(
        ("longRatio", "longRate"),
        ("longAccountRatio", "longAccRatio"),
        ("longPositionRatio", "longPosRatio"),
        ("buyVolume", "buyVol"),
        ("size", "amount"),
    ),
)
