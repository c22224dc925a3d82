"""The numpy steps of the models (heatmap z-scores' trailing sums, candle-flow momentum) against
direct computations window by window."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipelines import rolling
from pipelines.rolling import with_hull_momentum, with_trailing_sums


def direct(
    sid: np.ndarray, t: np.ndarray, x: np.ndarray, lookback: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, s, ss = np.zeros(len(t), np.int64), np.zeros(len(t)), np.zeros(len(t))
    for i in range(len(t)):
        window = (sid == sid[i]) & (t >= t[i] - lookback) & (t < t[i]) & ~np.isnan(x)
        n[i], s[i], ss[i] = window.sum(), x[window].sum(), (x[window] ** 2).sum()
    return n, s, ss


def gappy_series(rng: np.random.Generator) -> pa.Table:
    """A few series with holes and values missing."""
    sids = np.unique(rng.integers(0, 20, rng.integers(1, 8)))
    lengths = rng.integers(1, 40, len(sids))
    sid = np.repeat(sids, lengths)
    t = np.concatenate(
        [np.sort(rng.choice(200, m, replace=False)) * 10 + rng.integers(0, 5) for m in lengths]
    ).astype(np.int64)
    x = rng.normal(size=len(t))
    x[rng.random(len(t)) < 0.2] = np.nan
    return pa.table({"sid": sid, "t": t, "x": pa.array(x, from_pandas=True)})


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("series_at_once", ["all", "three"])
def test_sums_over_each_window_match_a_direct_count(
    seed: int, series_at_once: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    rows = gappy_series(rng)
    lookback = int(rng.integers(5, 400))
    if series_at_once == "three":  # keys of only three series fit: the search goes in groups
        monkeypatch.setattr(rolling, "_KEY_LIMIT", 3 * (2000 + lookback + 1))
    out = with_trailing_sums(rows, lookback)

    sid, t = rows["sid"].to_numpy(), rows["t"].to_numpy()
    x = rows["x"].to_numpy(zero_copy_only=False)
    n, s, ss = direct(sid, t, x, lookback)
    assert out["t"].to_pylist() == t.tolist()
    assert out["n"].to_pylist() == n.tolist()
    np.testing.assert_allclose(out["s"].to_numpy(), s, atol=1e-12)
    np.testing.assert_allclose(out["ss"].to_numpy(), ss, atol=1e-12)


def test_a_flat_series_after_a_busy_one_has_no_spread() -> None:
    """Sums run series by series: large values before a flat series leave it no rounding (one
    running total over both would leave ~1e-6 in the flat one's spread, heatmap_matrix's
    no-spread bound being 1e-12 x (n - 1))."""
    busy = np.random.default_rng(0).normal(1e4, 1e3, 500)
    x = np.r_[busy, np.full(50, 0.3)]
    rows = pa.table(
        {
            "sid": np.r_[np.zeros(500, np.int64), np.ones(50, np.int64)],
            "t": np.r_[np.arange(500), np.arange(50)],
            "x": x,
        }
    )
    out = with_trailing_sums(rows, lookback=100).slice(500)
    n, s, ss = (out[c].to_numpy()[2:] for c in ("n", "s", "ss"))
    assert (np.abs(ss - s * s / n) <= 1e-12 * (n - 1)).all()


def test_no_rows_give_no_rows() -> None:
    int64 = pa.array([], pa.int64())
    empty = pa.table({"sid": int64, "t": int64, "x": pa.array([], pa.float64())})
    assert with_trailing_sums(empty, 10).num_rows == 0


def hull_on_a_grid(t: np.ndarray, share: np.ndarray, length: int) -> tuple[np.ndarray, ...]:
    """One series laid on every bucket from its first to its last (a missing bucket is a NaN),
    the change and Hull moving average computed window by window."""
    grid = np.full(t.max() - t.min() + 1, np.nan)
    grid[t - t.min()] = share
    change = np.r_[np.nan, np.diff(grid)]

    def wma(x: np.ndarray, m: int) -> np.ndarray:
        out = np.full(len(x), np.nan)
        for i in range(m - 1, len(x)):
            out[i] = np.dot(x[i - m + 1 : i + 1], np.arange(1, m + 1)) / (m * (m + 1) / 2)
        return out

    raw = 2 * wma(change, length // 2) - wma(change, length)
    momentum = wma(raw, int(np.floor(np.sqrt(length) + 0.5)))
    return change[t - t.min()], momentum[t - t.min()]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("length", [2, 4, 9, 14])
def test_hull_momentum_matches_a_window_by_window_count(seed: int, length: int) -> None:
    rng = np.random.default_rng(seed)
    parts = []
    for sid in range(4):  # series of consecutive buckets with holes and shares missing
        t = np.flatnonzero(rng.random(rng.integers(1, 160)) > 0.04) + 500_000
        share = rng.uniform(0.2, 0.8, len(t))
        share[rng.random(len(t)) < 0.02] = np.nan
        parts.append((np.full(len(t), sid), t, share))
    sid, t, share = (np.concatenate(column) for column in zip(*parts, strict=True))
    rows = pa.table({"sid": sid, "t": t, "buy_share": pa.array(share, from_pandas=True)})

    out = with_hull_momentum(rows, length)

    assert out["t"].to_pylist() == t.tolist()
    for number, (_, series_t, series_share) in enumerate(parts):
        change, momentum = hull_on_a_grid(series_t, series_share, length)
        mine = sid == number
        got_change = out["buy_change"].to_numpy(zero_copy_only=False)[mine]
        got_momentum = out["momentum"].to_numpy(zero_copy_only=False)[mine]
        np.testing.assert_allclose(got_change, change, rtol=1e-12, atol=1e-15, equal_nan=True)
        np.testing.assert_allclose(got_momentum, momentum, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert out["momentum"].null_count < len(t)  # some windows are whole
