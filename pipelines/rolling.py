"""Computations along each series in time order, in numpy, for the models whose SQL window
functions cost most (DuckDB sorts for each window, then builds a segment tree per aggregate or
a list per row): the steps a model's file names as `PYTHON <step>(<table>, $<setting>) INTO
<table>`, run by pipelines/analytics.py. Each takes a chunk of whole series sorted by sid, then
t, and returns its results beside the rows (or their keys).

Trailing sums (heatmap_matrix's z-scores): for each bucket t of a series, over the series'
earlier buckets t' with t - lookback <= t' < t: n = how many hold a value, s = their sum,
ss = the sum of their squares. With prefix sums P of the series (P[i] = the sum of its first i
values) row i's window is P[i] - P[lo], lo being the first row inside it, found by binary
search: linear work, where SQL built a segment tree per running sum and sorted again for an
ASOF join.

Hull momentum (candle_flow's): see with_hull_momentum; a matrix product over windows of m
consecutive rows, where SQL built a list per row and window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

SUM_COLUMNS = ("n", "s", "ss")
MOMENTUM_COLUMNS = ("buy_change", "momentum")
# Search keys (series number x span + time within the series) stay below this: exact in int64.
_KEY_LIMIT = 2**62


def with_trailing_sums(rows: pa.Table, lookback: int) -> pa.Table:
    """`rows` (columns sid, t and x, sorted by sid then t, t unique in a series; x NULL where
    there is no value: whole series, as a full rebuild reads them) with n, s and ss over
    [t - lookback, t) added."""
    sid = rows["sid"].to_numpy()
    t = rows["t"].to_numpy()
    x = rows["x"].to_numpy(zero_copy_only=False).astype(np.float64)  # NULL -> NaN
    series = np.r_[0, np.cumsum(sid[1:] != sid[:-1])][: len(sid)]  # 0, 1, ... in row order
    lo = _window_starts(series, t, lookback)
    held = ~np.isnan(x)
    value = np.where(held, x, 0.0)
    values = pd.DataFrame({"n": held.astype(np.int64), "s": value, "ss": value * value})
    # Summed series by series (not one running total over all rows, differenced): a flat series
    # must come out with no spread, not with the rounding of the rows before it.
    running = values.groupby(series, sort=False).cumsum()
    for name in SUM_COLUMNS:
        before = running[name].to_numpy() - values[name].to_numpy()  # the series' values before
        rows = rows.append_column(name, pa.array(before - before[lo]))
    return rows


def _window_starts(series: np.ndarray, t: np.ndarray, lookback: int) -> np.ndarray:
    """For each row, the first row of its series with t' >= t - lookback: a binary search over
    keys that order the rows by series then time (time counted from each series' first row),
    for as many series at once as their keys fit an int64 (all of them but in decades of
    history across tens of thousands of series)."""
    if len(t) == 0:
        return np.zeros(0, np.int64)
    first = np.r_[0, np.flatnonzero(np.diff(series)) + 1]
    since_first = t - t[first][series]
    span = int(since_first.max(initial=0)) + lookback + 1
    at_once = max(_KEY_LIMIT // span, 1)
    starts = np.empty(len(t), np.int64)
    for low in range(0, int(series.max(initial=-1)) + 1, at_once):
        rows = slice(first[low], first[low + at_once] if low + at_once < len(first) else len(t))
        key = (series[rows] - low) * span + since_first[rows]
        starts[rows] = rows.start + np.searchsorted(key, key - lookback, side="left")
    return starts


def with_hull_momentum(rows: pa.Table, length: int) -> pa.Table:
    """The key (sid, t) of each of `rows` (columns sid, t = the bucket's number (epoch / period)
    and buy_share, sorted by sid then t, t unique in a series) with candle_flow's buy_change and
    momentum:
      buy_change = buy_share - the previous bucket's, NULL unless that bucket is t - 1;
      momentum   = HMA(buy_change, length) = WMA(2 WMA(x, length // 2) - WMA(x, length),
                   round(sqrt(length))), WMA(x, m) weighing the last m buckets 1, 2, ..., m
                   (newest heaviest), NULL unless all m buckets are there with a value."""
    sid = rows["sid"].to_numpy()
    t = rows["t"].to_numpy()
    share = rows["buy_share"].to_numpy(zero_copy_only=False).astype(np.float64)  # NULL -> NaN
    change = np.full(len(t), np.nan)
    follows = (sid[1:] == sid[:-1]) & (t[1:] == t[:-1] + 1)
    change[1:][follows] = (share[1:] - share[:-1])[follows]
    half = _weighted_average(sid, t, change, length // 2)
    full = _weighted_average(sid, t, change, length)
    momentum = _weighted_average(sid, t, 2 * half - full, int(np.floor(np.sqrt(length) + 0.5)))
    out = rows.select(["sid", "t"])
    for name, values in zip(MOMENTUM_COLUMNS, (change, momentum), strict=True):
        out = out.append_column(name, pa.array(values, from_pandas=True))  # NaN -> NULL
    return out


def _weighted_average(sid: np.ndarray, t: np.ndarray, x: np.ndarray, m: int) -> np.ndarray:
    """WMA(x, m) at each row: sum of k * x over the buckets t - m + 1 .. t (k = 1 for the
    oldest) / (m (m + 1) / 2); NaN unless those m buckets are rows of the series (a NaN among
    them makes the sum NaN)."""
    out = np.full(len(t), np.nan)
    if len(t) < m:
        return out
    last = np.arange(m - 1, len(t))  # the newest row of each window of m consecutive rows
    whole = (sid[last] == sid[last - m + 1]) & (t[last] - t[last - m + 1] == m - 1)
    windows = np.lib.stride_tricks.sliding_window_view(x, m)
    out[last[whole]] = windows[whole] @ np.arange(1, m + 1, dtype=np.float64) / (m * (m + 1) / 2)
    return out
