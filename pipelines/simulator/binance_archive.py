"""Binance Vision's daily `metrics` archive, served beside the Binance REST API.

`GET /data/futures/um/daily/metrics/{SYMBOL}/{SYMBOL}-metrics-{DAY}.zip` and its `.CHECKSUM`,
with what real files show (https://github.com/binance/binance-public-data and its issues):

- a 404 for days before the symbol's first archived day and for today (published T+1);
- labels in the convention of the file's day: up to 2026-06-24 a row labelled T holds the
  snapshot at T and the taker flow of [T - 5m, T), the file running 00:05 .. next 00:00 with the
  closing row stamped two seconds late; from 2026-06-25 the snapshot at T + 5m and the flow of
  [T, T + 5m), the file running 00:00 .. 23:55;
- number formats by era, whole days published twice in 2020-21, some files with a gap or rows
  out of order;
- one file whose checksum does not match (`BAD_CHECKSUM`).

Values come from the same series as the REST endpoints, so a REST row and the archive row of the
same bucket describe the same market (they differ by the REST API's 4-decimal rounding).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

from pipelines.simulator import series
from pipelines.simulator.grid import DAY, MINUTE
from pipelines.simulator.spec import Call, Handler, Instrument, Refusal, Reply

PATH = "/data/futures/um/daily/metrics/{symbol}/{file}"
BUCKET = "archive"
FIRST_DAY = date(2020, 9, 1)  # the dataset's first file (BTCUSDT)
LABEL_SWITCH = date(2026, 6, 25)  # binance-public-data #491
# (symbol, days before today) of the one file whose .CHECKSUM does not match its zip, as the
# two persistent mismatches of binance-public-data #498.
BAD_CHECKSUM = ("ETHUSDT", 45)
HEADER = (
    "create_time,symbol,sum_open_interest,sum_open_interest_value,"
    "count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,"
    "count_long_short_ratio,sum_taker_long_short_vol_ratio"
)
_SLOT = 5 * MINUTE
_SLOTS = DAY // _SLOT
_SHARE_METRICS = ("top_account", "top_position", "global_account")


def _not_found() -> Refusal:
    # What S3 behind data.binance.vision answers for a key that does not exist.
    body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    return Refusal(Reply(404, body + "<Message>The specified key does not exist.</Message></Error>",
                         content_type="application/xml"))  # fmt: skip


def first_day(inst: Instrument) -> date:
    """The first archived day: the day after listing, not before the dataset began."""
    listed = datetime.fromtimestamp(inst.listed_ms / 1000, UTC).date()
    return max(FIRST_DAY, listed + timedelta(days=1))


def handler(exchange: str) -> Handler:
    def handle(call: Call) -> Reply:
        symbol, name = call.query.get("symbol", ""), call.query.get("file", "")
        stem, _, suffix = name.partition(".")
        if suffix not in ("zip", "zip.CHECKSUM") or not stem.startswith(f"{symbol}-metrics-"):
            raise _not_found()
        try:
            day = date.fromisoformat(stem.removeprefix(f"{symbol}-metrics-"))
        except ValueError:
            raise _not_found() from None
        inst = call.instruments.get(symbol)
        today = datetime.fromtimestamp(call.now_ms / 1000, UTC).date()
        if inst is None or not inst.has_data or not first_day(inst) <= day < today:
            raise _not_found()
        archive = _zip(exchange, inst.symbol, inst.coin, inst.multiplier, day)
        if suffix == "zip":
            return Reply(200, archive, content_type="application/zip")
        digest = hashlib.sha256(archive).hexdigest()
        if (symbol, (today - day).days) == BAD_CHECKSUM:
            digest = hashlib.sha256(archive + b"regenerated").hexdigest()
        return Reply(200, f"{digest}  {stem}.zip\n", content_type="text/plain")

    return handle


@lru_cache(maxsize=512)
def _zip(exchange: str, symbol: str, coin: str, multiplier: int, day: date) -> bytes:
    """The zip of one symbol-day, byte for byte the same on every request (the checksum
    request and the file request are answered separately)."""
    text = csv_text(exchange, symbol, coin, multiplier, day)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(
            f"{symbol}-metrics-{day.isoformat()}.csv", (day.year, day.month, day.day, 3, 0, 0)
        )
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, text, compresslevel=1)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Month:
    """A coin's series at every five-minute instant of a month (and the next midnight): numpy
    pays per call, so one call per month instead of one per file is most of the saving."""

    start_ms: int
    shares: dict[str, np.ndarray]
    open_interest: np.ndarray
    price: np.ndarray
    buy: np.ndarray  # cumulative taker volume, coins
    sell: np.ndarray


@lru_cache(maxsize=64)
def _month(exchange: str, coin: str, year: int, month: int) -> _Month:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    grid = np.arange(start_ms, end_ms + _SLOT, _SLOT, dtype=np.int64)
    return _Month(
        start_ms,
        {m: series.long_shares(exchange, coin, m, grid) for m in _SHARE_METRICS},
        series.open_interests(exchange, coin, grid),
        series.prices(coin, grid, exchange),
        series.cumulative_takers(exchange, coin, "buy", grid),
        series.cumulative_takers(exchange, coin, "sell", grid),
    )


def csv_text(exchange: str, symbol: str, coin: str, multiplier: int, day: date) -> str:
    """One day's file. In both conventions its rows hold the snapshots taken at 00:05 .. the
    next 00:00 and the taker flows of the 288 slots from 00:00; only the labels differ."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    old = day < LABEL_SWITCH
    month = _month(exchange, coin, day.year, day.month)
    first = (start - month.start_ms) // _SLOT  # grid index of the day's midnight
    snapshots = slice(first + 1, first + _SLOTS + 1)
    ratios = {m: s[snapshots] / (1.0 - s[snapshots]) for m, s in month.shares.items()}
    buy = np.diff(month.buy[first : first + _SLOTS + 1])
    sell = np.diff(month.sell[first : first + _SLOTS + 1])
    amount = month.open_interest[snapshots]
    value = amount * month.price[snapshots]
    labels = start + _SLOT * (np.arange(1, _SLOTS + 1) if old else np.arange(_SLOTS))
    fmt = _formats(day)
    stamps = np.datetime_as_string(labels.astype("datetime64[ms]"), unit="s")
    stamps = np.char.replace(stamps, "T", " ").tolist()
    if old:  # old files close with the next midnight, stamped a moment late ("... 00:00:02")
        stamps[-1] = stamps[-1][:-2] + "02"
    columns = (
        stamps,
        [symbol] * len(stamps),
        fmt.oi(amount / multiplier),
        fmt.value(value),
        fmt.count(ratios["top_account"]),
        fmt.ratio(ratios["top_position"]),
        fmt.count(ratios["global_account"]),
        fmt.ratio(buy / sell),
    )
    lines = [",".join(fields) for fields in zip(*columns, strict=True)]
    return HEADER + "\n" + "\n".join(_untidy(lines, symbol, day)) + "\n"


