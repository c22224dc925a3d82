"""What every exchange connector shares: the normalised frame, time handling, the interface.

Each exchange module (binance.py, bybit.py, ...) states its differences as data (endpoints,
period names, field names, limits) and implements the `Connector` protocol below; the ingestion
code in `pipelines.ingest` only ever talks to that protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pipelines.config import PERIOD_MS
from pipelines.errors import PayloadError
from pipelines.http import ApiError, ErrorKind, ExchangeProfile, HttpClient, RateLimit
from pipelines.universe import Listing, split_multiplier

LS_COLUMNS = [
    "exchange",
    "coin",
    "instrument",
    "metric",
    "period",
    "ts",
    "long_share",
    "short_share",
    "ratio",
    "source_ratio",
    "source_ts",
    "locked_share",
    "derived_from",
]
KLINE_COLUMNS = [
    "exchange",
    "coin",
    "instrument",
    "period",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "taker_buy_volume",
]
OI_COLUMNS = [
    "exchange",
    "coin",
    "instrument",
    "period",
    "ts",
    "open_interest",
    "open_interest_value",
]
# Where an exchange has no native series for a period, a connector derives it from a finer one
# and says so in this column (e.g. HTX's UTC day from its 4-hour series); NULL when native.
DERIVED_FROM = "derived_from"

# Where a row came from: the exchange's REST API, or an archive of files (Binance Vision).
SOURCE, REST = "source", "rest"


def with_source(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that do not say where they came from came from the exchange's REST API."""
    if SOURCE not in frame:
        return frame.assign(**{SOURCE: REST})
    return frame.assign(**{SOURCE: frame[SOURCE].where(frame[SOURCE].notna(), REST)})


# Millisecond epochs have 13 digits until the year 2286; second epochs have 10.
_MS_THRESHOLD = 100_000_000_000


