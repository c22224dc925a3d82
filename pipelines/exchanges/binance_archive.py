"""Binance Vision's daily `metrics` archive: years of five-minute L/S ratios and open interest.

`https://data.binance.vision/data/futures/um/daily/metrics/{SYMBOL}/{SYMBOL}-metrics-{DAY}.zip`
holds one CSV of five-minute rows per symbol and UTC day, beside a `.CHECKSUM` (sha256). The REST
endpoints keep 30 days; the archive goes back to 2020-09 (later for most symbols).

What the files are like (surveyed by others in 2026, and
https://github.com/binance/binance-public-data issues #258, #276, #350, #491, #498):

- ratios only, no shares: long share = r / (1 + r);
- every era formats numbers differently (8 decimals, full binary-float precision, 16 decimals);
- blank fields occur: a blank ratio is no observation, never 0;
- `create_time` is naive UTC text whose seconds are not always `:00`: floored to five minutes;
- rows are not always sorted, some are duplicated, some days are short;
- the meaning of a label changed on 2026-06-25 (binance-public-data #491). Before, a row labelled
  T holds the snapshot taken at T and the taker flow of [T - 5m, T); from that day on, the
  snapshot taken at T + 5m and the taker flow of [T, T + 5m). The REST endpoints stamp snapshots
  with their own time and taker rows with the start of the flow, so each row's `ts` here is the
  REST timestamp of the same observation: comparable, bucket for bucket, with REST rows.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipelines.config import PERIOD_MS
from pipelines.errors import PayloadError
from pipelines.exchanges.base import OI_COLUMNS, Venue, Window, ls_frame
from pipelines.http import HttpClient, RateLimit

NAME = "binance"
ENDPOINT = "archive metrics"
DEFAULT_BASE_URL = "https://data.binance.vision"
_SLOT = np.timedelta64(5, "m").astype("timedelta64[ns]")
# binance-public-data #491: the first file written with the new label convention.
LABEL_SWITCH = date(2026, 6, 25)
SNAPSHOT_AT_LABEL = "snapshot_at_label"  # files of days before LABEL_SWITCH
SLOT_STARTS_AT_LABEL = "slot_starts_at_label"  # files of LABEL_SWITCH and later

HEADER = (
    "create_time",
    "symbol",
    "sum_open_interest",
    "sum_open_interest_value",
    "count_toptrader_long_short_ratio",
    "sum_toptrader_long_short_ratio",
    "count_long_short_ratio",
    "sum_taker_long_short_vol_ratio",
)
NUMBER_COLUMNS = HEADER[2:]
# Binance publishes no mapping; the column names say it.
RATIO_COLUMNS: dict[str, str] = {
    "global_account": "count_long_short_ratio",
    "top_account": "count_toptrader_long_short_ratio",
    "top_position": "sum_toptrader_long_short_ratio",
    "taker_volume": "sum_taker_long_short_vol_ratio",
}
FLOW_METRICS = frozenset({"taker_volume"})
_NO_OBSERVATIONS = pd.DataFrame(
    {
        "metric": pd.Series(dtype=object),
        "ts": pd.Series(dtype="datetime64[ns]"),
        "ratio": pd.Series(dtype="float64"),
        "create_time": pd.Series(dtype="datetime64[ns]"),
        "file_day": pd.Series(dtype=object),
    }
)


def path(instrument: str, day: date) -> str:
    """The archive path of one symbol-day zip (its checksum is this plus `.CHECKSUM`)."""
    name = f"{instrument}-metrics-{day.isoformat()}"
    return f"/data/futures/um/daily/metrics/{instrument}/{name}.zip"


def convention_of(file_day: date) -> str:
    return SLOT_STARTS_AT_LABEL if file_day >= LABEL_SWITCH else SNAPSHOT_AT_LABEL


@dataclass(frozen=True)
class MetricsTable:
    """The lines of one archive CSV, typed: labels floored to five minutes, blanks as NaN."""

    instrument: str
    labels: np.ndarray  # datetime64[ns], floored create_time
    numbers: dict[str, np.ndarray]  # column -> float64, NaN where blank
    file_day: date

    @property
    def convention(self) -> str:
        return convention_of(self.file_day)

    def ts_of(self, metric: str | None) -> np.ndarray:
        """The REST timestamp of each line's observation of `metric` (None: open interest)."""
        if self.convention == SNAPSHOT_AT_LABEL:
            return self.labels - _SLOT if metric in FLOW_METRICS else self.labels
        return self.labels if metric in FLOW_METRICS else self.labels + _SLOT


