"""Sums over a trailing time window, per series: what heatmap_matrix's z-scores are made of.

For each bucket t of a series, over the series' earlier buckets t' with t - lookback <= t' < t
(the bucket itself excluded): n = how many hold a value, s = their sum, ss = the sum of their
squares. With prefix sums P of the series (P[i] = the sum of its first i values) the window of
row i is P[i] - P[lo], where lo is the first row inside it, found by binary search: linear work,
where DuckDB's window functions build a segment tree for each running sum and an ASOF join
sorts the rows again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

SUM_COLUMNS = ("n", "s", "ss")
# Keys (series number x SPAN + time within the series) stay below this, exact in an int64.
_KEY_LIMIT = 2**62


def with_trailing_sums(rows: pa.Table, lookback: int) -> pa.Table:
    """`rows` (columns sid, t, since and x, sorted by sid then t, t unique in a series; x NULL
    where there is no value) with n, s and ss over [t - lookback, t) added, keeping only the rows
    at or after their series' `since`: the rows before it are the look-back, read for their
    values only."""
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
    kept = t >= rows["since"].to_numpy()
    every = bool(kept.all())  # a full rebuild's: nothing to leave out, no copy
    table = rows if every else rows.filter(pa.array(kept))
    for name in SUM_COLUMNS:
        before = running[name].to_numpy() - values[name].to_numpy()  # the series' values before
        sums = before - before[lo]
        table = table.append_column(name, pa.array(sums if every else sums[kept]))
    return table


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
