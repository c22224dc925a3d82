"""Binance USD-M futures (`fapi.binance.com`): L/S ratios, taker volume, OI, klines, exchangeInfo.

Differences from other exchanges, as data below: oldest-first arrays, ms timestamps as JSON
integers, ratio strings with 4 decimals, a 30-day retention window that refuses older startTimes
(2026 behaviour), `{"code","msg"}` errors with HTTP 4xx, per-endpoint 1000/5min limits on
/futures/data plus a 2400/min weight budget on /fapi, and 429 -> 418 bans.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pipelines.simulator import binance_archive, series
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
)

NAME = "binance"
PERIODS: dict[str, Grid] = {
    "5m": every(5 * MINUTE),
    "15m": every(15 * MINUTE),
    "30m": every(30 * MINUTE),
    "1h": every(HOUR),
    "2h": every(2 * HOUR),
    "4h": every(4 * HOUR),
    "6h": every(6 * HOUR),
    "12h": every(12 * HOUR),
    "1d": every(DAY),
}
KLINE_INTERVALS: dict[str, Grid] = {
    "1m": every(MINUTE),
    "3m": every(3 * MINUTE),
    "5m": every(5 * MINUTE),
    "15m": every(15 * MINUTE),
    "30m": every(30 * MINUTE),
    "1h": every(HOUR),
    "2h": every(2 * HOUR),
    "4h": every(4 * HOUR),
    "6h": every(6 * HOUR),
    "8h": every(8 * HOUR),
    "12h": every(12 * HOUR),
    "1d": every(DAY),
    "3d": every(3 * DAY),
    "1w": WEEKLY,
    "1M": MONTHLY,
}
RETENTION_MS = 30 * DAY  # "Only the data of the latest 30 days is available"
DATA_LIMIT = (30, 500)  # (default, max) rows on /futures/data/*
KLINE_LIMIT = (500, 1500)
WEIGHT = "weight-1m"

# Listing: multiplier contracts, and a universe coin Binance does not list (it listed TON
# perpetuals long after other venues), so the pipeline's instrument intersection is exercised.
MULTIPLIED = {"PEPE": "1000PEPE", "SHIB": "1000SHIB", "BONK": "1000BONK", "FLOKI": "1000FLOKI"}
UNLISTED = frozenset({"TON"})
# Entries the pipeline must filter out: non-USDT perps, delisted/pending contracts.
OTHER_ENTRIES: tuple[tuple[str, str, str, str], ...] = (
    # coin, quote, status, listed
    ("BTC", "USDC", "TRADING", "2023-09-21"),
    ("ETH", "USDC", "TRADING", "2023-09-21"),
    ("FTT", "USDT", "SETTLING", "2021-09-10"),
    ("SRM", "USDT", "CLOSE", "2020-09-25"),
    ("LINEA", "USDT", "PENDING_TRADING", "2025-09-10"),
)


def _error(code: int, msg: str, status: int = 400) -> Refusal:
    return Refusal(Reply(status, {"code": code, "msg": msg}))


def _invalid(_call: Call, param: str) -> Refusal:
    if param == "interval":
        return _error(-1120, "Invalid interval.")
    return _error(-1130, f"Data sent for parameter '{param}' is not valid.")


ERRORS = ParamErrors(
    missing=lambda _call, p: _error(
        -1102, f"Mandatory parameter '{p}' was not sent, was empty/null, or malformed."
    ),
    invalid=_invalid,
    malformed=lambda _call, p: _error(
        -1100, f"Illegal characters found in parameter '{p}'; legal range is '^[0-9]{{1,20}}$'."
    ),
)


def _instrument(params: Params, call: Call, *, data: bool) -> Instrument:
    found = call.instruments.get(params.text("symbol"))
    if found is None or found.status != "TRADING" or (data and not found.has_data):
        raise _error(-1121, "Invalid symbol.")
    return found


def _times(params: Params) -> tuple[int | None, int | None]:
    start, end = params.integer("startTime"), params.integer("endTime")
    if start is not None and end is not None and start > end:
        raise _error(-1130, "parameter 'endTime' is invalid.")
    return start, end


# ---------------------------------------------------------------------------------------------
# /futures/data/*: L/S ratios, taker volume, open interest

RowFn = Callable[[Instrument, int, int, int], dict[str, object]]  # (inst, bucket, length, now)


def _ratio_row(metric: str) -> RowFn:
    def row(inst: Instrument, t: int, length: int, now: int) -> dict[str, object]:
        long = series.share_at(NAME, inst.coin, metric, t, length, now)
        long_text = fixed(long, 4)
        # The published ratio is rounded on its own, so it may differ from long/short in the
        # 4th decimal (seen live in 2026); the shares always add up to 1.0000.
        return {
            "symbol": inst.symbol,
            "longShortRatio": fixed(long / (1 - long), 4),
            "longAccount": long_text,
            "shortAccount": fixed(1 - float(long_text), 4),
            "timestamp": t,
        }

    return row


def _taker_row(inst: Instrument, t: int, length: int, now: int) -> dict[str, object]:
    buy, sell = series.taker_volumes(NAME, inst.coin, t, t + length, now)
    buy, sell = buy / inst.multiplier, sell / inst.multiplier
    return {
        "buySellRatio": fixed(buy / sell, 4),
        "buyVol": fixed(buy, 4),
        "sellVol": fixed(sell, 4),
        "timestamp": t,
    }


def _oi_row(inst: Instrument, t: int, length: int, now: int) -> dict[str, object]:
    amount = series.open_interest_at(NAME, inst.coin, t, length, now)
    value = amount * series.price(inst.coin, t, NAME)
    return {
        "symbol": inst.symbol,
        "sumOpenInterest": fixed(amount / inst.multiplier, 8),
        "sumOpenInterestValue": fixed(value, 8),
        "CMCCirculatingSupply": fixed(series.circulating_supply(inst.coin), 3),
        "timestamp": t,
    }


@dataclass(frozen=True)
class DataSeries:
    path: str
    row: RowFn
    # Buckets behind the open one. Taker rows are stamped with the start of the period they
    # sum, so the newest one is the last closed period; ratio and OI rows are snapshots stamped
    # with their own time, the newest being the open bucket (a live capture at 13:12).
    lag: int = 0


DATA: tuple[DataSeries, ...] = (
    DataSeries("/futures/data/globalLongShortAccountRatio", _ratio_row("global_account")),
    DataSeries("/futures/data/topLongShortAccountRatio", _ratio_row("top_account")),
    # Position shares are still keyed longAccount/shortAccount on USD-M [doc+real].
    DataSeries("/futures/data/topLongShortPositionRatio", _ratio_row("top_position")),
    DataSeries("/futures/data/takerlongshortRatio", _taker_row, lag=1),
    DataSeries("/futures/data/openInterestHist", _oi_row),
)


def _data_handler(data: DataSeries) -> Handler:
    def handle(call: Call) -> Reply:
        params = Params(call, ERRORS)
        inst = _instrument(params, call, data=True)
        grid = params.choice("period", PERIODS)
        limit = params.limit(*DATA_LIMIT)
        start, end = _times(params)
        oldest = call.now_ms - RETENTION_MS
        if start is not None and start < oldest:
            raise _error(-1130, "parameter 'startTime' is invalid.")
        newest = grid.floor(call.now_ms) - data.lag * grid.step
        buckets = window(
            grid,
            first=max(oldest, inst.listed_ms),
            last=newest,
            start=start,
            end=end,
            limit=limit,
            oldest_first=True,
        )
        return Reply(200, [data.row(inst, t, grid.step, call.now_ms) for t in buckets])

    return handle


# ---------------------------------------------------------------------------------------------
# /fapi/v1/klines and /fapi/v1/exchangeInfo


def _kline_row(inst: Instrument, grid: Grid, t: int, now: int) -> list[object]:
    close = grid.next(t)
    c = series.candle(NAME, inst.coin, t, close, now, inst.multiplier)
    level = coin(inst.coin).price * inst.multiplier
    p, q = price_decimals(level), qty_decimals(level)
    return [
        t,
        fixed(c.open, p),
        fixed(c.high, p),
        fixed(c.low, p),
        fixed(c.close, p),
        fixed(c.volume, q),
        close - 1,
        fixed(c.quote_volume, 5),
        c.trades,
        fixed(c.taker_buy_volume, q),
        fixed(c.taker_buy_quote, 5),
        "0",
    ]


def _klines(call: Call) -> Reply:
    params = Params(call, ERRORS)
    inst = _instrument(params, call, data=False)
    grid = params.choice("interval", KLINE_INTERVALS)
    limit = params.limit(*KLINE_LIMIT)
    start, end = _times(params)
    buckets = window(
        grid,
        first=inst.listed_ms,
        last=grid.floor(call.now_ms),
        start=start,
        end=end,
        limit=limit,
        oldest_first=True,
    )
    return Reply(200, [_kline_row(inst, grid, t, call.now_ms) for t in buckets])


def _kline_weight(query: Mapping[str, str]) -> Mapping[str, int]:
    """Weight by requested limit: <100 -> 1, <500 -> 2, <=1000 -> 5, else 10."""
    try:
        limit = int(query.get("limit") or KLINE_LIMIT[0])
    except ValueError:
        limit = KLINE_LIMIT[0]
    weight = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    return {WEIGHT: weight}


def _symbol_entry(inst: Instrument) -> dict[str, object]:
    level = coin(inst.coin).price * inst.multiplier
    p, q = price_decimals(level), qty_decimals(level)
    tick = fixed(10.0**-p, p)
    return {
        "symbol": inst.symbol,
        "pair": f"{inst.base}{inst.quote}",
        "contractType": inst.contract_type,
        "deliveryDate": inst.delivery_ms or 4133404800000,
        "onboardDate": inst.listed_ms,
        "status": inst.status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": inst.base,
        "quoteAsset": inst.quote,
        "marginAsset": inst.quote,
        "pricePrecision": p,
        "quantityPrecision": q,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "tickSize": tick,
                "minPrice": tick,
                "maxPrice": fixed(level * 20, p),
            },
            {
                "filterType": "LOT_SIZE",
                "stepSize": fixed(10.0**-q, q),
                "minQty": fixed(10.0**-q, q),
                "maxQty": "1000000",
            },
        ],
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def _exchange_info(call: Call) -> Reply:
    return Reply(
        200,
        {
            "timezone": "UTC",
            "serverTime": call.now_ms,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                },
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [
                {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
                {"asset": "USDC", "marginAvailable": True, "autoAssetExchange": "-10000"},
            ],
            "symbols": [_symbol_entry(inst) for inst in call.instruments.values()],
        },
    )


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
    )


def _quarterly(name: str, delivery: int, contract_type: str) -> Instrument:
    suffix = datetime.fromtimestamp(delivery / 1000, UTC).strftime("%y%m%d")
    return Instrument(
        symbol=f"{name}USDT_{suffix}",
        coin=name,
        base=name,
        listed_ms=delivery - 90 * DAY,
        contract_type=contract_type,
        delivery_ms=delivery,
        has_data=False,
    )


def instruments(listing_gaps: bool, now_ms: int) -> tuple[Instrument, ...]:
    """exchangeInfo in onboarding order, like the real list (not alphabetical)."""
    names = [c for c in universe() if not (listing_gaps and c in UNLISTED)] + list(extras())
    listed = [_perpetual(name) for name in names]
    current, following = quarter_expiries(now_ms)
    listed += [
        _quarterly("BTC", current, "CURRENT_QUARTER"),
        _quarterly("BTC", following, "NEXT_QUARTER"),
        _quarterly("ETH", current, "CURRENT_QUARTER"),
    ]
    listed += [
        Instrument(
            symbol=f"{c}{quote}",
            coin=c,
            base=c,
            listed_ms=ms_of(day),
            quote=quote,
            status=status,
            has_data=status == "TRADING" and quote == "USDT",
        )
        for c, quote, status, day in OTHER_ENTRIES
    ]
    return tuple(sorted(listed, key=lambda inst: (inst.listed_ms, inst.symbol)))


# ---------------------------------------------------------------------------------------------
# Rate-limit answers


def _too_many(breach: Breach) -> Reply:
    limit = breach.limit
    per = f"{limit.capacity} requests per {limit.label}" if limit else "the limit"
    msg = (
        f"Too many requests; current limit of IP({breach.ip}) is {per}. Please use the "
        "websocket for live updates to avoid polling the API."
    )
    return Reply(429, {"code": -1003, "msg": msg}, {"Retry-After": str(breach.retry_after_s)})


def _banned(breach: Breach) -> Reply:
    msg = (
        f"Way too many requests; IP({breach.ip}) banned until {breach.until_ms}. Please use "
        "the websocket for live updates to avoid bans."
    )
    return Reply(418, {"code": -1003, "msg": msg}, {"Retry-After": str(breach.retry_after_s)})


def _busy(_now_ms: int) -> Reply:
    msg = "Server is currently overloaded with other requests. Please try again in a few minutes."
    return Reply(503, {"code": -1008, "msg": msg})


def _throttled(now_ms: int) -> Reply:
    msg = "Too many requests; please use the websocket for live updates to avoid polling the API."
    return Reply(429, {"code": -1003, "msg": msg}, {"Retry-After": "1"})


SPEC = ExchangeSpec(
    name=NAME,
    routes=(
        *(Route(d.path, _data_handler(d), per_request(d.path)) for d in DATA),
        Route("/fapi/v1/klines", _klines, _kline_weight),
        Route("/fapi/v1/exchangeInfo", _exchange_info, per_request(WEIGHT)),
        # data.binance.vision is another host in reality; here it shares the prefix, so one
        # base URL serves both (LSR_BINANCE_ARCHIVE_URL points at it).
        Route(
            binance_archive.PATH, binance_archive.handler(NAME), per_request(binance_archive.BUCKET)
        ),
    ),
    limits=(
        RateLimit(WEIGHT, 2400, 60, "minute"),
        # "IP rate limit 1000 requests/5min" on each /futures/data endpoint, weight 0.
        *(RateLimit(d.path, 1000, 300, "5 minutes") for d in DATA),
        # A CDN with no published limit; generous, yet a runaway loop still meets a 429.
        RateLimit(binance_archive.BUCKET, 6000, 60, "minute"),
    ),
    strikes_before_ban=6,  # the first 429 and 5 more are tolerated; the next breach is a ban
    ban_s=120,
    too_many=_too_many,
    banned=_banned,
    throttled=_throttled,
    busy=_busy,
    instruments=instruments,
    drift=(
        ("longAccount", "longAcct"),
        ("buySellRatio", "buySellRate"),
        ("sumOpenInterest", "sumOpenInterestQty"),
    ),
    usage_headers=(("X-MBX-USED-WEIGHT-1M", WEIGHT),),
)
