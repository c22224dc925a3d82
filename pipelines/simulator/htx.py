"""HTX USDT-margined linear swap (`api.hbdm.com`): elite ratios, OI history, klines, contract info.

Differences from other exchanges, as data below: `{"status":"ok","data":...,"ts":...}` envelopes
and errors as HTTP 200 with `"status":"error"`, keyed `err_code`/`err_msg` (a number) on
/linear-swap-api and `err-code`/`err-msg` on /linear-swap-ex; an unknown path is a Spring-style
JSON 404; JSON numbers everywhere, ms timestamps except kline ids (seconds); days and 12 h buckets
start at 00:00 Singapore time (16:00 UTC); the elite ratios take no time range or size and answer
the latest 48 buckets, oldest first, with holes in the hourly series and a `locked_ratio` beside
the account shares; OI history is newest first with `size` <= 200; klines take `size` (latest) or
`from`/`to` (seconds); coins are listed by name (`PEPE-USDT`, small prices via `contract_size`);
240 requests / 3 s per IP shared by the non-market calls, 800 / s for market data, and over the
limit `err_code` 1032 in an HTTP 200 body, with no ban stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime

from pipelines.simulator import series
from pipelines.simulator.coins import coin, extras, universe
from pipelines.simulator.grid import (
    DAY,
    HOUR,
    MINUTE,
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
    per_request,
    price_decimals,
)

NAME = "htx"
_SGT = 8 * HOUR  # HTX counts days from 00:00 Singapore time (UTC+8)


def _sgt(step: int, offset: int = 0) -> Grid:
    """A grid whose buckets start at Singapore midnight: `1day` rows are stamped 16:00 UTC."""
    return Grid(step, (offset - _SGT) % step)


ELITE_PERIODS: dict[str, Grid] = {
    "5min": every(5 * MINUTE),
    "15min": every(15 * MINUTE),
    "30min": every(30 * MINUTE),
    "60min": every(HOUR),
    "4hour": _sgt(4 * HOUR),
    "1day": _sgt(DAY),
}
OI_PERIODS: dict[str, Grid] = {
    "60min": every(HOUR),
    "4hour": _sgt(4 * HOUR),
    "12hour": _sgt(12 * HOUR),
    "1day": _sgt(DAY),
}
KLINE_PERIODS: dict[str, Grid] = {
    "1min": every(MINUTE),
    **ELITE_PERIODS,
    "1hour": every(HOUR),
    "1week": _sgt(WEEK, WEEKLY.offset),
    # "1mon" (Singapore calendar months) is not simulated.
}
ELITE_ROWS = 48  # the fixed latest window (row count unverified; 48 = two days of 60min)
HOLE_RATE = 0.03  # share of hourly elite buckets HTX never fills (2026 observation)
OI_SIZE = (48, 200)  # (default, max)
KLINE_MAX = 2000
USDT_SWAPS_SINCE = ms_of("2020-10-21")  # BTC-USDT create_date: no USDT swap is older
PUBLIC = "public-3s"  # elite ratios, contract info, OI history ... ("non-market" interfaces)
MARKET = "market-1s"  # klines, depth, tickers
RATE_HEADERS = {"ratelimit-limit": "240", "ratelimit-interval": "3000"}

# Listing: universe coins HTX does not list, and entries the pipeline must filter out.
UNLISTED = frozenset({"TAO", "STX"})
SUSPENDED = ("CYBER", "BLESS")  # contract_status 3 in the 2026 catalog
TRADFI = {"NVDA": "Stocks", "XAU": "Metals"}  # USDT-margined, but not crypto
NAMED_IN_CHINESE = ("龙虾",)  # the 2026 catalog lists contracts named in Chinese


# ---------------------------------------------------------------------------------------------
# Envelopes and parameters


def _ok(data: object, call: Call) -> Reply:
    return Reply(200, {"status": "ok", "data": data, "ts": call.now_ms}, RATE_HEADERS)


def _api_error(call: Call, code: int, message: str) -> Refusal:
    body = {"status": "error", "err_code": code, "err_msg": message, "ts": call.now_ms}
    return Refusal(Reply(200, body, RATE_HEADERS))


def _market_error(call: Call, message: str) -> Refusal:
    body = {
        "ts": call.now_ms,
        "status": "error",
        "err-code": "invalid-parameter",
        "err-msg": message,
    }
    return Refusal(Reply(200, body))


def _no_contract(call: Call) -> Refusal:
    return _api_error(call, 1014, "This contract doesnt exist.")


def _input_error(call: Call, _param: str) -> Refusal:
    return _api_error(call, 1030, "Input error.")


API_ERRORS = ParamErrors(
    missing=lambda call, p: _no_contract(call) if p == "contract_code" else _input_error(call, p),
    invalid=_input_error,
    malformed=_input_error,
)


def _market_invalid(call: Call, param: str) -> Refusal:
    return _market_error(call, f"invalid {param}:{call.query.get(param, '')}")


MARKET_ERRORS = ParamErrors(
    missing=lambda call, p: _market_error(call, f"{p} data error or empty"),
    invalid=_market_invalid,
    malformed=_market_invalid,
)


def _swap(call: Call, refuse: Refusal) -> Instrument:
    """The listed perpetual named by `contract_code` (case-insensitive)."""
    found = call.instruments.get(call.query.get("contract_code", "").upper())
    if found is None or not found.has_data:
        raise refuse
    return found


def _size(call: Call, errors: ParamErrors, default: int, maximum: int) -> int:
    size = Params(call, errors).integer("size")
    if size is None:
        return default
    if not 1 <= size <= maximum:
        raise errors.invalid(call, "size")
    return size


def _num(value: float) -> int | float:
    """HTX prints decimals as JSON numbers: 0.5 stays a float, a whole 0 is an integer 0."""
    return int(value) if value == int(value) else value


def contract_size(name: str) -> float:
    """Coins per contract: a power of ten worth roughly 10-100 USD (BTC 0.001, DOGE 100)."""
    return float(10.0 ** math.floor(math.log10(100 / coin(name).price)))


# ---------------------------------------------------------------------------------------------
# Elite ratios: the latest 48 buckets, oldest first, no time range


def is_hole(name: str, period: str, t: int) -> bool:
    """Whether HTX left the elite bucket at t empty (hourly series only, both metrics alike)."""
    return period == "60min" and series.unit(series.seed("htx-hole", name), t // HOUR) < HOLE_RATE


def locked_share(name: str, t: int) -> float:
    """Share of elite accounts HTX counts as locked; about half the coins always show 0."""
    s = series.seed("htx-locked", name)
    if series.unit(s, 0) < 0.5:
        return 0.0
    return 0.005 + 0.045 * series.unit(s, t // MINUTE)


def _elite_row(inst: Instrument, metric: str, t: int, length: int, now: int) -> dict[str, object]:
    long = series.share_at(NAME, inst.coin, metric, t, length, now)
    if metric == "top_position":
        buy = round(long, 4)
        return {"buy_ratio": _num(buy), "sell_ratio": _num(round(1 - buy, 4)), "ts": t}
    locked = round(locked_share(inst.coin, t), 4)
    buy = round(long * (1 - locked), 4)
    return {
        "buy_ratio": _num(buy),
        "sell_ratio": _num(round(1 - buy - locked, 4)),
        "locked_ratio": _num(locked),
        "ts": t,
    }


def _elite_handler(metric: str) -> Handler:
    def handle(call: Call) -> Reply:
        params = Params(call, API_ERRORS)
        inst = _swap(call, _no_contract(call))
        grid = params.choice("period", ELITE_PERIODS)
        buckets = window(
            grid,
            first=inst.listed_ms,
            last=grid.floor(call.now_ms),
            start=None,
            end=None,
            limit=ELITE_ROWS,
            oldest_first=False,
        )
        period = call.query["period"]
        rows = [
            _elite_row(inst, metric, t, grid.length(t), call.now_ms)
            for t in buckets
            if not is_hole(inst.coin, period, t)
        ]
        data = {
            "list": rows,
            "symbol": inst.base,
            "contract_code": inst.symbol,
            "business_type": "swap",
            "pair": inst.symbol,
        }
        return _ok(data, call)

    return handle


# ---------------------------------------------------------------------------------------------
# Open-interest history (newest first) and klines


def _open_interest(call: Call) -> Reply:
    params = Params(call, API_ERRORS)
    inst = _swap(call, _no_contract(call))
    grid = params.choice("period", OI_PERIODS)
    amount_type = params.choice("amount_type", {"1": 1, "2": 2})
    buckets = window(
        grid,
        first=inst.listed_ms,
        last=grid.floor(call.now_ms),
        start=None,
        end=None,
        limit=_size(call, API_ERRORS, *OI_SIZE),
        oldest_first=False,
    )
    ticks = []
    for t in reversed(buckets):  # "Tick data is arranged in reverse chronological order" [doc]
        coins = series.open_interest_at(NAME, inst.coin, t, grid.length(t), call.now_ms)
        volume = round(coins / contract_size(inst.coin)) if amount_type == 1 else coins
        value = coins * series.price(inst.coin, t, NAME)
        ticks.append(
            {
                "volume": float(round(volume, 4)),
                "amount_type": amount_type,
                "ts": t,
                "value": float(round(value, 4)),
            }
        )
    data = {
        "symbol": inst.base,
        "tick": ticks,
        "contract_code": inst.symbol,
        "business_type": "swap",
        "pair": inst.symbol,
        "contract_type": "swap",
    }
    return _ok(data, call)


def _kline_row(inst: Instrument, grid: Grid, t: int, now: int) -> dict[str, object]:
    c = series.candle(NAME, inst.coin, t, grid.next(t), now)
    p = price_decimals(coin(inst.coin).price)
    size = contract_size(inst.coin)
    contracts = round(c.volume / size)
    return {  # key order of the documented example
        "amount": round(contracts * size, 8),
        "close": round(c.close, p),
        "count": c.trades,
        "high": round(c.high, p),
        "id": t // 1000,
        "low": round(c.low, p),
        "open": round(c.open, p),
        "trade_turnover": round(c.quote_volume, 4),
        "vol": contracts,
    }


def _klines(call: Call) -> Reply:
    """`size`: the latest candles (from/to then ignored); else `from`+`to` (seconds, inclusive,
    at most 2,000 candles); neither: an empty list [doc]."""
    params = Params(call, MARKET_ERRORS)
    inst = _swap(call, _market_error(call, "contract_code data error or empty"))
    period = params.text("period")
    grid = params.choice("period", KLINE_PERIODS)
    size = params.integer("size")
    start, end = params.integer("from"), params.integer("to")
    last = grid.floor(call.now_ms)
    buckets: list[int] = []
    if size is not None:
        if not 1 <= size <= KLINE_MAX:
            raise _market_invalid(call, "size")
        buckets = window(
            grid,
            first=inst.listed_ms,
            last=last,
            start=None,
            end=None,
            limit=size,
            oldest_first=False,
        )
    elif start is not None:
        if end is None:
            raise MARKET_ERRORS.missing(call, "to")
        buckets = window(
            grid,
            first=inst.listed_ms,
            last=last,
            start=start * 1000,
            end=end * 1000,
            limit=KLINE_MAX,
            oldest_first=True,
        )
    return Reply(
        200,
        {
            "ch": f"market.{inst.symbol}.kline.{period}",
            "data": [_kline_row(inst, grid, t, call.now_ms) for t in buckets],
            "status": "ok",
            "ts": call.now_ms,
        },
    )


# ---------------------------------------------------------------------------------------------
# Contract info and the listing


def _yyyymmdd(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d")


def _business(inst: Instrument) -> str:
    return "futures" if inst.delivery_ms else "swap"


def _contract_entry(inst: Instrument, now_ms: int) -> dict[str, object]:
    p = price_decimals(coin(inst.coin).price)
    delivery = inst.delivery_ms
    return {
        "symbol": inst.base,
        "contract_code": inst.symbol,
        "contract_size": contract_size(inst.coin),
        "price_tick": float(f"{10.0**-p:.{p}f}"),
        "delivery_date": _yyyymmdd(delivery) if delivery else "",
        "delivery_time": str(delivery) if delivery else "",
        "create_date": _yyyymmdd(inst.listed_ms),
        "contract_status": int(inst.status),
        "settlement_date": str(now_ms - now_ms % (8 * HOUR) + 8 * HOUR),
        "support_margin_mode": "all",
        "business_type": _business(inst),
        "pair": f"{inst.base}-USDT",
        "contract_type": inst.contract_type,
        "trade_partition": "USDT",
        "settlement_period": "8",
        "tradfi_labels": TRADFI.get(inst.coin, ""),
    }


def _contract_info(call: Call) -> Reply:
    business = call.query.get("business_type") or "swap"
    if business not in ("swap", "futures", "all"):
        raise _input_error(call, "business_type")
    listed = [i for i in call.instruments.values() if business in ("all", _business(i))]
    if code := call.query.get("contract_code"):
        listed = [i for i in listed if i.symbol == code.upper()]
        if not listed:
            raise _no_contract(call)
    return _ok([_contract_entry(i, call.now_ms) for i in listed], call)


def _not_found(call: Call) -> Reply:
    """Any other path: the Spring-style 404 of HTX's gateway. The real body also names the
    `path`, which a handler is not told, so it is left out rather than made up."""
    stamp = datetime.fromtimestamp(call.now_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return Reply(404, {"timestamp": stamp, "status": 404, "error": "Not Found"})


def _swap_entry(name: str, status: str = "1") -> Instrument:
    # HTX listed most coins some days after the first venue, never before its USDT swaps began.
    lag_days = int(60 * series.unit(series.seed("htx-listing", name), 0))
    return Instrument(
        symbol=f"{name}-USDT",
        coin=name,
        base=name,
        listed_ms=max(coin(name).listed_ms + lag_days * DAY, USDT_SWAPS_SINCE),
        contract_type="swap",
        status=status,
        has_data=status == "1",
    )


def instruments(listing_gaps: bool, now_ms: int) -> tuple[Instrument, ...]:
    """The catalog in listing order; dated futures only show with `business_type=futures|all`."""
    names = [c for c in universe() if not (listing_gaps and c in UNLISTED)] + list(extras())
    listed = [_swap_entry(n) for n in (*names, *TRADFI, *NAMED_IN_CHINESE)]
    listed += [_swap_entry(n, status="3") for n in SUSPENDED]
    for delivery, kind in zip(quarter_expiries(now_ms), ("quarter", "next_quarter"), strict=True):
        listed.append(
            Instrument(
                symbol=f"BTC-USDT-{_yyyymmdd(delivery)[2:]}",
                coin="BTC",
                base="BTC",
                listed_ms=delivery - 90 * DAY,
                contract_type=kind,
                status="1",
                delivery_ms=delivery,
                has_data=False,
            )
        )
    return tuple(sorted(listed, key=lambda inst: (inst.listed_ms, inst.symbol)))


# ---------------------------------------------------------------------------------------------
# Rate-limit answers: 1032 in an HTTP 200 body, no Retry-After, no ban


def _error_envelope(now_ms: int, code: int, message: str) -> Reply:
    body = {"status": "error", "err_code": code, "err_msg": message, "ts": now_ms}
    return Reply(200, body, RATE_HEADERS)


def _busy(now_ms: int) -> Reply:
    return _error_envelope(now_ms, 1004, "System busy. Please try again later")


def _over_limit(now_ms: int) -> Reply:
    return _error_envelope(now_ms, 1032, "The number of access exceeded the limit.")


def _too_many(breach: Breach) -> Reply:
    return _over_limit(breach.now_ms)


def _no_cost(_query: Mapping[str, str]) -> Mapping[str, int]:
    return {}


SPEC = ExchangeSpec(
    name=NAME,
    routes=(
        Route(
            "/linear-swap-api/v1/swap_elite_account_ratio",
            _elite_handler("top_account"),
            per_request(PUBLIC),
        ),
        Route(
            "/linear-swap-api/v1/swap_elite_position_ratio",
            _elite_handler("top_position"),
            per_request(PUBLIC),
        ),
        Route("/linear-swap-api/v1/swap_his_open_interest", _open_interest, per_request(PUBLIC)),
        Route("/linear-swap-api/v1/swap_contract_info", _contract_info, per_request(PUBLIC)),
        Route("/linear-swap-ex/market/history/kline", _klines, per_request(MARKET)),
        Route("/{tail:.*}", _not_found, _no_cost),  # matched after every real path
    ),
    limits=(
        RateLimit(PUBLIC, 240, 3, "3 seconds"),
        RateLimit(MARKET, 800, 1, "second"),
    ),
    strikes_before_ban=1_000_000_000,  # HTX documents no ban: every breach is another 1032
    ban_s=0,
    too_many=_too_many,
    banned=_too_many,
    throttled=_over_limit,
    busy=_busy,
    instruments=instruments,
    drift=(("buy_ratio", "buy_rate"), ("volume", "oi_volume")),
)
