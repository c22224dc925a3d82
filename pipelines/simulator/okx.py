"""OKX v5 (`www.okx.com`): rubik trading statistics, open interest, candles, swap instruments.

Differences from other exchanges, as data below: `{"code","msg","data"}` envelopes whose `code`
is a string ("0" = success), every value a string (timestamps too), rows as arrays, newest first;
L/S endpoints publish only a ratio at full float precision; taker rows are `[ts, sellVol, buyVol]`
(sell first) with float noise; `begin`/`end` (rubik) and `after`/`before` (candles) are exclusive;
`limit` is silently capped (100 rubik / history-candles, 300 candles); only the latest 1,440 rows
per period (rubik, candles); plain `6H`..`1W` bars are UTC+8, `...utc` bars UTC; rows are stamped
at the period start and published a few minutes late, the newest one provisional; 5 requests / 2 s
per IP *and instrument* on each rubik endpoint (10 on open interest), answered over the limit with
HTTP 429 `50011` and no ban stage; unknown instruments are HTTP 200 `51001`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

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
    window,
)
from pipelines.simulator.spec import (
    Breach,
    Call,
    Cost,
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
    trimmed,
)

NAME = "okx"
_UTC8 = -8 * HOUR  # plain 6H/12H/1D/1W bars open at 00:00 Asia/Shanghai (16:00 UTC)
PERIODS: dict[str, Grid] = {
    "5m": every(5 * MINUTE),
    "15m": every(15 * MINUTE),
    "30m": every(30 * MINUTE),
    "1H": every(HOUR),
    "2H": every(2 * HOUR),
    "4H": every(4 * HOUR),
    "6H": Grid(6 * HOUR, _UTC8),
    "12H": Grid(12 * HOUR, _UTC8),
    "1D": Grid(DAY, _UTC8),
    "1W": Grid(WEEK, WEEKLY.offset + _UTC8),
    "6Hutc": every(6 * HOUR),
    "12Hutc": every(12 * HOUR),
    "1Dutc": every(DAY),
    "1Wutc": WEEKLY,
}
BARS: dict[str, Grid] = {
    "1m": every(MINUTE),
    "3m": every(3 * MINUTE),
    **PERIODS,
    "1Mutc": MONTHLY,
}
RETAINED = 1440  # "latest 1,440 data entries" (rubik, candles)
RUBIK_LIMIT = (100, 100)  # (default, max); more is silently capped
CANDLE_LIMIT = (100, 300)
HISTORY_LIMIT = (100, 100)
PUBLISH_LAG = 5 * MINUTE  # a rubik row appears this long after its period starts
# Earliest rows [doc]: 1D from 2024-01-01, other periods early February 2024; top traders later.
SINCE_DAILY = ms_of("2024-01-01")
SINCE_INTRADAY = ms_of("2024-02-01")
SINCE_TOP_TRADER = ms_of("2024-03-22")
USDT_SWAPS_SINCE = ms_of("2020-01-01")

# Listing: OKX names coins plainly (PEPE-USDT-SWAP; the contract size ctVal differs instead),
# lacks one universe coin and has another suspended, so the pipeline's intersection and state
# filter are exercised. Entries to filter out: inverse and USDC swaps, a pre-open listing.
UNLISTED = frozenset({"TAO"})
SUSPENDED = frozenset({"GALA"})
INVERSE = ("BTC", "ETH", "SOL")
USDC_SWAPS = ("BTC", "ETH")
PREOPEN = "LINEA"
CT_VAL = {"BTC": 0.01, "ETH": 0.1, "BNB": 0.01, "PEPE": 1e7, "SHIB": 1e6, "BONK": 1e5}

UNKNOWN_INSTRUMENT = "Instrument ID, Instrument ID code, or Spread ID doesn't exist."


def ct_val(name: str) -> float:
    """Coins per contract: a round number worth tens to hundreds of dollars."""
    return CT_VAL.get(name, 10.0 ** math.floor(math.log10(1000 / coin(name).price)))


def _number(value: float) -> str:
    return f"{value:f}".rstrip("0").rstrip(".")


def _noisy(value: float, decimals: int = 2) -> str:
    """A sum of doubles as OKX prints it: rounded, then 17 significant digits ("...99999996")."""
    return f"{round(value, decimals):.17g}"


# ---------------------------------------------------------------------------------------------
# Envelopes and parameter errors


def _ok(data: object) -> Reply:
    return Reply(200, {"code": "0", "msg": "", "data": data})


def _error(code: str, msg: str, status: int = 400) -> Refusal:
    return Refusal(Reply(status, {"code": code, "data": [], "msg": msg}))


ERRORS = ParamErrors(
    missing=lambda _call, p: _error("50014", f"Parameter {p} can not be empty."),
    invalid=lambda _call, p: _error("51000", f"Parameter {p} error"),
    malformed=lambda _call, p: _error("51000", f"Parameter {p} error"),
)


def _instrument(params: Params, call: Call) -> Instrument:
    found = call.instruments.get(params.text("instId"))
    if found is None or not found.has_data:
        raise _error("51001", UNKNOWN_INSTRUMENT, 200)
    return found


def _grid(call: Call, name: str, options: Mapping[str, Grid], default: str) -> Grid:
    value = call.query.get(name) or default
    if value not in options:
        raise _error("51000", f"Parameter {name} error")
    return options[value]


def _limit(params: Params, default: int, maximum: int) -> int:
    """OKX caps an oversized limit silently; zero, negative or non-numeric is an error."""
    limit = params.integer("limit")
    if limit is None:
        return default
    if limit < 1:
        raise _error("51000", "Parameter limit error")
    return min(limit, maximum)


def _exclusive(params: Params, low: str, high: str) -> tuple[int | None, int | None]:
    """Two exclusive bounds as an inclusive (start, end)."""
    lo, hi = params.integer(low), params.integer(high)
    return (None if lo is None else lo + 1), (None if hi is None else hi - 1)


def _oldest_kept(grid: Grid, newest: int) -> int:
    return newest - (RETAINED - 1) * grid.step if grid.step else 0


# ---------------------------------------------------------------------------------------------
# Rubik trading statistics and open interest: [ts, ...] strings, newest first

RowFn = Callable[[Instrument, int, int, int, str], list[str]]  # (inst, bucket, length, now, unit)


def _ratio_row(metric: str) -> RowFn:
    def row(inst: Instrument, t: int, length: int, now: int, _unit: str) -> list[str]:
        long = series.share_at(NAME, inst.coin, metric, t, length, now)
        return [str(t), repr(long / (1 - long))]  # full float precision

    return row


def _in_unit(inst: Instrument, amount: float, t: int, unit: str) -> float:
    """Coins as unit 0 (crypto), 1 (contracts) or 2 (USDT)."""
    if unit == "0":
        return amount
    if unit == "2":
        return amount * series.price(inst.coin, t, NAME)
    return amount / ct_val(inst.coin)


def _taker_row(inst: Instrument, t: int, length: int, now: int, unit: str) -> list[str]:
    buy, sell = series.taker_volumes(NAME, inst.coin, t, t + length, now)
    if now < t + length // 4:  # the newest bucket fills one side first [3p]
        buy = 0.0
    return [str(t), _noisy(_in_unit(inst, sell, t, unit)), _noisy(_in_unit(inst, buy, t, unit))]


def _oi_row(inst: Instrument, t: int, length: int, now: int, _unit: str) -> list[str]:
    amount = series.open_interest_at(NAME, inst.coin, t, length, now)
    return [
        str(t),
        _noisy(amount / ct_val(inst.coin)),
        _noisy(amount, 4),
        _noisy(amount * series.price(inst.coin, t, NAME)),
    ]


@dataclass(frozen=True)
class Stat:
    path: str
    bucket: str  # rate-limit bucket, counted per instrument
    row: RowFn
    top_trader: bool = False
    unit: bool = False  # takes `unit`
    capacity: int = 5  # requests per 2 s per IP + instrument

    def since(self, grid: Grid) -> int:
        if self.top_trader:
            return SINCE_TOP_TRADER
        return SINCE_DAILY if grid.step >= DAY else SINCE_INTRADAY


RUBIK = "/api/v5/rubik/stat"
STATS: tuple[Stat, ...] = (
    Stat(
        f"{RUBIK}/contracts/long-short-account-ratio-contract",
        "rubik_account",
        _ratio_row("global_account"),
    ),
    Stat(
        f"{RUBIK}/contracts/long-short-account-ratio-contract-top-trader",
        "rubik_top_account",
        _ratio_row("top_account"),
        top_trader=True,
    ),
    Stat(
        f"{RUBIK}/contracts/long-short-position-ratio-contract-top-trader",
        "rubik_top_position",
        _ratio_row("top_position"),
        top_trader=True,
    ),
    Stat(f"{RUBIK}/taker-volume-contract", "rubik_taker", _taker_row, unit=True),
    Stat(f"{RUBIK}/contracts/open-interest-history", "rubik_oi", _oi_row, capacity=10),
)


def _stat_handler(stat: Stat) -> Handler:
    def handle(call: Call) -> Reply:
        params = Params(call, ERRORS)
        inst = _instrument(params, call)
        grid = _grid(call, "period", PERIODS, "5m")
        unit = call.query.get("unit") or "1"
        if stat.unit and unit not in ("0", "1", "2"):
            raise _error("51000", "Parameter unit error")
        limit = _limit(params, *RUBIK_LIMIT)
        start, end = _exclusive(params, "begin", "end")
        newest = grid.floor(call.now_ms - PUBLISH_LAG)
        first = max(_oldest_kept(grid, newest), stat.since(grid), inst.listed_ms)
        buckets = window(
            grid, first=first, last=newest, start=start, end=end, limit=limit, oldest_first=False
        )
        rows = [stat.row(inst, t, grid.length(t), call.now_ms, unit) for t in reversed(buckets)]
        return _ok(rows)

    return handle


# ---------------------------------------------------------------------------------------------
# Candles: the latest 1,440 (300 a page) and history-candles (from listing, 100 a page)


def _candles(history: bool) -> Handler:
    def handle(call: Call) -> Reply:
        params = Params(call, ERRORS)
        inst = _instrument(params, call)
        grid = _grid(call, "bar", BARS, "1m")
        limit = _limit(params, *(HISTORY_LIMIT if history else CANDLE_LIMIT))
        end_excl, start_excl = params.integer("after"), params.integer("before")
        newest = grid.floor(call.now_ms)
        first = inst.listed_ms if history else max(_oldest_kept(grid, newest), inst.listed_ms)
        buckets = window(
            grid,
            first=first,
            last=newest,
            start=None if start_excl is None else start_excl + 1,
            end=None if end_excl is None else end_excl - 1,
            limit=limit,
            oldest_first=False,
        )
        p = price_decimals(coin(inst.coin).price)
        size = ct_val(inst.coin)
        rows = []
        for t in reversed(buckets):
            close = grid.next(t)
            c = series.candle(NAME, inst.coin, t, close, call.now_ms)
            rows.append(
                [
                    str(t),
                    fixed(c.open, p),
                    fixed(c.high, p),
                    fixed(c.low, p),
                    fixed(c.close, p),
                    trimmed(c.volume / size, 2),  # contracts
                    trimmed(c.volume, 6),  # coins
                    trimmed(c.quote_volume, 4),
                    "1" if close <= call.now_ms else "0",  # confirm: "0" = still open
                ]
            )
        return _ok(rows)

    return handle


# ---------------------------------------------------------------------------------------------
# /api/v5/public/instruments

INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")


def _instrument_entry(inst: Instrument) -> dict[str, str]:
    linear = inst.contract_type == "linear"
    level = coin(inst.coin).price
    p = price_decimals(level)
    family = inst.symbol.removesuffix("-SWAP")
    return {
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": "",
        "category": "1",
        "ctMult": "1",
        "ctType": inst.contract_type,
        "ctVal": _number(ct_val(inst.coin)) if linear else "100",
        "ctValCcy": inst.base,
        "expTime": "",
        "instFamily": family,
        "instId": inst.symbol,
        "instType": "SWAP",
        "lever": "100" if inst.coin in ("BTC", "ETH") else "50",
        "listTime": str(inst.listed_ms),
        "lotSz": "0.01" if linear else "1",
        "maxIcebergSz": "100000000.0000000000000000",
        "maxLmtAmt": "20000000",
        "maxLmtSz": "100000000",
        "maxMktAmt": "",
        "maxMktSz": "12000",
        "maxStopSz": "12000",
        "maxTriggerSz": "100000000.0000000000000000",
        "maxTwapSz": "100000000.0000000000000000",
        "minSz": "0.01" if linear else "1",
        "optType": "",
        "quoteCcy": "",
        "ruleType": "normal",
        "settleCcy": inst.quote,
        "state": inst.status,
        "stk": "",
        "tickSz": fixed(10.0**-p, p),
        "uly": family,
    }


def _instruments(call: Call) -> Reply:
    params = Params(call, ERRORS)
    if params.text("instType") not in INST_TYPES:
        raise _error("51000", "Parameter instType error")
    if call.query["instType"] != "SWAP":  # only swaps are simulated
        return _ok([])
    listed = list(call.instruments.values())
    if inst_id := call.query.get("instId"):
        listed = [i for i in listed if i.symbol == inst_id]
        if not listed:
            raise _error("51001", UNKNOWN_INSTRUMENT, 200)
    if family := call.query.get("instFamily") or call.query.get("uly"):
        listed = [i for i in listed if i.symbol.removesuffix("-SWAP") == family]
    return _ok([_instrument_entry(i) for i in listed])


# ---------------------------------------------------------------------------------------------
# Listing


def _swap(name: str, *, quote: str = "USDT", status: str = "live") -> Instrument:
    lag_days = int(60 * series.unit(series.seed("okx-listing", name), 0))
    return Instrument(
        symbol=f"{name}-{quote}-SWAP",
        coin=name,
        base=name,
        listed_ms=max(coin(name).listed_ms + lag_days * DAY, USDT_SWAPS_SINCE),
        quote=quote,
        contract_type="linear",
        status=status,
    )


def instruments(listing_gaps: bool, now_ms: int) -> tuple[Instrument, ...]:
    """Swaps in listing order, like the real list."""
    names = [c for c in universe() if not (listing_gaps and c in UNLISTED)] + list(extras())
    listed = [
        _swap(name, status="suspend" if listing_gaps and name in SUSPENDED else "live")
        for name in names
    ]
    listed += [_swap(name, quote="USDC") for name in USDC_SWAPS]
    listed += [
        Instrument(
            symbol=f"{name}-USD-SWAP",
            coin=name,
            base="USD",
            listed_ms=USDT_SWAPS_SINCE - 30 * DAY,
            quote=name,
            contract_type="inverse",
            status="live",
        )
        for name in INVERSE
    ]
    listed.append(
        Instrument(
            symbol=f"{PREOPEN}-USDT-SWAP",
            coin=PREOPEN,
            base=PREOPEN,
            listed_ms=now_ms + 3 * DAY,
            contract_type="linear",
            status="preopen",
        )
    )
    return tuple(sorted(listed, key=lambda inst: (inst.listed_ms, inst.symbol)))


# ---------------------------------------------------------------------------------------------
# Rate limits: rubik buckets are per IP + instrument, declared for every instrument listed


def per_instrument(bucket: str) -> Cost:
    return lambda query: {f"{bucket}:{query.get('instId', '')}": 1}


@cache
def _instrument_ids() -> tuple[str, ...]:
    return tuple(inst.symbol for inst in instruments(False, 0))


def _limits() -> tuple[RateLimit, ...]:
    per_id = tuple(
        RateLimit(f"{stat.bucket}:{inst_id}", stat.capacity, 2, "2 seconds")
        for stat in STATS
        for inst_id in _instrument_ids()
    )
    return (
        *per_id,
        RateLimit("candles", 40, 2, "2 seconds"),
        RateLimit("history_candles", 20, 2, "2 seconds"),
        RateLimit("instruments", 20, 2, "2 seconds"),
    )


def _too_many(_breach: Breach) -> Reply:
    return Reply(429, {"msg": "Too Many Requests", "code": "50011"})


def _busy(_now_ms: int) -> Reply:
    return Reply(
        429, {"code": "50013", "data": [], "msg": "Systems are busy. Please try again later."}
    )


def _throttled(_now_ms: int) -> Reply:
    # The other form of 50011 [doc]: HTTP 200 with the error in the body.
    msg = "Rate limit reached. Please refer to API documentation and throttle requests accordingly."
    return Reply(200, {"code": "50011", "data": [], "msg": msg})


SPEC = ExchangeSpec(
    name=NAME,
    routes=(
        *(Route(s.path, _stat_handler(s), per_instrument(s.bucket)) for s in STATS),
        Route("/api/v5/market/candles", _candles(False), per_request("candles")),
        Route("/api/v5/market/history-candles", _candles(True), per_request("history_candles")),
        Route("/api/v5/public/instruments", _instruments, per_request("instruments")),
    ),
    limits=_limits(),
    strikes_before_ban=1_000_000,  # public endpoints: no documented ban stage, only 50011
    ban_s=0,
    too_many=_too_many,
    banned=_too_many,
    throttled=_throttled,
    busy=_busy,
    instruments=instruments,
    # The instrument list's listTime first (the connector does without it), else the envelope's
    # `data`: rubik, candle and OI rows are arrays with no field names to rename.
    drift=(("listTime", "listTimestamp"), ("data", "result")),
)