Column = Callable[[np.ndarray], list[str]]


def _fixed(decimals: int) -> Column:
    return lambda values: [f"{x:.{decimals}f}" for x in values.tolist()]


def _full_precision(values: np.ndarray) -> list[str]:
    return [repr(x) for x in values.tolist()]


@dataclass(frozen=True)
class _Formats:
    oi: Column
    value: Column
    count: Column
    ratio: Column


def _formats(day: date) -> _Formats:
    """How numbers were written in the file's era (as real files of each era show)."""
    if day < date(2021, 12, 1):
        return _Formats(_fixed(8), _fixed(8), _fixed(8), _fixed(8))
    if day < date(2023, 7, 10):
        return _Formats(_fixed(8), _fixed(8), _full_precision, _fixed(8))
    if day < date(2025, 1, 1):
        return _Formats(_fixed(3), _fixed(5), _fixed(8), _fixed(8))
    return _Formats(_fixed(16), _fixed(16), _fixed(8), _fixed(8))


def _untidy(lines: list[str], symbol: str, day: date) -> list[str]:
    """Real files' disorder, fixed per file: twins in 2020-21, a missing hour, rows out of order."""
    if day < date(2021, 5, 22):
        return [line for line in lines for _ in (0, 1)]  # byte-identical twins
    roll = series.unit(series.seed("archive-untidy", symbol), day.toordinal())
    if roll < 0.03:
        return lines[:120] + lines[132:]  # an hour not written
    if roll < 0.06:
        return lines[-36:] + lines[:-36]  # the evening first
    return lines