def read_metrics(csv_text: str, *, instrument: str, file_day: date | None = None) -> MetricsTable:
    """Parse and type one archive CSV; a file that is not one raises PayloadError.

    The label convention follows the file's day: `file_day` when the caller knows it (it
    fetched the file by name), else the day most labels fall on (a file's closing row may be
    labelled with the next day's midnight, and some files carry stray rows of other days).
    """
    try:  # Arrow's reader takes a well-formed file five times faster than the checks below
        labels, numbers, symbols = _read_fast(csv_text)
    except (pa.ArrowInvalid, KeyError, ValueError):  # say which line is wrong, and how
        frame = _read_csv(csv_text, instrument)
        labels = _labels(frame["create_time"], instrument)
        numbers = {column: _numbers(frame, column, instrument) for column in NUMBER_COLUMNS}
        symbols = set(frame["symbol"])
    symbols -= {""}
    if symbols - {instrument}:
        raise PayloadError(
            NAME,
            ENDPOINT,
            f"file holds rows of {sorted(symbols)}, not {instrument}",
            symbol=instrument,
        )
    if file_day is None:
        file_day = _most_common_day(labels)
    return MetricsTable(instrument, labels, numbers, file_day)


def _floored(stamps: np.ndarray) -> np.ndarray:
    """Five-minute slots: closing rows stamped 00:00:02 belong to the 00:00 slot."""
    return stamps - (stamps.astype("int64") % _SLOT.astype("int64")).astype("timedelta64[ns]")


_ARROW_TYPES = pacsv.ConvertOptions(
    column_types={"create_time": pa.timestamp("s"), "symbol": pa.string()}
    | {column: pa.float64() for column in NUMBER_COLUMNS},
    null_values=[""],
    quoted_strings_can_be_null=True,
)


def _read_fast(csv_text: str) -> tuple[np.ndarray, dict[str, np.ndarray], set[str]]:
    """Labels, numbers and symbols of a well-formed file; raises on anything else."""
    table = pacsv.read_csv(
        io.BytesIO(csv_text.encode()),
        read_options=pacsv.ReadOptions(use_threads=False),
        convert_options=_ARROW_TYPES,
    )
    if len(table.column_names) != len(HEADER) or set(table.column_names) != set(HEADER):
        raise KeyError("header")
    stamps = table.column("create_time").to_numpy(zero_copy_only=False)
    if np.isnat(stamps).any():
        raise ValueError("a blank create_time")
    numbers = {}
    for column in NUMBER_COLUMNS:
        values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        numbers[column] = np.where(np.isfinite(values), values, np.nan)
    symbols = set(table.column("symbol").to_pylist()) - {None}
    return _floored(stamps.astype("datetime64[ns]")), numbers, symbols


def _most_common_day(labels: np.ndarray) -> date:
    if not len(labels):
        return LABEL_SWITCH
    days, counts = np.unique(labels.astype("datetime64[D]"), return_counts=True)
    return date.fromisoformat(str(days[np.argmax(counts)]))


def _read_csv(csv_text: str, instrument: str) -> pd.DataFrame:
    lines = list(csv.reader(io.StringIO(csv_text.lstrip("\ufeff")), skipinitialspace=True))
    lines = [line for line in lines if line]
    columns = tuple(c.strip() for c in lines[0]) if lines else ()
    if set(columns) != set(HEADER) or len(columns) != len(HEADER):
        raise PayloadError(
            NAME,
            ENDPOINT,
            f"expected the header {','.join(HEADER)}, got {','.join(columns)[:200]!r}",
            symbol=instrument,
        )
    for number, line in enumerate(lines[1:], start=2):
        if len(line) != len(HEADER):
            raise PayloadError(
                NAME,
                ENDPOINT,
                f"line {number} has {len(line)} fields, not {len(HEADER)}",
                symbol=instrument,
            )
    return pd.DataFrame(lines[1:], columns=list(columns), dtype=str)


def _labels(texts: pd.Series, instrument: str) -> np.ndarray:
    texts = texts.str.strip()
    if len(texts) and texts.str.fullmatch(r"\d{10,13}").all():
        # Epoch numbers instead of text: seconds or milliseconds, read from the magnitude.
        numbers = texts.astype("int64")
        stamps = pd.to_datetime(numbers.where(numbers >= 10**11, numbers * 1000), unit="ms")
    else:
        stamps = pd.to_datetime(texts, format="ISO8601", errors="coerce")
    _refuse_first(stamps.isna(), texts, "create_time", "is not a date and time", instrument)
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert(UTC).dt.tz_localize(None)
    return _floored(stamps.to_numpy(dtype="datetime64[ns]"))