@dataclass(frozen=True)
class Window:
    """A half-open UTC time window [start, end) in epoch milliseconds."""

    start_ms: int
    end_ms: int

    @classmethod
    def of(cls, start: datetime, end: datetime) -> Window:
        return cls(to_epoch_ms(start), to_epoch_ms(end))

    def contains(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms < self.end_ms


def reachable(window: Window, reach: timedelta | None, now: datetime, period: str) -> Window | None:
    """The part of the window the exchange still serves; None when it serves none of it.

    The cut is one period inside the limit, so a request sent a moment later is not refused.
    """
    if reach is None:
        return window
    step = PERIOD_MS[period]
    oldest = int((now - reach).timestamp() * 1000)
    oldest = oldest - oldest % step + step
    if window.end_ms <= oldest:
        return None
    return Window(max(window.start_ms, oldest), window.end_ms)


def to_epoch_ms(moment: datetime) -> int:
    """Naive datetimes are taken as UTC (the warehouse's convention), aware ones converted."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def epoch_ms(value: Any) -> int:
    """An exchange timestamp (int, float or string; seconds or ms) as epoch milliseconds.

    The unit is read from the magnitude, never assumed: Gate sends seconds and Bybit has been
    seen to send seconds on some rows of endpoints that otherwise send milliseconds.
    """
    number = int(float(value))
    return number * 1000 if abs(number) < _MS_THRESHOLD else number


def coin_of(base_asset: str) -> str:
    return split_multiplier(base_asset)[0]


def to_float(value: Any) -> float:
    """A published number (JSON number or string) as float; blanks become NaN."""
    if value is None or value == "":
        return float("nan")
    return float(value)


def ls_frame(
    exchange: str,
    *,
    coin: str,
    instrument: str,
    metric: str,
    period: str,
    source_ts: Iterable[int],
    long_share: Iterable[float],
    short_share: Iterable[float],
    source_ratio: Iterable[float] | None = None,
    locked_share: Iterable[float] | None = None,
    derived_from: str | None = None,
) -> pd.DataFrame:
    """Build the normalised L/S frame, ascending by time, ratio recomputed from the shares.

    `ratio` is NULL (never 0 or inf) where a share is missing or the short share is not positive.
    `locked_share` is for exchanges that publish a third group of accounts (HTX: locked).
    """
    stamps = np.asarray(list(source_ts), dtype="int64")
    order = np.argsort(stamps, kind="stable")  # ascending, whatever the wire order
    n = len(stamps)

    def column(values: Iterable[float] | None) -> np.ndarray:
        if values is None:
            return np.full(n, np.nan)
        return np.asarray(list(values), dtype="float64")[order]

    longs, shorts = column(long_share), column(short_share)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((shorts > 0) & (longs >= 0), longs / shorts, np.nan)
    # Built in one constructor call: adding columns one by one costs more than the parse.
    return pd.DataFrame(
        {
            "exchange": exchange,
            "coin": coin,
            "instrument": instrument,
            "metric": metric,
            "period": period,
            "ts": pd.to_datetime(stamps[order], unit="ms"),
            "long_share": longs,
            "short_share": shorts,
            "ratio": ratio,
            "source_ratio": column(source_ratio),
            "source_ts": stamps[order],
            "locked_share": column(locked_share),
            "derived_from": pd.Series([derived_from] * n, dtype="object"),
        },
        index=pd.RangeIndex(n),
    )


def kline_frame(
    exchange: str,
    *,
    coin: str,
    instrument: str,
    period: str,
    values: Mapping[str, Sequence[float]],
) -> pd.DataFrame:
    """Candles from per-field values (`ts` in epoch ms), ascending by time.

    Fields an exchange does not publish (often `taker_buy_volume`) are left out of `values`
    and come out NULL.
    """
    stamps = np.asarray(values["ts"], dtype="int64")
    order = np.argsort(stamps, kind="stable")
    n = len(stamps)

    def column(name: str) -> np.ndarray:
        if name not in values:
            return np.full(n, np.nan)
        return np.asarray(values[name], dtype="float64")[order]

    return pd.DataFrame(
        {
            "exchange": exchange,
            "coin": coin,
            "instrument": instrument,
            "period": period,
            "ts": pd.to_datetime(stamps[order], unit="ms"),
            **{name: column(name) for name in KLINE_COLUMNS[5:]},
        },
        index=pd.RangeIndex(n),
    )


def kline_arrays(
    rows: list[Any],
    positions: Mapping[str, int],
    exchange: str,
    endpoint: str,
    symbol: str,
) -> dict[str, list[float]]:
    """Read candles sent as arrays (`[ts, open, high, ...]`), one field per `positions` entry.

    A row too short for the positions asked for is an unknown shape (PayloadError).
    """
    width = max(positions.values()) + 1
    for row in rows:
        if not isinstance(row, list) or len(row) < width:
            raise PayloadError(
                exchange,
                endpoint,
                f"kline rows must be arrays of at least {width} values, got {str(row)[:120]}",
                symbol=symbol,
            )
    values: dict[str, list[float]] = {"ts": [float(epoch_ms(r[positions["ts"]])) for r in rows]}
    for name, index in positions.items():
        if name != "ts":
            values[name] = [to_float(r[index]) for r in rows]
    return values


def empty_ls_frame() -> pd.DataFrame:
    return ls_frame(
        "",
        coin="",
        instrument="",
        metric="",
        period="1h",
        source_ts=[],
        long_share=[],
        short_share=[],
    )


def rows_of(
    payload: Any, path: tuple[str, ...], exchange: str, endpoint: str, symbol: str | None
) -> list[Any]:
    """Walk `path` into a decoded body and return the list there, or raise a clear PayloadError."""
    node = payload
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise PayloadError(exchange, endpoint, f"expected key {key!r} in body", symbol=symbol)
        node = node[key]
    if not isinstance(node, list):
        shape = type(node).__name__
        raise PayloadError(
            exchange, endpoint, f"expected a list of rows, got {shape}", symbol=symbol
        )
    return node


def pick(row: Any, keys: tuple[str, ...], exchange: str, endpoint: str, symbol: str) -> Any:
    """The first of `keys` present in a row; a row that has none of them is an unknown shape."""
    if isinstance(row, Mapping):
        for key in keys:
            if key in row:
                return row[key]
    raise PayloadError(
        exchange, endpoint, f"row lacks field {' / '.join(keys)}: {str(row)[:120]}", symbol=symbol
    )


def keep_inside(frame: pd.DataFrame, window: Window) -> tuple[pd.DataFrame, int]:
    """Rows whose `ts` lies in the window, and how many were outside it.

    Binance has answered requests for a window it no longer serves with its latest rows: those
    are real observations, but not of the window asked for, and must not be stored as if they were.
    """
    inside = frame["ts"].between(
        pd.Timestamp(window.start_ms, unit="ms"), pd.Timestamp(window.end_ms - 1, unit="ms")
    )
    return frame[inside], int((~inside).sum())


@dataclass(frozen=True)
class ErrorEnvelope:
    """One way an exchange says, inside a body, that a request failed: where the code and the
    message are, which codes mean success, and what the known codes mean. Data, not code (as
    ccxt keeps them in `describe()['exceptions']`); `Venue` reads every exchange's bodies with
    the same few lines."""

    code: tuple[str, ...]  # the code's field, under any of these spellings (the first present)
    message: tuple[str, ...] = ()  # the fields that say what went wrong, joined by a space
    success: frozenset[str] = frozenset()  # codes of a good answer; any other code is an error
    marker: tuple[str, str] | None = None  # (field, value) marking an error body, if not the code
    kinds: Mapping[str, ErrorKind] = field(default_factory=dict)  # code -> what to do; else error
    # (code or None for any, words in the message, kind): where one code means several things.
    kinds_by_message: tuple[tuple[str | None, str, ErrorKind], ...] = ()

    def read(self, body: Any) -> ApiError | None:
        """The error this envelope finds in a decoded body; None when the body is data."""
        if not isinstance(body, Mapping):
            return None
        if self.marker is not None and body.get(self.marker[0]) != self.marker[1]:
            return None
        present = [body[name] for name in self.code if name in body]
        if self.marker is None and not present:
            return None
        code = str(present[0]) if present and present[0] is not None else None
        if code is not None and code in self.success:
            return None
        message = " ".join(str(body[f]) for f in self.message if body.get(f) not in (None, ""))
        return ApiError(code, message or code or "", self._kind(code, message))

    def _kind(self, code: str | None, message: str) -> ErrorKind:
        for only, words, kind in self.kinds_by_message:
            if (only is None or only == code) and words.lower() in message.lower():
                return kind
        return self.kinds.get(code or "", "error")


@dataclass(frozen=True)
class Venue:
    """How one exchange is reached and how it answers, as data: each connector states one, and
    its `profile`, `coin_from_instrument` and error handling are these methods."""

    name: str
    default_base_url: str  # the exchange's own host; a client may be sent elsewhere
    limits: Mapping[str, RateLimit]
    errors: tuple[ErrorEnvelope, ...]  # tried in order; the first that finds an error wins
    instrument_suffix: str  # after the base asset: BTC + "USDT", BTC + "-USDT-SWAP"
    ban_statuses: frozenset[int] = frozenset()  # HTTP statuses that mean "this IP is banned"
    concurrency: int = 16

    def profile(self) -> ExchangeProfile:
        return ExchangeProfile(
            name=self.name,
            base_url=self.default_base_url,
            limits=self.limits,
            error_of=self.error_of,
            ban_statuses=self.ban_statuses,
            concurrency=self.concurrency,
        )

    def error_of(self, status: int, body: Any) -> ApiError | None:
        found = self._found(body)
        return found[1] if found else None

    def coin_from_instrument(self, instrument: str) -> str:
        return coin_of(instrument.removesuffix(self.instrument_suffix))

    def reject_error(self, payload: Any, endpoint: str, symbol: str | None) -> None:
        """The PayloadError a parser owes for an error body; nothing when the body is data."""
        found = self._found(payload)
        if found is not None:
            envelope, error = found
            detail = f"error {envelope.code[0]}={error.code}: {error.message}"
            raise PayloadError(self.name, endpoint, detail, symbol=symbol)

    def rows(
        self, payload: Any, path: tuple[str, ...], endpoint: str, symbol: str | None
    ) -> list[Any]:
        """The list of rows at `path` in a good answer (`()`: the body is the list); an error
        body or any other shape is a PayloadError that says which."""
        self.reject_error(payload, endpoint, symbol)
        return rows_of(payload, path, self.name, endpoint, symbol)

    def _found(self, body: Any) -> tuple[ErrorEnvelope, ApiError] | None:
        for envelope in self.errors:
            error = envelope.read(body)
            if error is not None:
                return envelope, error
        return None


class Connector(Protocol):
    """The interface every exchange module implements (as module-level names)."""

    NAME: str
    METRICS: tuple[str, ...]
    TAKER_BUY_CANDLES: bool  # candles carry taker buy volume (else: flow from finer candles)

    def profile(self) -> ExchangeProfile: ...

    def reach(self, dataset: str, period: str) -> timedelta | None:
        """How far back from now a dataset (a metric kind, klines, open_interest) can be fetched;
        None when there is no limit worth knowing. Older windows are reported unavailable
        without spending requests on them."""
        ...

    async def fetch_instruments(self, client: HttpClient) -> list[Listing]: ...

    async def fetch_ls(
        self, client: HttpClient, instrument: str, metric: str, period: str, window: Window
    ) -> list[Any]: ...

    def parse(self, metric: str, payload: Any, *, instrument: str, period: str) -> pd.DataFrame: ...

    async def fetch_klines(
        self, client: HttpClient, instrument: str, period: str, window: Window
    ) -> list[Any]: ...

    def parse_klines(self, payload: Any, *, instrument: str, period: str) -> pd.DataFrame: ...

    async def fetch_open_interest(
        self, client: HttpClient, instrument: str, period: str, window: Window
    ) -> list[Any]: ...

    def parse_open_interest(
        self, payload: Any, *, instrument: str, period: str
    ) -> pd.DataFrame: ...
