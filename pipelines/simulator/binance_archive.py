"""Binance Vision's daily `metrics` archive, served beside the Binance REST API.

`GET /data/futures/um/daily/metrics/{SYMBOL}/{SYMBOL}-metrics-{DAY}.zip` and its `.CHECKSUM`,
with what real files show (BINANCE-ARCHIVE.md in the project's exchange notes):

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
        archive.writestr(info, text)
    return buffer.getvalue()


def csv_text(exchange: str, symbol: str, coin: str, multiplier: int, day: date) -> str:
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    old = day < LABEL_SWITCH
    labels = start + _SLOT * np.arange(1, _SLOTS + 1) if old else start + _SLOT * np.arange(_SLOTS)
    snapshots = labels if old else labels + _SLOT
    flow_start = snapshots - _SLOT
    shares = {m: series.long_shares(exchange, coin, m, snapshots)
              for m in ("top_account", "top_position", "global_account")}  # fmt: skip
    ratios = {m: s / (1.0 - s) for m, s in shares.items()}
    buy = series.cumulative_takers(exchange, coin, "buy", flow_start + _SLOT)
    buy -= series.cumulative_takers(exchange, coin, "buy", flow_start)
    sell = series.cumulative_takers(exchange, coin, "sell", flow_start + _SLOT)
    sell -= series.cumulative_takers(exchange, coin, "sell", flow_start)
    amount = series.open_interests(exchange, coin, snapshots)
    value = amount * series.prices(coin, snapshots, exchange)
    fmt = _formats(day)
    lines = [
        ",".join(
            (
                _stamp(label, closing=old and i == _SLOTS - 1),
                symbol,
                fmt.oi(amount[i] / multiplier),
                fmt.value(value[i]),
                fmt.count(ratios["top_account"][i]),
                fmt.ratio(ratios["top_position"][i]),
                fmt.count(ratios["global_account"][i]),
                fmt.ratio(buy[i] / sell[i]),
            )
        )
        for i, label in enumerate(labels.tolist())
    ]
    return HEADER + "\n" + "\n".join(_untidy(lines, symbol, day)) + "\n"


def _stamp(t_ms: int, *, closing: bool) -> str:
    moment = datetime.fromtimestamp(t_ms / 1000, UTC)
    # Old files close with the next midnight, stamped a moment late ("... 00:00:02").
    return (moment + timedelta(seconds=2 if closing else 0)).strftime("%Y-%m-%d %H:%M:%S")


class _Formats:
    def __init__(self, oi: int, value: int, full_precision_counts: bool) -> None:
        self.oi = lambda x: f"{x:.{oi}f}"
        self.value = lambda x: f"{x:.{value}f}"
        self.ratio = lambda x: f"{x:.8f}"
        self.count = (lambda x: repr(float(x))) if full_precision_counts else self.ratio


def _formats(day: date) -> _Formats:
    """How numbers were written in the file's era (BINANCE-ARCHIVE.md section 2)."""
    if day < date(2021, 12, 1):
        return _Formats(8, 8, False)
    if day < date(2023, 7, 10):
        return _Formats(8, 8, True)
    if day < date(2025, 1, 1):
        return _Formats(3, 5, False)
    return _Formats(16, 16, False)


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
