"""The vocabulary exchange modules use to state how their exchange differs.

An exchange module builds one `ExchangeSpec`: its routes (pure handlers `Call -> Reply`), its
rate limits, its error answers, its instrument list and the field renames of the "drift" fault.
`server.py` turns specs into an aiohttp app; nothing in a spec touches aiohttp.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

Json = Any


@dataclass(frozen=True)
class Reply:
    """An answer before serialisation: JSON-able `body`, or text when `content_type` says so."""

    status: int
    body: Json
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class Refusal(Exception):
    """Raised by a handler to answer with an exchange error envelope instead of data."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@dataclass(frozen=True)
class Instrument:
    """One instrument as the exchange lists it; `coin` keys the synthetic series."""

    symbol: str
    coin: str
    base: str  # the exchange's base-asset name, e.g. "1000PEPE"
    listed_ms: int
    multiplier: int = 1  # coins per contract unit (1000 for 1000PEPEUSDT)
    quote: str = "USDT"
    contract_type: str = "PERPETUAL"  # exchange-native spelling
    status: str = "TRADING"  # exchange-native spelling
    delivery_ms: int | None = None
    has_data: bool = True  # served by the L/S and OI endpoints


@dataclass(frozen=True)
class Call:
    """What a handler sees of a request."""

    exchange: str
    path: str
    query: Mapping[str, str]
    now_ms: int
    instruments: Mapping[str, Instrument]


Handler = Callable[[Call], Reply]
Cost = Callable[[Mapping[str, str]], Mapping[str, int]]


@dataclass(frozen=True)
class Route:
    path: str  # without the /<exchange> prefix
    handler: Handler
    cost: Cost  # rate-limit bucket -> units this request uses


@dataclass(frozen=True)
class RateLimit:
    """`capacity` units per sliding `window_s` per IP (real values; the server scales windows)."""

    bucket: str
    capacity: int
    window_s: float
    label: str  # how the exchange words the window, e.g. "minute"


@dataclass(frozen=True)
class Breach:
    """Facts an answer builder may quote when refusing a request."""

    ip: str
    now_ms: int
    retry_after_s: int
    until_ms: int  # when the window frees up, or the ban ends
    limit: RateLimit | None = None


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    routes: tuple[Route, ...]
    limits: tuple[RateLimit, ...]
    # 429 answers tolerated inside a window before a breach bans the IP (0: ban at once).
    strikes_before_ban: int
    ban_s: float
    too_many: Callable[[Breach], Reply]  # rate limit hit (Binance 429)
    banned: Callable[[Breach], Reply]  # IP banned (Binance 418, Bybit 403)
    throttled: Callable[[int], Reply]  # the "429" fault: overload answer at now_ms
    busy: Callable[[int], Reply]  # the "busy" fault: the exchange's own "try again" answer
    instruments: Callable[[bool, int], tuple[Instrument, ...]]  # (listing_gaps, now_ms)
    drift: tuple[tuple[str, str], ...]  # "drift" fault: first data field found is renamed
    usage_headers: tuple[tuple[str, str], ...] = ()  # (header, bucket): current usage echoed


def per_request(bucket: str, units: int = 1) -> Cost:
    """A cost function charging a fixed number of units to one bucket."""
    charge = {bucket: units}
    return lambda _query: charge


# ---------------------------------------------------------------------------------------------
# Formatting shared by exchange modules


def fixed(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def trimmed(value: float, decimals: int) -> str:
    """Fixed decimals without trailing zeros ("0.49", "1"), as Bybit prints decimals."""
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def price_decimals(level: float) -> int:
    """Tick precision exchanges use for a price level: BTC 2, DOGE 6, 1000PEPE 7."""
    return max(2, 5 - math.floor(math.log10(level)))


def qty_decimals(level: float) -> int:
    """Quantity precision: fine for expensive coins, whole units for cheap ones."""
    return 3 if level >= 100 else 1 if level >= 1 else 0


# ---------------------------------------------------------------------------------------------
# Parameter parsing with an exchange's own error answers

T = TypeVar("T")


@dataclass(frozen=True)
class ParamErrors:
    """How an exchange refuses a bad parameter; each builder gets the parameter name."""

    missing: Callable[[Call, str], Refusal]
    invalid: Callable[[Call, str], Refusal]  # unknown enum value, limit out of range
    malformed: Callable[[Call, str], Refusal]  # not an integer


class Params:
    """Typed access to a request's query that refuses the way the exchange does."""

    def __init__(self, call: Call, errors: ParamErrors) -> None:
        self._call = call
        self._errors = errors

    def text(self, name: str) -> str:
        value = self._call.query.get(name)
        if not value:
            raise self._errors.missing(self._call, name)
        return value

    def choice(self, name: str, options: Mapping[str, T]) -> T:
        value = self.text(name)
        if value not in options:
            raise self._errors.invalid(self._call, name)
        return options[value]

    def integer(self, name: str) -> int | None:
        raw = self._call.query.get(name)
        if raw is None or raw == "":
            return None
        if not raw.lstrip("-").isdigit():
            raise self._errors.malformed(self._call, name)
        return int(raw)

    def limit(self, default: int, maximum: int) -> int:
        limit = self.integer("limit")
        if limit is None:
            return default
        if not 1 <= limit <= maximum:
            raise self._errors.invalid(self._call, "limit")
        return limit