def _refuse_first(
    bad: pd.Series, texts: pd.Series, column: str, problem: str, instrument: str
) -> None:
    """Raise for the first bad field, naming its line (the header is line 1)."""
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise PayloadError(
            NAME,
            ENDPOINT,
            f"line {row + 2}: {column} {texts.iloc[row]!r} {problem}",
            symbol=instrument,
        )


def _numbers(frame: pd.DataFrame, column: str, instrument: str) -> np.ndarray:
    text = frame[column].str.strip()
    values = pd.to_numeric(text.where(text != ""), errors="coerce")
    _refuse_first(values.isna() & (text != ""), text, column, "is not a number", instrument)
    array = values.to_numpy(dtype="float64")
    return np.where(np.isfinite(array), array, np.nan)


def parse_metrics(csv_text: str, *, instrument: str, file_day: date | None = None) -> pd.DataFrame:
    """One archive CSV -> `ls_ratio` rows: one per line and published kind, period `5m`.

    `ts` is the REST timestamp of the observation (see the module docstring); `source_ratio` is
    the archive's ratio exactly; the shares follow from it (long = r / (1 + r)). A blank ratio
    gives no row for that kind. Extra columns: `create_time` (the label, floored) and
    `label_convention`. Sorted by metric and time; duplicate lines are kept (one row per line).
    """
    return ls_rows(read_metrics(csv_text, instrument=instrument, file_day=file_day))


def ls_rows(table: MetricsTable) -> pd.DataFrame:
    """Every line's published kinds as five-minute `ls_ratio` rows (what `parse_metrics` gives)."""
    step = PERIOD_MS["5m"]
    frames = [
        _ls_frame(
            _joined([_observations(table, metric, step)], metric), table.instrument, metric, "5m"
        )
        for metric in RATIO_COLUMNS
    ]
    return pd.concat(frames, ignore_index=True).assign(
        label_convention=table.convention, file_day=table.file_day
    )


def _observations(table: MetricsTable, metric: str, step: int) -> dict[str, np.ndarray]:
    """One kind's published values whose time lies on a `step` grid: ts, ratio, label, file day."""
    ratio = table.numbers[RATIO_COLUMNS[metric]]
    ts = table.ts_of(metric)
    keep = ~np.isnan(ratio) & (_epoch_ms(ts) % step == 0)
    return {
        "ts": ts[keep],
        "ratio": ratio[keep],
        "create_time": table.labels[keep],
        "file_day": np.full(int(keep.sum()), table.file_day, dtype=object),
    }


