"""What every exchange connector shares: the normalised frame, time handling, the interface.

Each exchange module (binance.py, bybit.py, ...) states its differences as data (endpoints,
period names, field names, limits) and implements the `Connector` protocol below; the ingestion
code in `pipelines.ingest` only ever talks to that protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pipelines.config import PERIOD_MS
from pipelines.errors import PayloadError
from pipelines.http import ApiError, ExchangeProfile, HttpClient
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


def reject_error_envelope(
    error: ApiError | None,
    exchange: str,
    endpoint: str,
    symbol: str | None,
    *,
    code_name: str = "code",
) -> None:
    """Raise the PayloadError a parser owes for an error envelope (read by the exchange's own
    `error_of`); return quietly when the body is data."""
    if error is not None:
        raise PayloadError(
            exchange, endpoint, f"error {code_name}={error.code}: {error.message}", symbol=symbol
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


class Connector(Protocol):
    """The interface every exchange module implements (as module-level names)."""

    NAME: str
    METRICS: tuple[str, ...]

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
