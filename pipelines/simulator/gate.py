"""Gate v4 futures, settle `usdt` (`api.gateio.ws/api/v4`): contract_stats, candlesticks, contracts.

Differences from other exchanges, as data below: one `contract_stats` row per bucket carries all
four L/S ratios and open interest, as JSON numbers with seconds timestamps, oldest first; ratios
only (plus the newer raw count fields, each ratio being its count quotient), top ratios 0 on thin
contracts; `from` + `limit` paging where `to` is ignored once `from` is set and a page holds one
(two, for a `from` off the grid) rows past `limit`; `limit` <= 2000; the newest bucket is rewritten
about 2.5 minutes after it closes; sizes in contracts of `quanto_multiplier` coins; non-2xx errors
`{"label","message"}`; 200 requests per 10 s per endpoint per IP, answered by HTTP 429
TOO_MANY_REQUESTS (no ban stage is documented).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pipelines.simulator import series
from pipelines.simulator.coins import coin, extras, universe
from pipelines.simulator.grid import DAY, HOUR, MINUTE, MONTHLY, WEEKLY, Grid, every
from pipelines.simulator.spec import (
    Breach,
    Call,
    ExchangeSpec,
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
    trimmed,
)

NAME = "gate"
STATS = "/futures/usdt/contract_stats"
CANDLES = "/futures/usdt/candlesticks"
CONTRACTS = "/futures/usdt/contracts"
STATS_INTERVALS: dict[str, Grid] = {
    "5m": every(5 * MINUTE),
    "15m": every(15 * MINUTE),
    "30m": every(30 * MINUTE),
    "1h": every(HOUR),
    "4h": every(4 * HOUR),
    "1d": every(DAY),
}
KLINE_INTERVALS: dict[str, Grid] = {
    "10s": every(10_000),
    "1m": every(MINUTE),
    "5m": every(5 * MINUTE),
    "15m": every(15 * MINUTE),
    "30m": every(30 * MINUTE),
    "1h": every(HOUR),
    "4h": every(4 * HOUR),
    "8h": every(8 * HOUR),
    "1d": every(DAY),
    "7d": every(7 * DAY),  # every 7 days since the epoch
    "1w": WEEKLY,  # natural weeks
    "30d": MONTHLY,  # natural months
}
DEFAULT_INTERVAL = "5m"
STATS_LIMIT = (30, 2000)  # (default, max)
KLINE_LIMIT = (100, 2000)
KLINE_DEPTH = 10_000  # points back from now that candlesticks serve
CONTRACTS_LIMIT = (100, 1000)
# Simulator choice: 60 days were seen, the real depth is not known.
STATS_HISTORY_MS = 180 * DAY
REWRITE_MS = 150_000  # the newest bucket is rewritten this long after it closes
TOP_TRADERS = 50  # the recorded 1.1739130434783 is 27/23
TOP_POSITION_SHARE = 0.3  # of open interest held by the top traders
CONTRACT_USD = 10.0  # a contract is worth about this much: quanto_multiplier = power of 10
SIGNIFICANT = 14  # digits Gate prints for its float fields

# Listing: coins under their own names (PEPE_USDT), one universe coin not listed, one thin
# contract whose top-trader ratios are 0, and one contract being delisted.
UNLISTED = frozenset({"ALGO"})
THIN = frozenset({"AXS"})
DELISTING = ("FTT",)
RATE_HEADERS = {"X-Gate-RateLimit-Limit": "200"}


def _error(label: str, message: str | None = None, status: int = 400) -> Refusal:
    body = {"label": label} if message is None else {"label": label, "message": message}
    return Refusal(Reply(status, body))


ERRORS = ParamErrors(
    missing=lambda _call, p: _error("MISSING_REQUIRED_PARAM", f"Missing required parameter: {p}"),
    invalid=lambda _call, p: _error("INVALID_PARAM_VALUE", f"Invalid value for parameter: {p}"),
    malformed=lambda _call, p: _error("INVALID_PARAM_VALUE", f"Invalid value for parameter: {p}"),
)


def _ok(body: object) -> Reply:
    return Reply(200, body, RATE_HEADERS)


def _instrument(params: Params, call: Call) -> Instrument:
    found = call.instruments.get(params.text("contract"))
    if found is None or not found.has_data:
        raise _error("CONTRACT_NOT_FOUND")  # no message [3p measured]
    return found


def _interval(call: Call, options: Mapping[str, Grid]) -> Grid:
    value = call.query.get("interval") or DEFAULT_INTERVAL
    if value not in options:
        raise ERRORS.invalid(call, "interval")
    return options[value]


def quanto(name: str) -> float:
    """Coins per contract: the power of ten that makes a contract worth about CONTRACT_USD."""
    return 10.0 ** round(math.log10(CONTRACT_USD / coin(name).price))


def _quanto_text(name: str) -> str:
    q = quanto(name)
    return str(int(q)) if q >= 1 else fixed(q, -round(math.log10(q)))


def _number(value: float, significant: int = SIGNIFICANT) -> float | int:
    """A float as Gate prints it: 14 significant digits, integral values without a fraction."""
    rounded = float(f"{value:.{significant}g}")
    return int(rounded) if rounded.is_integer() else rounded


def _quotient(up: int, down: int) -> float | int:
    return _number(up / down) if down > 0 else 0


# ---------------------------------------------------------------------------------------------
# contract_stats


def _users(name: str) -> int:
    """Accounts holding a position: more on busy coins."""
    return int(500 + 40_000 * math.sqrt(coin(name).daily_volume / 15e9))


def _liquidations(name: str, side: str, t: int, length: int, q: float, mark: float) -> list[float]:
    """(size in contracts, amount in coins, value in USD) liquidated in a bucket; mostly none."""
    s = series.seed("gate-liq", name, side, str(length))
    if series.unit(s, t) > 0.15:
        return [0, 0, 0]
    coins = series.unit(s, t + 1) * 2e-4 * coin(name).daily_volume / coin(name).price
    size = max(1, round(coins * length / DAY / q))
    return [size, _number(size * q), _number(size * q * mark)]


def _stats_row(inst: Instrument, t: int, length: int, now: int) -> dict[str, object]:
    name, q = inst.coin, quanto(inst.coin)
    span = length + REWRITE_MS  # provisional until the rewrite after the close

    def share(metric: str) -> float:
        return series.share_at(NAME, name, metric, t, span, now)

    users = _users(name)
    long_users = round(users * share("global_account"))
    top_long = round(TOP_TRADERS * share("top_account"))
    oi = round(series.open_interest_at(NAME, name, t, span, now) / q)
    top_size = round(oi * TOP_POSITION_SHARE)
    top_long_size = round(top_size * share("top_position"))
    buy, sell = series.taker_volumes(NAME, name, t, t + length, now)
    buy *= 1 + 0.05 * series.provisional(NAME, name, "taker_volume", t, span, now)
    long_taker, short_taker = round(buy / q), round(sell / q)
    level = coin(name).price
    mark = round(series.price(name, t, NAME), price_decimals(level))
    long_liq = _liquidations(name, "long", t, length, q, mark)
    short_liq = _liquidations(name, "short", t, length, q, mark)
    thin = name in THIN
    return {
        "time": t // 1000,
        "lsr_taker": _quotient(long_taker, short_taker),
        "lsr_account": _quotient(long_users, users - long_users),
        "long_liq_size": long_liq[0],
        "short_liq_size": short_liq[0],
        "open_interest": oi,
        "short_liq_usd": short_liq[2],
        "mark_price": _number(mark),
        "top_lsr_size": 0 if thin else _quotient(top_long_size, top_size - top_long_size),
        "short_liq_amount": short_liq[1],
        "long_liq_amount": long_liq[1],
        "open_interest_usd": _number(oi * q * mark),
        "top_lsr_account": 0 if thin else _quotient(top_long, TOP_TRADERS - top_long),
        "long_liq_usd": long_liq[2],
        # Newer responses add raw counts; each published ratio is their quotient.
        "long_users": long_users,
        "short_users": users - long_users,
        "long_taker_size": long_taker,
        "short_taker_size": short_taker,
        "top_long_size": 0 if thin else top_long_size,
        "top_short_size": 0 if thin else top_size - top_long_size,
    }


def _contract_stats(call: Call) -> Reply:
    params = Params(call, ERRORS)
    inst = _instrument(params, call)
    grid = _interval(call, STATS_INTERVALS)
    limit = params.limit(*STATS_LIMIT)
    start = params.integer("from")
    newest = grid.floor(call.now_ms)
    first = max(grid.ceil(inst.listed_ms), grid.ceil(call.now_ms - STATS_HISTORY_MS))
    if start is None:  # the latest rows, up to `to` when given
        to = params.integer("to")
        hi = newest if to is None else min(newest, grid.floor(to * 1000))
        lo = max(first, hi - (limit - 1) * grid.step)
    else:  # `to` is ignored; the bucket holding `from` and `limit` more after the next start
        lo = max(first, grid.floor(start * 1000))
        hi = min(newest, grid.ceil(start * 1000) + limit * grid.step)
    rows = [_stats_row(inst, t, grid.step, call.now_ms) for t in range(lo, hi + 1, grid.step)]
    return _ok(rows)


# ---------------------------------------------------------------------------------------------
# candlesticks


def _candle_row(inst: Instrument, grid: Grid, t: int, now: int) -> dict[str, object]:
    c = series.candle(NAME, inst.coin, t, grid.next(t), now)
    p = price_decimals(coin(inst.coin).price)
    return {
        "t": t // 1000,
        "v": round(c.volume / quanto(inst.coin)),
        "c": trimmed(c.close, p),
        "h": trimmed(c.high, p),
        "l": trimmed(c.low, p),
        "o": trimmed(c.open, p),
        "sum": trimmed(c.quote_volume, 4),
    }


def _back(grid: Grid, t: int, n: int) -> int:
    """The bucket start n buckets before t."""
    if grid.step:
        return t - n * grid.step
    for _ in range(n):
        t = grid.prev(t)
    return t


def _starts(grid: Grid, lo: int, hi: int, limit: int) -> list[int]:
    """Bucket starts in [lo, hi], at most `limit` + 1 of them (enough to tell "too many")."""
    out: list[int] = []
    t = grid.ceil(lo)
    while t <= hi and len(out) <= limit:
        out.append(t)
        t = grid.next(t)
    return out


def _candlesticks(call: Call) -> Reply:
    params = Params(call, ERRORS)
    inst = _instrument(params, call)
    grid = _interval(call, KLINE_INTERVALS)
    start, end = params.integer("from"), params.integer("to")
    newest = grid.floor(call.now_ms)
    if start is None and end is None:
        limit = params.limit(*KLINE_LIMIT)
        lo = max(inst.listed_ms, _back(grid, newest, limit - 1))
        starts = _starts(grid, lo, newest, limit)
        return _ok([_candle_row(inst, grid, t, call.now_ms) for t in starts])
    if call.query.get("limit"):  # "limit conflicts with from and to"
        raise ERRORS.invalid(call, "limit")
    hi = call.now_ms if end is None else end * 1000
    lo = _back(grid, grid.floor(hi), 100) if start is None else start * 1000
    if len(_starts(grid, lo, hi, KLINE_LIMIT[1])) > KLINE_LIMIT[1]:
        raise _error("INVALID_PARAM_VALUE", f"Maximum of {KLINE_LIMIT[1]} points are allowed")
    if grid.ceil(lo) < _back(grid, newest, KLINE_DEPTH - 1):
        raise _error(
            "INVALID_PARAM_VALUE",
            f"Candlestick too long ago. Maximum {KLINE_DEPTH} points recently are allowed",
        )
    starts = _starts(grid, max(lo, inst.listed_ms), min(hi, newest), KLINE_LIMIT[1])
    return _ok([_candle_row(inst, grid, t, call.now_ms) for t in starts])


# ---------------------------------------------------------------------------------------------
# contracts


def _contract_entry(inst: Instrument, now_ms: int) -> dict[str, object]:
    name = inst.coin
    p = price_decimals(coin(name).price)
    last = series.price(name, now_ms, NAME)
    live = inst.status == "trading"
    funding_next = (now_ms // (8 * HOUR) + 1) * 8 * HOUR // 1000
    return {
        "name": inst.symbol,
        "type": "direct",
        "quanto_multiplier": _quanto_text(name),
        "ref_discount_rate": "0",
        "order_price_deviate": "0.5",
        "maintenance_rate": "0.005",
        "mark_type": "index",
        "last_price": fixed(last, p),
        "mark_price": fixed(last * 0.9999, p),
        "index_price": fixed(last * 0.9998, p),
        "funding_rate_indicative": "0.0001",
        "mark_price_round": fixed(10.0**-p, p),
        "funding_offset": 0,
        "in_delisting": not live,
        "risk_limit_base": "1000000",
        "interest_rate": "0.0003",
        "order_price_round": fixed(10.0**-p, p),
        "order_size_min": 1,
        "ref_rebate_rate": "0.2",
        "funding_interval": 28800,
        "risk_limit_step": "1000000",
        "leverage_min": "1",
        "leverage_max": "100",
        "risk_limit_max": "8000000",
        "maker_fee_rate": "-0.00025",
        "taker_fee_rate": "0.00075",
        "funding_rate": "0.0001",
        "order_size_max": 1000000,
        "funding_next_apply": funding_next,
        "short_users": _users(name) // 2,
        "config_change_time": inst.listed_ms // 1000,
        "trade_size": round(coin(name).daily_volume * 400 / coin(name).price / quanto(name)),
        "position_size": round(series.open_interest(NAME, name, now_ms) / quanto(name)),
        "long_users": _users(name) - _users(name) // 2,
        "funding_impact_value": "60000",
        "orders_limit": 50,
        "trade_id": 10_000_000 + now_ms // 60_000 % 1_000_000,
        "orderbook_id": 2_000_000_000 + now_ms // 1000 % 100_000_000,
        "enable_bonus": True,
        "enable_credit": True,
        "create_time": inst.listed_ms // 1000,
        "funding_cap_ratio": "0.75",
        "status": inst.status,
        "launch_time": inst.listed_ms // 1000,
        "delisting_time": 0 if live else now_ms // 1000 + 3 * DAY // 1000,
        "delisted_time": 0,
    }


def _contracts(call: Call) -> Reply:
    params = Params(call, ERRORS)
    limit = params.limit(*CONTRACTS_LIMIT)
    offset = params.integer("offset") or 0
    if offset < 0:
        raise ERRORS.invalid(call, "offset")
    listed = list(call.instruments.values())[offset : offset + limit]
    return _ok([_contract_entry(inst, call.now_ms) for inst in listed])


# ---------------------------------------------------------------------------------------------
# Listing


def instruments(listing_gaps: bool, now_ms: int) -> tuple[Instrument, ...]:
    """By name, like the contract list; data endpoints serve every listed contract."""
    names = [c for c in universe() if not (listing_gaps and c in UNLISTED)] + list(extras())
    listed = [
        Instrument(
            symbol=f"{name}_USDT",
            coin=name,
            base=name,
            listed_ms=coin(name).listed_ms,
            contract_type="direct",
            status="delisting" if name in DELISTING else "trading",
        )
        for name in (*names, *DELISTING)
    ]
    return tuple(sorted(listed, key=lambda inst: inst.symbol))


# ---------------------------------------------------------------------------------------------
# Rate-limit answers


def _too_many(breach: Breach) -> Reply:
    headers = {
        **RATE_HEADERS,
        "X-Gate-RateLimit-Requests-Remain": "0",
        "X-Gate-RateLimit-Reset-Timestamp": str(breach.until_ms),
        # Not sent by Gate; the simulator's windows are scaled, which a client cannot know.
        "Retry-After": str(breach.retry_after_s),
    }
    body = {"label": "TOO_MANY_REQUESTS", "message": "Request Rate limit Exceeded"}
    return Reply(429, body, headers)


def _busy(_now_ms: int) -> Reply:
    return Reply(500, {"label": "SERVER_ERROR", "message": "Internal server error"})


def _throttled(now_ms: int) -> Reply:
    return _too_many(Breach(ip="", now_ms=now_ms, retry_after_s=1, until_ms=now_ms + 1000))


SPEC = ExchangeSpec(
    name=NAME,
    routes=(
        Route(STATS, _contract_stats, per_request(STATS)),
        Route(CANDLES, _candlesticks, per_request(CANDLES)),
        Route(CONTRACTS, _contracts, per_request(CONTRACTS)),
    ),
    limits=tuple(RateLimit(path, 200, 10, "10 seconds") for path in (STATS, CANDLES, CONTRACTS)),
    strikes_before_ban=1_000_000_000,  # no ban stage documented: 429 every time
    ban_s=10,
    too_many=_too_many,
    banned=_too_many,
    throttled=_throttled,
    busy=_busy,
    instruments=instruments,
    drift=(("lsr_account", "lsr_acct"), ("sum", "quote_volume")),
)