def _concatenated(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The columns of several files' observations end to end (one frame built, not one a file)."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _joined(parts: list[dict[str, np.ndarray]], metric: str) -> pd.DataFrame:
    """Observations of several files as one frame."""
    if not parts:
        return _NO_OBSERVATIONS.assign(metric=metric)
    return pd.DataFrame({"metric": metric, **_concatenated(parts)})


def _ls_frame(observed: pd.DataFrame, instrument: str, metric: str, period: str) -> pd.DataFrame:
    """`ls_ratio` rows from observations: shares from the ratio, the label as `source_ts`.

    Rows of a coarser period than five minutes are the snapshot at their time: `derived_from`
    says so."""
    observed = observed.sort_values("ts", kind="stable")
    r = observed["ratio"].to_numpy()
    frame = ls_frame(
        NAME,
        coin=coin_from_instrument(instrument),
        instrument=instrument,
        metric=metric,
        period=period,
        source_ts=_epoch_ms(observed["ts"]),
        long_share=r / (1.0 + r),
        short_share=1.0 / (1.0 + r),
        source_ratio=r,
        derived_from=None if period == "5m" else "5m",
    )
    labels = observed["create_time"].to_numpy()
    return frame.assign(
        create_time=labels, source_ts=labels.astype("datetime64[ms]").astype("int64")
    )


def oi_rows(table: MetricsTable, step: int = PERIOD_MS["5m"]) -> pd.DataFrame:
    """Open interest (a snapshot, like the REST `openInterestHist` rows) on a `step` grid."""
    return _oi_frame([_oi_observations(table, step)], table.instrument)


def _oi_observations(table: MetricsTable, step: int) -> dict[str, np.ndarray]:
    amount = table.numbers["sum_open_interest"]
    value = table.numbers["sum_open_interest_value"]
    ts = table.ts_of(None)
    keep = ~(np.isnan(amount) & np.isnan(value)) & (_epoch_ms(ts) % step == 0)
    return {
        "ts": ts[keep],
        "open_interest": amount[keep],
        "open_interest_value": value[keep],
        "create_time": table.labels[keep],
        "file_day": np.full(int(keep.sum()), table.file_day, dtype=object),
    }


def _oi_frame(parts: list[dict[str, np.ndarray]], instrument: str) -> pd.DataFrame:
    columns = _concatenated(parts)
    frame = pd.DataFrame(
        {
            "exchange": NAME,
            "coin": coin_from_instrument(instrument),
            "instrument": instrument,
            "period": "5m",
            **columns,
            "derived_from": None,
        }
    )
    return frame.sort_values("ts", kind="stable", ignore_index=True)


def _epoch_ms(stamps: pd.Series | np.ndarray) -> np.ndarray:
    return np.asarray(stamps, dtype="datetime64[ms]").astype("int64")


def settle(rows: pd.DataFrame, key: list[str]) -> tuple[pd.DataFrame, int]:
    """One row per key from the rows of several neighbouring files, and how many conflicted.

    Exact twins (whole days were published twice) collapse. Two different values for one key
    (the midnight row written by both neighbouring files, or a re-stamped duplicate) are
    resolved by one rule: the file of the day the row's time falls on wins, and within a file
    the later line.
    """
    if rows.empty:
        return rows, 0
    values = [
        c
        for c in rows.columns
        if c not in (*key, "create_time", "source_ts", "file_day", "label_convention")
    ]
    distinct = rows.drop_duplicates(subset=[*key, *values])
    conflicts = int(distinct.duplicated(subset=key).sum())
    owner = distinct["file_day"] == distinct["ts"].dt.date
    ordered = distinct.assign(_owner=owner, _line=np.arange(len(distinct)))
    ordered = ordered.sort_values([*key, "_owner", "_line"], kind="stable")
    kept = ordered.drop_duplicates(subset=key, keep="last").drop(columns=["_owner", "_line"])
    return kept.reset_index(drop=True), conflicts


# ---------------------------------------------------------------------------------------------
# Fetching: one zip and its checksum per symbol-day, each fetched once per run


ARCHIVE_BUCKET = "archive"
# data.binance.vision publishes no limit (a CDN); this stays polite.
LIMITS = {ARCHIVE_BUCKET: RateLimit(40, 1)}


VENUE = Venue(
    name="binance_archive",
    default_base_url=DEFAULT_BASE_URL,
    limits=LIMITS,
    errors=(),  # a file, its checksum, or a 404: no error bodies
    instrument_suffix="USDT",
)
profile = VENUE.profile
coin_from_instrument = VENUE.coin_from_instrument


@dataclass(frozen=True)
class ArchiveDay:
    """One symbol-day of the archive: its table, or why there is none."""

    day: date
    table: MetricsTable | None
    problem: str | None = None  # not published, or a checksum that does not match
    checksum: str | None = None  # the .CHECKSUM body, kept with a rejected file


@dataclass(frozen=True)
class ArchiveWindow:
    """What the archive holds for one symbol over a window: the day files that cover it.

    A connector returns it as a "page"; `parse` and `parse_open_interest` read it."""

    instrument: str
    window: Window
    days: tuple[ArchiveDay, ...]

    def ls(self, metric: str, period: str) -> pd.DataFrame:
        """The window's rows of one kind and period: for 1h/4h/1d the five-minute snapshot at
        the bucket time (a REST row of those periods is the snapshot at its timestamp). Taker
        flow over more than five minutes cannot be added up from ratios: none."""
        tables = self._tables()
        if not tables or (metric in FLOW_METRICS and period != "5m"):
            return self._inside(_ls_frame(_NO_OBSERVATIONS, self.instrument, metric, period))
        step = PERIOD_MS[period]
        observed = _joined([_observations(t, metric, step) for t in tables], metric)
        settled, _ = settle(observed, ["metric", "ts"])
        return self._inside(_ls_frame(settled, self.instrument, metric, period))

    def open_interest(self, period: str) -> pd.DataFrame:
        tables = self._tables()
        if not tables:
            return pd.DataFrame(columns=[*OI_COLUMNS, "source", "derived_from"])
        step = PERIOD_MS[period]
        rows = _oi_frame([_oi_observations(t, step) for t in tables], self.instrument)
        settled, _ = settle(rows, ["ts"])
        derived = None if period == "5m" else "5m"
        return self._inside(settled.assign(period=period, derived_from=derived))

    def _tables(self) -> list[MetricsTable]:
        return [d.table for d in self.days if d.table is not None]

    def _inside(self, frame: pd.DataFrame) -> pd.DataFrame:
        # The neighbouring days' files were fetched for the rows at the window's edges only.
        inside = frame["ts"].between(
            pd.Timestamp(self.window.start_ms, unit="ms"),
            pd.Timestamp(self.window.end_ms - 1, unit="ms"),
        )
        return frame[inside].assign(source="archive").reset_index(drop=True)

    @property
    def missing(self) -> list[str]:
        """Why days of the window have no rows (read by ingestion for the fetch's outcome)."""
        return [f"archive {self.instrument} {d.day}: {d.problem}" for d in self.days if d.problem]

    @property
    def day_problems(self) -> list[tuple[date, str, str]]:
        """(day, status, why) for each day file of the window that gave no rows: `failed` for
        a file refused (the next run asks again), `unavailable` for one not published."""
        return [
            (d.day, "failed" if d.checksum is not None else "unavailable", f"archive: {d.problem}")
            for d in self.days
            if d.problem and d.day >= _utc_day(self.window.start_ms)  # not the day-before file
        ]

    @property
    def rejected(self) -> list[tuple[str, str, str]]:
        """(instrument, reason, raw) of files refused whole (recorded as rejected rows)."""
        return [
            (self.instrument, f"archive {self.instrument} {d.day}: {d.problem}", d.checksum)
            for d in self.days
            if d.checksum is not None and d.problem
        ]


def _utc_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


async def fetch_window(client: HttpClient, instrument: str, window: Window) -> ArchiveWindow:
    """The day files covering `window`, with the day before: under either label convention
    the snapshot at a day's midnight is written in the previous day's file."""
    first = _utc_day(window.start_ms) - timedelta(days=1)
    last = _utc_day(window.end_ms - 1)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    files = await asyncio.gather(
        *(
            client.once(
                (NAME, "archive", instrument, d), partial(_fetch_day, client, instrument, d)
            )
            for d in days
        )
    )
    return ArchiveWindow(instrument, window, tuple(files))


# Day files fetched at once, each its checksum then its zip, back to back: with every day of
# a long window queued together, all checksums would otherwise go first and each zip long after.
DAYS_IN_FLIGHT = 16


async def _day_slots() -> asyncio.Semaphore:
    return asyncio.Semaphore(DAYS_IN_FLIGHT)


async def _fetch_day(client: HttpClient, instrument: str, day: date) -> ArchiveDay:
    async with await client.once((NAME, "archive day slots"), _day_slots):
        return await _fetch_day_files(client, instrument, day)


async def _fetch_day_files(client: HttpClient, instrument: str, day: date) -> ArchiveDay:
    where = path(instrument, day)
    source = profile()
    checksum = await client.get_file(
        source, where + ".CHECKSUM", buckets={ARCHIVE_BUCKET: 1}, symbol=instrument
    )
    if checksum is None:
        return ArchiveDay(day, None, "not published (HTTP 404)")
    expected = checksum.decode(errors="replace").split()[0].lower() if checksum.strip() else ""
    actual = ""
    for _ in range(2):  # a download cut short hashes differently: one more try before refusing
        content = await client.get_file(
            source, where, buckets={ARCHIVE_BUCKET: 1}, symbol=instrument
        )
        if content is None:
            return ArchiveDay(day, None, "not published (HTTP 404)")
        actual = hashlib.sha256(content).hexdigest()
        if actual == expected:
            return ArchiveDay(
                day,
                read_metrics(
                    _member(content, instrument, day), instrument=instrument, file_day=day
                ),
            )
    problem = (
        f"checksum mismatch: {where}.CHECKSUM says {expected or '(empty)'}, the zip hashes to "
        f"{actual}; nothing of this file is stored"
    )
    return ArchiveDay(day, None, problem, checksum.decode(errors="replace"))


def _member(content: bytes, instrument: str, day: date) -> str:
    name = f"{instrument}-metrics-{day.isoformat()}.csv"
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return archive.read(name).decode()
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as error:
        raise PayloadError(
            NAME, ENDPOINT, f"{path(instrument, day)}: {error}", symbol=instrument
        ) from error
