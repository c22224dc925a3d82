"""Derived tables against an independent recomputation on a small hand-made warehouse.

The expected values are computed here in plain pandas/numpy from the same input rows (never by
running the table's SQL again), then compared row by row. The hand-made warehouse has gaps, a
coin listed late, an exchange holding two instruments for one coin, zero short shares (ratio
NULL), a constant series, a coin outside the universe, an excluded alt, candles with no taker
volume, flat and zero-volume candles and partial buckets.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    DagsterInstance,
    build_asset_check_context,
    materialize,
)

from assets.analytics import DERIVED_ASSETS
from assets.analytics_checks import (
    ANALYTICS_CHECKS,
    alt_average_counts_and_means,
    btc_ls_one_row_per_bucket,
    candle_flow_shares_valid,
    cross_exchange_counts_valid,
    divergence_patterns_valid,
    heatmap_matrix_cells_consistent,
    signal_zones_consistent,
)
from pipelines import analytics
from pipelines.analytics import DERIVED_TABLES, AnalyticsSettings, refresh, refresh_all
from pipelines.resources import PipelineSettings
from pipelines.rolling import with_trailing_sums
from pipelines.universe import Universe
from pipelines.warehouse import connect

START = pd.Timestamp("2024-03-01 00:00")
HOURS = 240  # ten days of 1h buckets
PERIOD_HOURS = {"1h": 1, "4h": 4, "1d": 24}
PERIOD_MINUTES = {"5m": 5, **{period: 60 * hours for period, hours in PERIOD_HOURS.items()}}
UNIVERSE = Universe(coins=("BTC", "ETH", "SOL", "DOGE", "PEPE", "XRP"), alt_exclusions=("XRP",))
SETTINGS = AnalyticsSettings(
    lookback_days=3,
    min_history=5,
    zone_lookback_days=4,
    zone_lower_pct=0.2,
    zone_upper_pct=0.8,
    zone_min_history=12,
    divergence_margin=0.1,
    divergence_zscore_gap=1.5,
    divergence_side_zscore=0.8,
    flow_momentum_length=9,
    flow_extreme_share=0.75,
)
# From the SPEC's source table, not from the code: who publishes both top kinds.
TOP_PAIR_EXCHANGES = {"binance", "okx", "bitget", "gate", "htx"}
# ... and who publishes both top_position (whales) and global_account (the crowd).
WHALE_CROWD_EXCHANGES = {"binance", "okx", "bitget", "gate"}
AGAINST = ("whales_long_crowd_short", "whales_short_crowd_long")
PUBLISHERS = {
    "global_account": 5,
    "top_account": 5,
    "top_position": 5,
    "taker_volume": 4,
}
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

# (exchange, metric kinds, coins)
LS_FEEDS = [
    ("binance", ("global_account", "top_account", "top_position"), ("BTC", "ETH", "SOL", "DOGE")),
    ("binance", ("global_account", "top_account", "top_position"), ("XRP", "ZZZ")),
    ("bybit", ("global_account",), ("BTC", "ETH", "SOL")),
    ("htx", ("top_account", "top_position"), ("BTC", "ETH", "SOL")),
    ("okx", ("global_account",), ("BTC", "ETH")),
]
KLINE_COINS = {
    "binance": ("BTC", "ETH", "SOL", "DOGE", "XRP"),
    "bybit": ("BTC", "ETH", "SOL", "LINK"),  # LINK: candles but no L/S feed
    "okx": ("BTC", "ETH"),
    "htx": ("BTC", "ETH", "SOL"),
}


# ----------------------------------------------------------------------------- the input rows


@dataclass
class Inputs:
    ls: pd.DataFrame
    klines: pd.DataFrame
    oi: pd.DataFrame
    instruments: pd.DataFrame


def _ls_rows(
    exchange: str,
    coin: str,
    instrument: str,
    metric: str,
    period: str,
    buckets: np.ndarray,
    ratios: np.ndarray,
) -> pd.DataFrame:
    ts = START + pd.to_timedelta(buckets * PERIOD_HOURS[period], unit="h")
    finite = np.isfinite(ratios)
    ratio = np.where(finite, ratios, np.nan)
    safe = np.where(finite, ratios, 0.0)
    long_share = np.where(finite, safe / (1 + safe), 1.0)  # inf: zero short share
    return pd.DataFrame(
        {
            "exchange": exchange,
            "coin": coin,
            "instrument": instrument,
            "metric": metric,
            "period": period,
            "ts": ts,
            "long_share": long_share,
            "short_share": 1 - long_share,
            "ratio": ratio,
            "fetched_at": START,
        }
    )


def make_inputs(seed: int = 20240301) -> Inputs:
    rng = np.random.default_rng(seed)
    frames: list[pd.DataFrame] = []
    for exchange, metrics, coins in LS_FEEDS:
        for metric in metrics:
            for coin in coins:
                for period in ("1h", "4h"):
                    n = HOURS // PERIOD_HOURS[period]
                    buckets = np.arange(n)
                    if exchange == "okx" and coin == "ETH":
                        ratios = np.full(n, 1.5)  # a constant series: no spread, no z-score
                    else:
                        base = rng.normal(0, 0.3)
                        ratios = np.exp(base + 0.1 * np.cumsum(rng.normal(0, 1, n)))
                        ratios[rng.random(n) < 0.02] = np.inf  # zero short share: ratio NULL
                    keep = rng.random(n) > 0.06  # gaps
                    instrument = f"{coin}USDT"
                    frames.append(
                        _ls_rows(
                            exchange,
                            coin,
                            instrument,
                            metric,
                            period,
                            buckets[keep],
                            ratios[keep],
                        )
                    )
    # PEPE on binance: listed late, and two instruments (1000PEPEUSDT is the universe one).
    for metric in ("global_account", "top_account", "top_position"):
        for period in ("1h", "4h"):
            step = PERIOD_HOURS[period]
            late = np.arange(100 // step, HOURS // step)
            earlier = np.arange(80 // step, HOURS // step)
            frames.append(
                _ls_rows(
                    "binance",
                    "PEPE",
                    "1000PEPEUSDT",
                    metric,
                    period,
                    late,
                    np.exp(rng.normal(0.2, 0.3, len(late))),
                )
            )
            frames.append(
                _ls_rows(
                    "binance",
                    "PEPE",
                    "PEPEUSDT",
                    metric,
                    period,
                    earlier,
                    np.exp(rng.normal(-0.2, 0.3, len(earlier))),
                )
            )
    ls = pd.concat(frames, ignore_index=True)

    klines = pd.concat(
        [
            _candles(rng, exchange, coin, f"{coin}USDT")
            for exchange, coins in KLINE_COINS.items()
            for coin in coins
        ]
        + [
            _candles(rng, "binance", "PEPE", "1000PEPEUSDT"),
            _candles(rng, "binance", "PEPE", "PEPEUSDT"),
        ],
        ignore_index=True,
    )

    oi_frames = []
    for exchange, coins in KLINE_COINS.items():
        if exchange == "okx":
            continue  # okx: no open interest at all
        for coin in coins:
            for period in ("1h", "4h"):
                n = HOURS // PERIOD_HOURS[period]
                keep = rng.random(n) > 0.2
                ts = START + pd.to_timedelta(np.arange(n)[keep] * PERIOD_HOURS[period], unit="h")
                amount = rng.uniform(1e3, 1e4, keep.sum())
                value = amount * rng.uniform(50, 150, keep.sum())
                if exchange == "bybit":
                    value[:] = np.nan  # base units only: value = OI x close
                oi_frames.append(
                    pd.DataFrame(
                        {
                            "exchange": exchange,
                            "coin": coin,
                            "instrument": f"{coin}USDT",
                            "period": period,
                            "ts": ts,
                            "open_interest": amount,
                            "open_interest_value": value,
                            "fetched_at": START,
                        }
                    )
                )
    oi = pd.concat(oi_frames, ignore_index=True)
    instruments = pd.DataFrame(
        {
            "exchange": ["binance", "binance", "binance"],
            "instrument": ["1000PEPEUSDT", "PEPEUSDT", "BTCUSDT"],
            "coin": ["PEPE", "PEPE", "BTC"],
            "base_asset": ["1000PEPE", "PEPE", "BTC"],
            "multiplier": [1000, 1, 1],
            "in_universe": [True, False, True],
            "first_seen": START,
            "last_seen": START,
        }
    )
    return Inputs(ls, klines, oi, instruments)


def _candles(rng: np.random.Generator, exchange: str, coin: str, instrument: str) -> pd.DataFrame:
    frames = []
    # Bybit ETH also has 5m candles over the last two days (the candle-flow lower timeframe):
    # its 1h flow there comes from them; the 5m candles themselves get no row.
    finer = ("5m",) if (exchange, coin) == ("bybit", "ETH") else ()
    for period in ("1h", "4h", "1d", *finer):
        n = HOURS * 60 // PERIOD_MINUTES[period]
        keep = rng.random(n) > (0.08 if period == "1h" else 0.0)  # partial 4h / 1d buckets
        if period == "1h":
            keep[24:36] = False  # day 2: half its hours missing -> 1d from 4h candles
        if period == "5m":
            keep[: n - 2 * 288] = False
        buckets = np.arange(n)[keep]
        count = len(buckets)
        open_ = rng.uniform(90, 110, count)
        close = open_ * np.exp(rng.normal(0, 0.01, count))
        flat = rng.random(count) < 0.1  # flat candles: half buying, half selling
        close[flat] = open_[flat]
        volume = rng.uniform(10, 100, count)
        volume[rng.random(count) < 0.03] = 0.0  # no trades
        taker = volume * rng.uniform(0.2, 0.8, count) if exchange == "binance" else np.nan
        frames.append(
            pd.DataFrame(
                {
                    "exchange": exchange,
                    "coin": coin,
                    "instrument": instrument,
                    "period": period,
                    "ts": START + pd.to_timedelta(buckets * PERIOD_MINUTES[period], unit="min"),
                    "open": open_,
                    "high": np.maximum(open_, close) + 1,
                    "low": np.minimum(open_, close) - 1,
                    "close": close,
                    "volume": volume,
                    "quote_volume": volume * close,
                    "taker_buy_volume": taker,
                    "fetched_at": START,
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    if exchange == "binance" and coin == "SOL":
        # Binance SOL 1h without taker buys: falls back to nothing (no finer candles), and
        # SOL 4h without taker buys: falls back to up-candle volume of its 1h candles.
        frame.loc[frame["period"].isin(["1h", "4h"]), "taker_buy_volume"] = np.nan
    return frame


def load(path: Path, inputs: Inputs) -> None:
    with connect(path) as conn:
        for table, frame in (
            ("ls_ratio", inputs.ls),
            ("klines", inputs.klines),
            ("open_interest", inputs.oi),
            ("instruments", inputs.instruments),
        ):
            conn.register("incoming", frame)
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
            conn.unregister("incoming")


def build_warehouse(path: Path, inputs: Inputs | None = None) -> Inputs:
    """A hand-made warehouse with every derived table refreshed (used by test_export too)."""
    inputs = inputs or make_inputs()
    load(path, inputs)
    with connect(path) as conn:
        refresh_all(conn, UNIVERSE, SETTINGS)
    return inputs


@dataclass
class Built:
    path: Path
    inputs: Inputs

    def table(self, name: str) -> pd.DataFrame:
        with duckdb.connect(str(self.path), read_only=True) as conn:
            conn.execute("SET TimeZone='UTC'")
            return conn.sql(f"SELECT * FROM {name}").df()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    path = tmp_path_factory.mktemp("analytics") / "x.duckdb"
    yield Built(path, build_warehouse(path))


# ------------------------------------------------------------- independent recomputation


def _ln(values: pd.Series) -> np.ndarray:
    v = values.to_numpy(dtype=float)
    out = np.full(len(v), np.nan)
    positive = v > 0
    out[positive] = np.log(v[positive])
    return out


def _trailing(ts: np.ndarray, x: np.ndarray, days: int) -> Iterator[tuple[int, np.ndarray]]:
    """For each row i: the non-NaN values with ts[i] - days <= ts < ts[i]."""
    width = np.timedelta64(days, "D")
    for i in range(len(ts)):
        mask = (ts >= ts[i] - width) & (ts < ts[i]) & ~np.isnan(x)
        yield i, x[mask]


def one_row_per_coin(ls: pd.DataFrame, instruments: pd.DataFrame) -> pd.DataFrame:
    preferred = instruments.set_index(["exchange", "instrument"])["in_universe"]
    rows = ls.copy()
    rows["pref"] = [
        not bool(preferred.get((e, i), False))
        for e, i in zip(rows["exchange"], rows["instrument"], strict=True)
    ]
    rows = rows.sort_values(["pref", "instrument"])
    return rows.drop_duplicates(["exchange", "metric", "period", "coin", "ts"], keep="first")


def expected_heatmap(inputs: Inputs, settings: AnalyticsSettings) -> pd.DataFrame:
    cells = one_row_per_coin(inputs.ls, inputs.instruments)
    out = []
    for _, series in cells.groupby(["exchange", "metric", "period", "coin"]):
        series = series.sort_values("ts")
        x = _ln(series["ratio"])
        ts = series["ts"].to_numpy()
        z = np.full(len(series), np.nan)
        n = np.zeros(len(series), dtype=int)
        for i, history in _trailing(ts, x, settings.lookback_days):
            n[i] = len(history)
            # "no spread" = all equal (np.std of equal values can be 1e-17, not 0)
            if len(history) >= settings.min_history and np.ptp(history) > 0:
                z[i] = (x[i] - history.mean()) / np.std(history, ddof=1)
        out.append(
            series[["exchange", "metric", "period", "coin", "ts", "ratio", "instrument"]].assign(
                ln_ratio=x, zscore=z, zscore_history=n
            )
        )
    return pd.concat(out, ignore_index=True)


def expected_btc_ls(inputs: Inputs, heat: pd.DataFrame) -> pd.DataFrame:
    btc = heat[heat["coin"] == "BTC"]
    shares = inputs.ls[
        ["exchange", "instrument", "metric", "period", "ts", "long_share", "short_share"]
    ]
    closes = inputs.klines[["exchange", "instrument", "period", "ts", "close"]]
    out = btc.merge(shares, on=["exchange", "instrument", "metric", "period", "ts"], how="left")
    out = out.merge(closes, on=["exchange", "instrument", "period", "ts"], how="left")
    return out.rename(columns={"close": "price_close"})[
        ["exchange", "metric", "period", "ts", "ratio", "long_share", "short_share", "price_close"]
    ]


def expected_alt_average(heat: pd.DataFrame, universe: Universe) -> pd.DataFrame:
    alts = [c for c in universe.coins if c != "BTC" and c not in universe.alt_exclusions]
    rows = heat[heat["coin"].isin(alts) & (heat["ratio"] > 0)]
    out = (
        rows.groupby(["exchange", "metric", "period", "ts"])
        .agg(
            alt_mean_ratio=("ratio", lambda r: float(np.exp(np.mean(np.log(r))))),
            alt_median_ratio=("ratio", lambda r: float(np.median(r))),
            n_coins=("coin", "nunique"),
        )
        .reset_index()
    )
    btc = heat[heat["coin"] == "BTC"][["exchange", "metric", "period", "ts", "ratio"]]
    out = out.merge(btc, on=["exchange", "metric", "period", "ts"], how="left")
    return out.rename(columns={"ratio": "btc_ratio"})


def expected_zones(
    btc: pd.DataFrame, alt: pd.DataFrame, settings: AnalyticsSettings
) -> pd.DataFrame:
    series = pd.concat(
        [
            btc[["exchange", "metric", "period", "ts", "ratio"]]
            .rename(columns={"ratio": "value"})
            .assign(series="btc"),
            alt[["exchange", "metric", "period", "ts", "alt_mean_ratio"]]
            .rename(columns={"alt_mean_ratio": "value"})
            .assign(series="alt_avg"),
        ],
        ignore_index=True,
    )
    out = []
    for _, one in series.groupby(["exchange", "metric", "period", "series"]):
        one = one.sort_values("ts").copy()
        x = _ln(one["value"])
        ts = one["ts"].to_numpy()
        lo, hi, z = (np.full(len(one), np.nan) for _ in range(3))
        n = np.zeros(len(one), dtype=int)
        for i, history in _trailing(ts, x, settings.zone_lookback_days):
            n[i] = len(history)
            if len(history) >= settings.zone_min_history:
                lo[i] = np.quantile(history, settings.zone_lower_pct)
                hi[i] = np.quantile(history, settings.zone_upper_pct)
                if len(history) > 1 and np.ptp(history) > 0:
                    z[i] = (x[i] - history.mean()) / np.std(history, ddof=1)
        zone = [
            "upper" if v > h else "lower" if v < low else None
            for v, low, h in zip(x, lo, hi, strict=True)
        ]
        out.append(
            one.assign(
                ln_value=x,
                ln_lower_band=lo,
                ln_upper_band=hi,
                lower_band=np.exp(lo),
                upper_band=np.exp(hi),
                zone=pd.Series(zone, index=one.index, dtype=object),
                history_n=n,
                zscore=z,
            )
        )
    zones = pd.concat(out, ignore_index=True)
    key = ["exchange", "metric", "period", "ts"]
    same = zones.groupby(key)["zone"].transform(
        lambda z: bool(z.notna().sum() == 2 and z.nunique() == 1)
    )
    zones["market_wide"] = same.astype(bool) & zones["zone"].notna()
    return zones


def _side(z: float, k: float) -> str | None:
    """Where a series stands against its own history: beyond +-k of its z-score, or neither."""
    if z != z:
        return None
    if z > k:
        return "long"
    if z < -k:
        return "short"
    return "neutral"


COIN_PATTERNS = {
    ("long", "short"): "cautious_whale",
    ("short", "long"): "whale_against_trend",
    ("long", "long"): "consensus_long",
    ("short", "short"): "consensus_short",
}
WHALE_CROWD_PATTERNS = {
    ("long", "short"): "whales_long_crowd_short",
    ("short", "long"): "whales_short_crowd_long",
    ("long", "long"): "whales_and_crowd_long",
    ("short", "short"): "whales_and_crowd_short",
}


def _paired(
    heat: pd.DataFrame,
    exchanges: set[str],
    kinds: dict[str, str],
    sides: tuple[str, str],
    patterns: dict[tuple[str, str], str],
    k: float,
) -> pd.DataFrame:
    """One row per exchange, period, coin and bucket where either kind has a row: both kinds'
    ratios and z-scores side by side (named by `kinds`), their sides and the pattern."""
    rows = heat[heat["metric"].isin(list(kinds)) & heat["exchange"].isin(exchanges)]
    wide = rows.set_index(["exchange", "period", "coin", "ts", "metric"])[["ratio", "zscore"]]
    wide = wide.unstack("metric")
    out = pd.DataFrame(index=wide.index)
    for kind, name in kinds.items():
        for column in ("ratio", "zscore"):  # a kind without any row: all NaN
            out[f"{name}_{column}"] = wide.get((column, kind), np.nan)
    out = out.reset_index()
    first, second = sides
    out[f"{first}_side"] = [_side(z, k) for z in out[f"{first}_zscore"]]
    out[f"{second}_side"] = [_side(z, k) for z in out[f"{second}_zscore"]]
    out["pattern"] = [
        patterns.get((a, b))
        for a, b in zip(out[f"{first}_side"], out[f"{second}_side"], strict=True)
    ]
    return out.assign(side_zscore_threshold=k)


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    """pattern_since and pattern_buckets, walking each series bucket by bucket: a run goes on
    while the pattern stays the same (not None) and the previous row is one period earlier."""
    since: dict[int, object] = {}
    length: dict[int, object] = {}
    series = ["scope", "exchange", "metric", "period", "coin"]
    for (_, _, _, period, _), one in frame.fillna({"coin": ""}).groupby(series):
        step = pd.Timedelta(hours=PERIOD_HOURS[period])
        previous: tuple[object, pd.Timestamp] | None = None
        start, n = None, 0
        for index, pattern, ts in one.sort_values("ts")[["pattern", "ts"]].itertuples():
            if pattern is None or pattern != pattern:
                start, n = None, 0
            elif previous is not None and previous == (pattern, ts - step):
                n += 1
            else:
                start, n = ts, 1
            since[index], length[index] = start, (n or None)
            previous = (pattern, ts)
    return frame.assign(
        pattern_since=pd.Series(since, dtype="datetime64[ns]"),
        pattern_buckets=pd.Series(length, dtype="float"),
    )


def expected_divergence(
    heat: pd.DataFrame, zones: pd.DataFrame, settings: AnalyticsSettings
) -> pd.DataFrame:
    k = settings.divergence_side_zscore
    coin = _paired(
        heat,
        TOP_PAIR_EXCHANGES,
        {"top_account": "account", "top_position": "position"},
        ("account", "position"),
        COIN_PATTERNS,
        k,
    ).assign(scope="coin", metric="top_account/top_position")
    whale = _paired(
        heat,
        WHALE_CROWD_EXCHANGES,
        {"top_position": "whale", "global_account": "crowd"},
        ("whale", "crowd"),
        WHALE_CROWD_PATTERNS,
        k,
    ).assign(scope="whale_crowd", metric="top_position/global_account")

    margin = settings.divergence_margin
    key = ["exchange", "metric", "period", "ts"]
    value = zones.set_index([*key, "series"])["value"].unstack("series")
    z = zones.set_index([*key, "series"])["zscore"].unstack("series")
    pair = pd.DataFrame(
        {
            "btc_ratio": value.get("btc"),
            "alt_ratio": value.get("alt_avg"),
            "btc_zscore": z.get("btc"),
            "alt_zscore": z.get("alt_avg"),
        }
    ).reset_index()
    long_t, short_t = 1 + margin, 1 / (1 + margin)
    patterns: list[str | None] = []
    for b, a, bz, az in pair[["btc_ratio", "alt_ratio", "btc_zscore", "alt_zscore"]].itertuples(
        index=False
    ):
        if b > long_t and a < short_t:
            patterns.append("btc_long_alts_short")
        elif b < short_t and a > long_t:
            patterns.append("btc_short_alts_long")
        elif abs(bz - az) > settings.divergence_zscore_gap:
            patterns.append("zscore_divergence")
        else:
            patterns.append(None)
    pair = pair.assign(
        scope="btc_vs_alts",
        pattern=pd.Series(patterns, index=pair.index, dtype=object),
        zscore_gap=pair["btc_zscore"] - pair["alt_zscore"],
        long_threshold=long_t,
        short_threshold=short_t,
        zscore_threshold=settings.divergence_zscore_gap,
    )
    return _runs(pd.concat([coin, whale, pair], ignore_index=True))


def expected_whale_crowd_now(divergence: pd.DataFrame) -> pd.DataFrame:
    recent = divergence["ts"] >= divergence["ts"].max() - pd.Timedelta(days=2)  # a live feed
    rows = divergence[(divergence["scope"] == "whale_crowd") & recent]
    latest = rows.groupby(["exchange", "period"])["ts"].transform("max")
    return rows[(rows["ts"] == latest) & rows["pattern"].isin(AGAINST)]


def expected_cross_exchange(inputs: Inputs, heat: pd.DataFrame) -> pd.DataFrame:
    closes = inputs.klines[["exchange", "instrument", "period", "ts", "close"]]
    oi = inputs.oi.merge(closes, on=["exchange", "instrument", "period", "ts"], how="left")
    oi["oi_usd"] = oi["open_interest_value"].fillna(oi["open_interest"] * oi["close"])
    cells = heat.merge(
        oi[["exchange", "instrument", "period", "ts", "oi_usd"]],
        on=["exchange", "instrument", "period", "ts"],
        how="left",
    )
    rows = []
    for (coin, metric, period, ts), group in cells.groupby(["coin", "metric", "period", "ts"]):
        ln = group["ln_ratio"].to_numpy(dtype=float)
        z = group["zscore"].to_numpy(dtype=float)
        w = group["oi_usd"].to_numpy(dtype=float)
        use = ~np.isnan(ln) & (w > 0)
        rows.append(
            {
                "coin": coin,
                "metric": metric,
                "period": period,
                "ts": ts,
                "mean_zscore": np.mean(z[~np.isnan(z)]) if (~np.isnan(z)).any() else np.nan,
                "oi_weighted_ln_ratio": np.sum(w[use] * ln[use]) / np.sum(w[use])
                if use.any()
                else np.nan,
                "n_exchanges": int((~np.isnan(ln)).sum()),
                "n_exchanges_zscore": int((~np.isnan(z)).sum()),
                "n_exchanges_with_oi": int(use.sum()),
                "oi_usd_total": np.sum(w[use]) if use.any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


PERIOD_SECONDS = {"5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}


def expected_candle_flow(inputs: Inputs) -> pd.DataFrame:
    candles = one_row_per_coin(inputs.klines.assign(metric="-"), inputs.instruments)
    k = inputs.klines
    rows = []
    for c in candles.to_dict("records"):
        method, buy, lower, n, expected = None, np.nan, None, None, None
        if c["taker_buy_volume"] == c["taker_buy_volume"] and c["volume"] > 0:
            method, buy, n, expected = "taker", c["taker_buy_volume"] / c["volume"], 1, 1
        else:
            best = None
            size = PERIOD_SECONDS[c["period"]]
            for finer, secs in PERIOD_SECONDS.items():
                if secs >= size or size % secs:
                    continue
                inside = k[
                    (k["exchange"] == c["exchange"])
                    & (k["instrument"] == c["instrument"])
                    & (k["period"] == finer)
                    & (k["ts"] >= c["ts"])
                    & (k["ts"] < c["ts"] + pd.Timedelta(seconds=size))
                ]
                total = inside["volume"].sum()
                if len(inside) == 0 or total <= 0:
                    continue
                up = inside.loc[inside["close"] > inside["open"], "volume"].sum()
                flat = inside.loc[inside["close"] == inside["open"], "volume"].sum()
                candidate = (len(inside) / (size // secs), -secs, finer, len(inside), size // secs)
                estimate = (up + 0.5 * flat) / total
                if best is None or candidate[:2] > best[0][:2]:
                    best = (candidate, estimate)
            if best is not None:
                (_, _, lower, n, expected), buy = best
                method = "up_candles"
        if c["period"] == "5m" and method is None:
            continue  # a lower timeframe only: nothing finer to estimate it from
        ok = 0 < buy < 1
        rows.append(
            {
                "exchange": c["exchange"],
                "coin": c["coin"],
                "period": c["period"],
                "ts": c["ts"],
                "buy_share": buy,
                "sell_share": 1 - buy,
                "flow_ratio": buy / (1 - buy) if ok else np.nan,
                "ln_flow_ratio": np.log(buy / (1 - buy)) if ok else np.nan,
                "method": method,
                "lower_period": lower,
                "n_candles": n,
                "expected_candles": expected,
                "volume": c["volume"],
                "instrument": c["instrument"],
            }
        )
    flow = pd.DataFrame(rows).sort_values(["exchange", "coin", "period", "ts"])
    parts, edge = [], SETTINGS.flow_extreme_share
    for (_, _, period), series in flow.groupby(["exchange", "coin", "period"]):
        # On every bucket from the first to the last: a missing candle is a NaN that breaks the
        # change and the moving averages like a candle without an estimate.
        grid = pd.date_range(
            series["ts"].min(), series["ts"].max(), freq=f"{PERIOD_SECONDS[period]}s"
        )
        shares = series.set_index("ts")["buy_share"].reindex(grid).to_numpy(dtype=float)
        change = np.concatenate([[np.nan], np.diff(shares)])
        momentum = hull(change, SETTINGS.flow_momentum_length)
        at = grid.get_indexer(series["ts"])
        buy = series["buy_share"]
        parts.append(
            series.assign(
                buy_change=change[at],
                momentum=momentum[at],
                extreme=[
                    "buyers" if b >= edge else "sellers" if 1 - b >= edge else None for b in buy
                ],
            )
        )
    return pd.concat(parts, ignore_index=True)


def weighted(x: np.ndarray, m: int) -> np.ndarray:
    """WMA: the last m values weighted 1..m (newest heaviest), NaN unless all m exist."""
    out = np.full(len(x), np.nan)
    for i in range(m - 1, len(x)):
        window = x[i - m + 1 : i + 1]
        if not np.isnan(window).any():
            out[i] = np.dot(window, np.arange(1, m + 1)) / (m * (m + 1) / 2)
    return out


def hull(x: np.ndarray, n: int) -> np.ndarray:
    """Hull moving average as Alan Hull defined it: WMA(2 WMA(n/2) - WMA(n), sqrt(n))."""
    return weighted(2 * weighted(x, n // 2) - weighted(x, n), round(np.sqrt(n)))


# --------------------------------------------------------------------------- comparing


def assert_same_rows(
    actual: pd.DataFrame, expected: pd.DataFrame, key: list[str], columns: list[str]
) -> None:
    assert len(actual) == len(expected), f"{len(actual)} rows, expected {len(expected)}"
    a = actual.copy()
    e = expected.copy()
    for frame in (a, e):
        frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[ns]")
        for column in key:
            if column != "ts":
                frame[column] = frame[column].astype(object).where(frame[column].notna(), "")
    a = a.sort_values(key).reset_index(drop=True)
    e = e.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key], e[key], check_dtype=False)
    for column in columns:
        left, right = a[column], e[column]
        if pd.api.types.is_numeric_dtype(right) and not pd.api.types.is_bool_dtype(right):
            np.testing.assert_allclose(
                left.to_numpy(dtype=float),
                right.to_numpy(dtype=float),
                rtol=1e-9,
                atol=1e-12,
                equal_nan=True,
                err_msg=column,
            )
        else:
            l_values = [None if v is None or v != v else v for v in left.tolist()]
            r_values = [None if v is None or v != v else v for v in right.tolist()]
            assert l_values == r_values, column


# ----------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def expected(built: Built) -> dict[str, pd.DataFrame]:
    heat = expected_heatmap(built.inputs, SETTINGS)
    btc = expected_btc_ls(built.inputs, heat)
    alt = expected_alt_average(heat, UNIVERSE)
    zones = expected_zones(btc, alt, SETTINGS)
    divergence = expected_divergence(heat, zones, SETTINGS)
    return {
        "heatmap_matrix": heat,
        "btc_ls": btc,
        "alt_average": alt,
        "signal_zones": zones,
        "divergence": divergence,
        "whale_crowd_now": expected_whale_crowd_now(divergence),
        "cross_exchange": expected_cross_exchange(built.inputs, heat),
        "candle_flow": expected_candle_flow(built.inputs),
    }


def test_the_fixture_has_the_awkward_cases(built: Built) -> None:
    ls = built.inputs.ls
    assert ls["ratio"].isna().sum() > 10 and (ls.loc[ls["ratio"].isna(), "short_share"] == 0).all()
    pepe = ls[(ls["coin"] == "PEPE")]
    assert pepe["instrument"].nunique() == 2 and pepe["ts"].min() > START
    per_series = ls.groupby(["exchange", "metric", "period", "instrument"])["ts"].count()
    assert (per_series < HOURS).any()  # gaps


def test_heatmap_matrix_matches_an_independent_recomputation(
    built: Built, expected: dict[str, pd.DataFrame]
) -> None:
    actual = built.table("heatmap_matrix")
    assert_same_rows(
        actual,
        expected["heatmap_matrix"],
        ["exchange", "metric", "period", "coin", "ts"],
        ["ratio", "ln_ratio", "zscore", "zscore_history", "instrument"],
    )
    assert actual["zscore"].notna().sum() > 1000
    constant = actual[(actual["exchange"] == "okx") & (actual["coin"] == "ETH")]
    assert constant["zscore"].isna().all()  # no spread, no z-score (not a huge one)


def test_heatmap_matrix_is_the_same_when_its_sums_are_worked_out_a_few_series_at_a_time(
    built: Built, expected: dict[str, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deep history is read in chunks of whole series (analytics.STEP_CHUNK_ROWS rows); chunks
    of ~100 rows split this warehouse at many series boundaries, none inside a series."""
    copy = tmp_path / "chunked.duckdb"
    shutil.copy(built.path, copy)
    chunks: list[int] = []

    def counted(rows: pa.Table, lookback: int) -> pa.Table:
        chunks.append(rows.num_rows)
        return with_trailing_sums(rows, lookback)

    monkeypatch.setattr(analytics, "STEP_CHUNK_ROWS", 100)
    monkeypatch.setattr(analytics, "with_trailing_sums", counted)
    with connect(copy) as conn:
        refresh(conn, "heatmap_matrix", UNIVERSE, SETTINGS, full=True)
    assert len(chunks) > 20 and max(chunks) < len(expected["heatmap_matrix"]) / 10
    assert_same_rows(
        Built(copy, built.inputs).table("heatmap_matrix"),
        expected["heatmap_matrix"],
        ["exchange", "metric", "period", "coin", "ts"],
        ["ratio", "ln_ratio", "zscore", "zscore_history", "instrument"],
    )


def test_one_instrument_per_coin_the_universe_one_where_two_overlap(built: Built) -> None:
    heat = built.table("heatmap_matrix")
    pepe = heat[(heat["coin"] == "PEPE") & (heat["period"] == "1h")]
    hours = (pepe["ts"] - START) / pd.Timedelta(hours=1)
    assert set(pepe.loc[hours >= 100, "instrument"]) == {"1000PEPEUSDT"}
    assert set(pepe.loc[hours < 100, "instrument"]) == {"PEPEUSDT"}  # before the listing
    assert not pepe.duplicated(["exchange", "metric", "ts"]).any()


def test_btc_ls_matches(built: Built, expected: dict[str, pd.DataFrame]) -> None:
    actual = built.table("btc_ls")
    assert_same_rows(
        actual,
        expected["btc_ls"],
        ["exchange", "metric", "period", "ts"],
        ["ratio", "long_share", "short_share", "price_close"],
    )
    assert actual["price_close"].notna().sum() > 100 and actual["price_close"].isna().any()


def test_alt_average_matches(built: Built, expected: dict[str, pd.DataFrame]) -> None:
    actual = built.table("alt_average")
    assert_same_rows(
        actual,
        expected["alt_average"],
        ["exchange", "metric", "period", "ts"],
        ["alt_mean_ratio", "alt_median_ratio", "n_coins", "btc_ratio"],
    )
    binance = actual[(actual["exchange"] == "binance") & (actual["period"] == "1h")]
    # ETH, SOL, DOGE, PEPE at most: BTC, excluded XRP and ZZZ (not in the universe) never count
    assert binance["n_coins"].max() == 4
    hours = (binance["ts"] - START) / pd.Timedelta(hours=1)
    assert binance.loc[hours < 80, "n_coins"].max() == 3  # PEPE not listed yet


def test_signal_zones_match(built: Built, expected: dict[str, pd.DataFrame]) -> None:
    actual = built.table("signal_zones")
    assert_same_rows(
        actual,
        expected["signal_zones"],
        ["exchange", "metric", "period", "series", "ts"],
        [
            "value",
            "ln_value",
            "ln_lower_band",
            "ln_upper_band",
            "lower_band",
            "upper_band",
            "zone",
            "market_wide",
            "history_n",
            "zscore",
        ],
    )
    assert set(actual["zone"].dropna()) == {"upper", "lower"}
    assert actual["market_wide"].any()
    # no bands before the minimum history, bands from it on
    assert actual.loc[actual["history_n"] < SETTINGS.zone_min_history, "ln_lower_band"].isna().all()
    assert (
        actual.loc[actual["history_n"] >= SETTINGS.zone_min_history, "ln_lower_band"].notna().all()
    )


def test_divergence_matches(built: Built, expected: dict[str, pd.DataFrame]) -> None:
    actual = built.table("divergence")
    assert_same_rows(
        actual,
        expected["divergence"],
        ["scope", "exchange", "metric", "period", "coin", "ts"],
        [
            "account_ratio",
            "position_ratio",
            "account_zscore",
            "position_zscore",
            "account_side",
            "position_side",
            "whale_ratio",
            "crowd_ratio",
            "whale_zscore",
            "crowd_zscore",
            "whale_side",
            "crowd_side",
            "btc_ratio",
            "alt_ratio",
            "btc_zscore",
            "alt_zscore",
            "zscore_gap",
            "long_threshold",
            "short_threshold",
            "zscore_threshold",
            "side_zscore_threshold",
            "pattern",
            "pattern_since",
            "pattern_buckets",
        ],
    )
    scopes = {scope: rows for scope, rows in actual.groupby("scope")}
    assert set(scopes["coin"]["exchange"]) == {"binance", "htx"}
    # okx publishes both kinds but the fixture holds only its crowd: rows, never a pattern
    assert set(scopes["whale_crowd"]["exchange"]) == {"binance", "okx"}
    okx = scopes["whale_crowd"][scopes["whale_crowd"]["exchange"] == "okx"]
    assert okx["pattern"].isna().all() and okx["crowd_ratio"].notna().any()
    for scope in ("coin", "whale_crowd"):
        rows = scopes[scope]
        assert np.allclose(rows["side_zscore_threshold"], 0.8)
        assert rows[["long_threshold", "short_threshold", "zscore_threshold"]].isna().all().all()
        assert rows["pattern"].nunique() == 4  # every pattern occurs
        assert (rows["pattern_buckets"] > 2).any()  # and runs longer than two buckets
    assert np.allclose(scopes["btc_vs_alts"]["long_threshold"], 1.1)
    assert scopes["btc_vs_alts"]["side_zscore_threshold"].isna().all()
    # the new rule differs from the old band around 1: ratios above 1.1 that read short
    coin = scopes["coin"]
    assert ((coin["account_ratio"] > 1.1) & (coin["account_side"] == "short")).any()


def test_whale_crowd_now_matches(built: Built, expected: dict[str, pd.DataFrame]) -> None:
    actual = built.table("whale_crowd_now")
    assert_same_rows(
        actual,
        expected["whale_crowd_now"],
        ["exchange", "period", "coin", "ts"],
        [
            "pattern",
            "pattern_since",
            "pattern_buckets",
            "whale_ratio",
            "crowd_ratio",
            "whale_zscore",
            "crowd_zscore",
            "side_zscore_threshold",
        ],
    )
    assert len(actual) > 0


def test_cross_exchange_matches(built: Built, expected: dict[str, pd.DataFrame]) -> None:
    actual = built.table("cross_exchange")
    assert_same_rows(
        actual,
        expected["cross_exchange"],
        ["coin", "metric", "period", "ts"],
        [
            "mean_zscore",
            "oi_weighted_ln_ratio",
            "n_exchanges",
            "n_exchanges_zscore",
            "n_exchanges_with_oi",
            "oi_usd_total",
        ],
    )
    btc = actual[(actual["coin"] == "BTC") & (actual["metric"] == "global_account")]
    assert btc["n_exchanges"].max() == 3 and btc["n_exchanges_with_oi"].max() == 2  # okx: no OI
    for metric, n in PUBLISHERS.items():
        assert (actual.loc[actual["metric"] == metric, "n_exchanges"] <= n).all()


def test_candle_flow_matches(built: Built, expected: dict[str, pd.DataFrame]) -> None:
    actual = built.table("candle_flow")
    assert_same_rows(
        actual,
        expected["candle_flow"],
        ["exchange", "coin", "period", "ts"],
        [
            "buy_share",
            "sell_share",
            "flow_ratio",
            "ln_flow_ratio",
            "buy_change",
            "momentum",
            "extreme",
            "method",
            "lower_period",
            "n_candles",
            "expected_candles",
            "volume",
            "instrument",
        ],
    )
    by = {
        key: set(group["method"].dropna()) for key, group in actual.groupby(["exchange", "period"])
    }
    assert by["binance", "1h"] == {"taker"}
    assert by["bybit", "1h"] == {"up_candles"}  # ETH's last two days, from its 5m candles
    bybit_1h = actual[(actual["exchange"] == "bybit") & (actual["period"] == "1h")]
    assert set(bybit_1h.loc[bybit_1h["method"].notna(), "lower_period"]) == {"5m"}
    assert set(bybit_1h.loc[bybit_1h["method"].notna(), "coin"]) == {"ETH"}  # the others: NULL
    assert "5m" not in set(actual["period"])  # 5m candles without taker volume get no row
    assert actual["momentum"].notna().sum() > 100 and actual["extreme"].notna().sum() > 10
    assert by["bybit", "4h"] == {"up_candles"} and by["bybit", "1d"] == {"up_candles"}
    day2 = actual[
        (actual["exchange"] == "bybit")
        & (actual["period"] == "1d")
        & (actual["ts"] == START + pd.Timedelta(days=1))
    ]
    assert (day2["lower_period"] == "4h").all()  # half the hours missing: 4h candles win
    assert "LINK" in set(actual["coin"])  # candles without an L/S feed


# ------------------------------------------------------------ targeted: zones and patterns


def _series_rows(
    exchange: str, coin: str, metric: str, ratios: list[float], period: str = "1d"
) -> pd.DataFrame:
    return _ls_rows(
        exchange, coin, f"{coin}USDT", metric, period, np.arange(len(ratios)), np.array(ratios)
    )


def _refresh(path: Path, ls: pd.DataFrame, settings: AnalyticsSettings) -> None:
    empty = Inputs(
        ls,
        pd.DataFrame(columns=["exchange", "coin", "instrument", "period", "ts", "fetched_at"]),
        pd.DataFrame(columns=["exchange", "coin", "instrument", "period", "ts", "fetched_at"]),
        pd.DataFrame(
            columns=[
                "exchange",
                "instrument",
                "coin",
                "base_asset",
                "multiplier",
                "in_universe",
                "first_seen",
                "last_seen",
            ]
        ),
    )
    load(path, empty)
    with connect(path) as conn:
        refresh_all(
            conn,
            UNIVERSE,
            settings,
            (
                "heatmap_matrix",
                "btc_ls",
                "alt_average",
                "signal_zones",
                "divergence",
                "whale_crowd_now",
            ),
        )


def test_zones_at_the_minimum_history_and_exactly_on_the_bands(tmp_path: Path) -> None:
    # Eleven days of history with ln values 0.0 .. 1.0 (shuffled); with 11 points the 10th and
    # 90th percentiles fall exactly on the 2nd and 10th smallest (0.1 and 0.9).
    history = [float(np.exp(v / 10)) for v in (5, 0, 9, 3, 10, 1, 7, 2, 8, 4, 6)]
    on_upper, on_lower = float(np.exp(0.9)), float(np.exp(0.1))
    cases = {
        "binance": on_upper,  # exactly on the upper band: no zone
        "okx": on_upper * 1.000001,  # just above: upper
        "gate": on_lower,  # exactly on the lower band: no zone
        "bitget": on_lower / 1.000001,  # just below: lower
    }
    ls = pd.concat(
        [
            _series_rows(exchange, "BTC", "global_account", [*history, today])
            for exchange, today in cases.items()
        ]
        # ETH mirrors BTC, so the alt average (ETH alone) is in the same zone: market-wide
        + [
            _series_rows(exchange, "ETH", "global_account", [*history, today])
            for exchange, today in cases.items()
        ]
        # bybit: an extreme value on day 10, one short of the minimum history: no zone yet
        + [_series_rows("bybit", "BTC", "global_account", [*history[:10], 100.0, 100.0])],
        ignore_index=True,
    )
    settings = AnalyticsSettings(
        zone_lookback_days=30, zone_min_history=11, zone_lower_pct=0.1, zone_upper_pct=0.9
    )
    path = tmp_path / "edges.duckdb"
    _refresh(path, ls, settings)
    with duckdb.connect(str(path), read_only=True) as conn:
        zones = conn.sql(
            "SELECT exchange, series, history_n, ln_lower_band, ln_upper_band, zone, market_wide "
            "FROM signal_zones WHERE ts = TIMESTAMP '2024-03-12'"
        ).df()
        early = conn.sql(
            "SELECT history_n, zone, ln_upper_band FROM signal_zones "
            "WHERE exchange = 'bybit' AND series = 'btc' AND ts = TIMESTAMP '2024-03-11'"
        ).df()
    btc = zones[zones["series"] == "btc"].set_index("exchange")
    assert (btc.loc[list(cases), "history_n"] == 11).all()
    assert np.allclose(btc.loc[list(cases), "ln_lower_band"], 0.1)
    assert np.allclose(btc.loc[list(cases), "ln_upper_band"], 0.9)
    zone = btc["zone"].where(btc["zone"].notna(), None).to_dict()
    assert zone == {
        "binance": None,
        "okx": "upper",
        "gate": None,
        "bitget": "lower",
        "bybit": "upper",
    }
    wide = btc["market_wide"].to_dict()
    assert wide == {"binance": False, "okx": True, "gate": False, "bitget": True, "bybit": False}
    # day 10 on bybit: history of 10 < 11, so the extreme value has no band and no zone
    assert early["history_n"].tolist() == [10]
    assert early["zone"].isna().all() and early["ln_upper_band"].isna().all()


def _against_own_history(base: float, z: float, a: float = 0.1) -> list[float]:
    """Four daily ratios: ln = base - a, base, base + a (history: mean base, sample sd exactly
    a), then base + z * a, whose z-score against those three is z."""
    return [float(np.exp(base + d * a)) for d in (-1, 0, 1, z)]


def test_each_divergence_pattern(tmp_path: Path) -> None:
    m = 0.05
    high, low = float(np.log(2.0)), float(np.log(0.5))  # series that sit far from 1
    pairs = {  # coin: (top_account (base, z), top_position (base, z)) -> pattern
        "ETH": ((0.0, 2.0), (0.0, -2.0), "cautious_whale"),
        # accounts at 1.64, positions at 0.61: a band around 1 would call this cautious_whale,
        # but against their own histories the accounts fell and the positions rose
        "SOL": ((high, -2.0), (low, 2.0), "whale_against_trend"),
        "DOGE": ((0.0, 2.0), (0.0, 3.0), "consensus_long"),
        "XRP": ((0.0, -1.5), (0.0, -2.0), "consensus_short"),
        "PEPE": ((0.0, 0.5), (0.0, -2.0), None),  # accounts neutral
        "ADA": ((0.0, 1.001), (0.0, -0.999), None),  # just beyond k = 1: long; just inside
        "BTC": ((0.0, 2.0), (0.0, float("nan")), None),  # no position ratio on the day
    }
    rows = []
    for coin, (account, position, _) in pairs.items():
        account_ratios = _against_own_history(*account)
        position_ratios = _against_own_history(*position)
        if position[1] != position[1]:
            position_ratios[-1] = float("nan")  # zero short share: ratio NULL
        rows.append(_series_rows("htx", coin, "top_account", account_ratios))
        rows.append(_series_rows("htx", coin, "top_position", position_ratios))
        # bybit publishes neither top kind: rows like these must not produce coin patterns
        rows.append(_series_rows("bybit", coin, "top_account", account_ratios))
        rows.append(_series_rows("bybit", coin, "top_position", position_ratios))
    # ZZZ: one reading each, 1.5 and 0.5 (long and short around 1), but no history: no sides
    rows.append(_series_rows("htx", "ZZZ", "top_account", [1.5]))
    rows.append(_series_rows("htx", "ZZZ", "top_position", [0.5]))
    # btc_vs_alts on okx global_account: BTC long vs alts short, then the reverse
    rows.append(_series_rows("okx", "BTC", "global_account", [1.3, 0.7, 1.0]))
    rows.append(_series_rows("okx", "ETH", "global_account", [0.7, 1.3, 1.0]))
    path = tmp_path / "patterns.duckdb"
    settings = AnalyticsSettings(divergence_margin=m, lookback_days=4, min_history=3)
    assert settings.divergence_side_zscore == 1.0  # the default
    _refresh(path, pd.concat(rows, ignore_index=True), settings)
    with duckdb.connect(str(path), read_only=True) as conn:
        div = conn.sql("SELECT * FROM divergence").df()
    coin = div[div["scope"] == "coin"]
    assert set(coin["exchange"]) == {"htx"}
    day3 = coin[coin["ts"] == START + pd.Timedelta(days=3)].set_index("coin")
    for name, (account, position, pattern) in pairs.items():
        got = day3.loc[name, "pattern"]
        assert (got if got == got else None) == pattern, name
        assert day3.loc[name, "account_zscore"] == pytest.approx(account[1]), name
        if position[1] == position[1]:
            assert day3.loc[name, "position_zscore"] == pytest.approx(position[1]), name
        if pattern is not None:
            assert day3.loc[name, "pattern_since"] == day3.loc[name, "ts"], name
            assert day3.loc[name, "pattern_buckets"] == 1, name
    sides = day3[["account_side", "position_side"]]
    assert sides.loc["SOL"].tolist() == ["short", "long"]
    assert day3.loc["SOL", "account_ratio"] > 1 + m and day3.loc["SOL", "position_ratio"] < 1
    assert sides.loc["PEPE"].tolist() == ["neutral", "short"]
    assert sides.loc["ADA"].tolist() == ["long", "neutral"]
    assert sides.loc["BTC", "position_side"] is None
    assert day3[["long_threshold", "short_threshold"]].isna().all().all()
    assert (day3["side_zscore_threshold"] == 1.0).all()
    first_days = coin[coin["ts"] < START + pd.Timedelta(days=3)]  # fewer than 3 earlier days
    assert first_days[["account_side", "position_side", "pattern"]].isna().all().all()
    zzz = coin[coin["coin"] == "ZZZ"]
    assert zzz["account_side"].isna().all() and zzz["pattern"].isna().all()
    regime = div[(div["scope"] == "btc_vs_alts") & (div["exchange"] == "okx")].sort_values("ts")
    assert regime["pattern"].tolist()[:2] == ["btc_long_alts_short", "btc_short_alts_long"]
    assert regime["pattern"].isna().tolist()[2]
    assert regime["pattern_since"].tolist()[:2] == regime["ts"].tolist()[:2]  # a new pattern
    assert regime["coin"].isna().all() and (regime["metric"] == "global_account").all()
    assert np.allclose(regime["long_threshold"], 1 + m)


def test_whale_crowd_runs_and_who_leans_against_the_crowd_now(tmp_path: Path) -> None:
    """Daily ln ratios in tenths, z-scores worked out by hand (lookback 4 days, so the history
    is the (up to) four days before; min_history 3; k = 1). ETH's whales:

        day  ln x10  history           mean  sample sd          z       side
         3     0     1 -1  1           1/3   sqrt(4/3)         -0.289   neutral
         4     2     1 -1  1  0        1/4   sqrt(2.75/3)       1.828   long
         5     2    -1  1  0  2        1/2   sqrt(5/3)          1.162   long
         6     1     1  0  2  2        5/4   sqrt(2.75/3)      -0.261   neutral
         7     3     0  2  2  1        5/4   sqrt(2.75/3)       1.828   long
         8     (no row: the bucket is missing)
         9     4     2  1  3           2     1                  2       long
        10     5     1  3  4           8/3   sqrt(7/3)          sqrt(7/3) = 1.528  long

    ETH's crowd is the mirror image (ln -> -ln), so its z-scores are the negatives: short where
    the whales are long. The run of whales_long_crowd_short is broken by the neutral day 6 and
    again by the missing day 8: on day 10 it holds since day 9, for 2 buckets.
    """
    eth = [1, -1, 1, 0, 2, 2, 1, 3, 4, 5]
    days = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10]
    doge = [-1, 1, -1, 0, -2, -3, -4, -5, -6, -7, -8]  # whales ever shorter, no gap

    def series(
        exchange: str, coin: str, metric: str, tenths: list[int], on: list[int]
    ) -> pd.DataFrame:
        ratios = np.exp(np.array(tenths, dtype=float) / 10)
        return _ls_rows(exchange, coin, f"{coin}USDT", metric, "1d", np.array(on), ratios)

    def whales_and_crowd(
        exchange: str, coin: str, whale: list[int], crowd: list[int], on: list[int]
    ) -> list[pd.DataFrame]:
        return [
            series(exchange, coin, "top_position", whale, on),
            series(exchange, coin, "global_account", crowd, on),
        ]

    mirror = [-v for v in eth]
    rows = [
        *whales_and_crowd("binance", "ETH", eth, mirror, days),
        *whales_and_crowd("binance", "SOL", eth, eth, days),  # both long: they agree
        *whales_and_crowd("binance", "XRP", [*eth[:-1], 3], [*mirror[:-1], -3], days),
        *whales_and_crowd("binance", "BTC", eth[:-1], mirror[:-1], days[:-1]),  # stops on day 9
        series("binance", "PEPE", "top_position", eth, days),
        series("binance", "PEPE", "global_account", mirror[:-1], days[:-1]),  # no crowd on day 10
        *whales_and_crowd("binance", "DOGE", doge, [-v for v in doge], list(range(11))),
        # htx publishes no global_account, bybit no top_position: no whale_crowd rows there
        *whales_and_crowd("htx", "ETH", eth, mirror, days),
        *whales_and_crowd("bybit", "ETH", eth, mirror, days),
        # OKX's feed stops on day 7 (whales long, crowd short that day): three days before
        # divergence's newest bucket, so OKX has no "now"
        *whales_and_crowd("okx", "ETH", eth[:8], mirror[:8], days[:8]),
    ]
    path = tmp_path / "whales.duckdb"
    _refresh(
        path, pd.concat(rows, ignore_index=True), AnalyticsSettings(lookback_days=4, min_history=3)
    )
    with duckdb.connect(str(path), read_only=True) as conn:
        div = conn.sql("SELECT * FROM divergence WHERE scope = 'whale_crowd'").df()
        now = conn.sql("SELECT * FROM whale_crowd_now").df()
    assert set(div["exchange"]) == {"binance", "okx"}
    assert (div["metric"] == "top_position/global_account").all()
    day = {d: START + pd.Timedelta(days=d) for d in range(11)}
    okx = div[div["exchange"] == "okx"].set_index("ts")
    assert okx.loc[day[7], "pattern"] == "whales_long_crowd_short"

    one = div[(div["coin"] == "ETH") & (div["exchange"] == "binance")].set_index("ts").sort_index()
    by_hand = {
        3: -1 / 3 / np.sqrt(4 / 3),
        4: 1.75 / np.sqrt(2.75 / 3),
        5: 1.5 / np.sqrt(5 / 3),
        6: -0.25 / np.sqrt(2.75 / 3),
        7: 1.75 / np.sqrt(2.75 / 3),
        9: 2.0,
        10: np.sqrt(7 / 3),
    }
    for d, z in by_hand.items():
        assert one.loc[day[d], "whale_zscore"] == pytest.approx(z), d
        assert one.loc[day[d], "crowd_zscore"] == pytest.approx(-z), d
    assert one.loc[[day[d] for d in (0, 1, 2)], "whale_zscore"].isna().all()  # < 3 earlier
    wlcs = "whales_long_crowd_short"
    runs = {  # day: (whale_side, crowd_side, pattern, since, buckets)
        3: ("neutral", "neutral", None, None, None),
        4: ("long", "short", wlcs, day[4], 1),
        5: ("long", "short", wlcs, day[4], 2),
        6: ("neutral", "neutral", None, None, None),  # breaks the run
        7: ("long", "short", wlcs, day[7], 1),
        9: ("long", "short", wlcs, day[9], 1),  # day 8 is missing: a new run
        10: ("long", "short", wlcs, day[9], 2),
    }
    for d, expected in runs.items():
        got = one.loc[day[d], ["whale_side", "crowd_side", "pattern", "pattern_since"]]
        buckets = one.loc[day[d], "pattern_buckets"]
        values = [None if pd.isna(v) else v for v in got.tolist()]
        values.append(None if pd.isna(buckets) else int(buckets))
        assert values == list(expected), d

    last = div[div["ts"] == day[10]].set_index("coin")
    assert last.loc["SOL", "pattern"] == "whales_and_crowd_long"
    assert last.loc["XRP", "whale_side"] == "neutral"  # z = (3 - 8/3) / sqrt(7/3) = 0.218
    assert last.loc["PEPE", "crowd_ratio"] != last.loc["PEPE", "crowd_ratio"]  # no crowd row
    assert last.loc["PEPE", "pattern"] is None
    assert "BTC" not in last.index
    doge_last = last.loc["DOGE"]
    assert doge_last["pattern"] == "whales_short_crowd_long"
    assert (doge_last["pattern_since"], doge_last["pattern_buckets"]) == (day[4], 7)

    # Now (day 10, binance 1d's latest bucket): ETH since day 9 and DOGE since day 4. Not SOL
    # (agreeing), XRP (neutral today), PEPE (no crowd reading today), nor BTC, whose last row
    # (day 9, against) is not today's: its state now is unknown. Nor OKX ETH, whose feed stopped.
    listed = now.set_index("coin").sort_index()
    assert listed.index.tolist() == ["DOGE", "ETH"]
    assert (listed["exchange"] == "binance").all() and (listed["period"] == "1d").all()
    assert (listed["ts"] == day[10]).all()
    assert listed["pattern"].tolist() == ["whales_short_crowd_long", wlcs]
    assert listed["pattern_since"].tolist() == [day[4], day[9]]
    assert listed["pattern_buckets"].tolist() == [7, 2]
    assert listed.loc["ETH", "whale_ratio"] == pytest.approx(np.exp(0.5))
    assert listed.loc["ETH", "crowd_ratio"] == pytest.approx(np.exp(-0.5))
    assert listed.loc["ETH", "whale_zscore"] == pytest.approx(np.sqrt(7 / 3))
    assert listed.loc["ETH", "crowd_zscore"] == pytest.approx(-np.sqrt(7 / 3))


def test_zscore_divergence_between_btc_and_alts(tmp_path: Path) -> None:
    calm = [1.0 + 0.01 * (i % 3) for i in range(12)]
    ls = pd.concat(
        [
            _series_rows("okx", "BTC", "global_account", [*calm, 1.04]),  # far above its history
            _series_rows("okx", "ETH", "global_account", [*calm, 1.0]),
        ],
        ignore_index=True,
    )
    path = tmp_path / "z.duckdb"
    settings = AnalyticsSettings(zone_min_history=10, divergence_zscore_gap=2.0)
    _refresh(path, ls, settings)
    with duckdb.connect(str(path), read_only=True) as conn:
        last = conn.sql(
            "SELECT pattern, zscore_gap, btc_zscore, alt_zscore FROM divergence "
            "WHERE scope = 'btc_vs_alts' ORDER BY ts DESC LIMIT 1"
        ).df()
    history = np.log(calm)
    z_btc = (np.log(1.04) - history.mean()) / np.std(history, ddof=1)
    z_alt = (np.log(1.0) - history.mean()) / np.std(history, ddof=1)
    assert last["btc_zscore"].iloc[0] == pytest.approx(z_btc)
    assert last["alt_zscore"].iloc[0] == pytest.approx(z_alt)
    assert last["zscore_gap"].iloc[0] > 2 and last["pattern"].iloc[0] == "zscore_divergence"


# ------------------------------------------------------------- machinery: params, checks, assets


def test_refresh_is_one_transaction_and_leaves_the_old_table_on_error(tmp_path: Path) -> None:
    path = tmp_path / "tx.duckdb"
    build_warehouse(path, make_inputs(seed=3))
    with connect(path) as conn:
        before = conn.execute("SELECT count(*) FROM signal_zones").fetchall()
        conn.execute("DROP TABLE alt_average")  # signal_zones' input is gone: refresh fails
        with pytest.raises(duckdb.Error, match="alt_average"):
            refresh(conn, "signal_zones", UNIVERSE, SETTINGS, full=True)
        assert conn.execute("SELECT count(*) FROM signal_zones").fetchall() == before


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="percentiles"):
        AnalyticsSettings(zone_lower_pct=0.9, zone_upper_pct=0.1)
    with pytest.raises(ValueError, match="non-negative"):
        AnalyticsSettings(divergence_margin=-0.1)
    with pytest.raises(ValueError, match="non-negative"):
        AnalyticsSettings(divergence_side_zscore=float("nan"))
    with pytest.raises(ValueError, match="flow_momentum_length"):
        AnalyticsSettings(flow_momentum_length=1)
    with pytest.raises(ValueError, match="flow_extreme_share"):
        AnalyticsSettings(flow_extreme_share=0.5)  # every candle would be extreme


@pytest.fixture
def checks_universe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks read the universe the refresh read from LSR_UNIVERSE: here, UNIVERSE."""
    universe = tmp_path / "universe.yaml"
    coins, excluded = ", ".join(UNIVERSE.coins), ", ".join(UNIVERSE.alt_exclusions)
    universe.write_text(f"coins: [{coins}]\nalt_exclusions: [{excluded}]\n")
    monkeypatch.setenv("LSR_UNIVERSE", str(universe))


def _run_checks(path: Path) -> dict[str, bool]:
    settings = PipelineSettings(warehouse=str(path))
    results = {}
    for check in ANALYTICS_CHECKS:
        result = check(build_asset_check_context(), settings=settings)  # type: ignore[call-arg]
        assert isinstance(result, AssetCheckResult)
        (key,) = check.check_keys
        results[key.name] = result.passed
    return results


@pytest.mark.usefixtures("checks_universe")
def test_asset_checks_pass_on_the_built_warehouse_and_catch_broken_rows(tmp_path: Path) -> None:
    path = tmp_path / "checks.duckdb"
    build_warehouse(path, make_inputs(seed=5))
    assert all(_run_checks(path).values())
    with connect(path) as conn:
        conn.execute(
            "UPDATE signal_zones SET zone = 'upper' "
            "WHERE zone IS NULL AND ln_upper_band IS NOT NULL"
        )
        conn.execute(
            "UPDATE alt_average SET n_coins = 99 WHERE ts = (SELECT min(ts) FROM alt_average)"
        )
        conn.execute(
            "INSERT INTO divergence_rows (scope, exchange, metric, period, coin, ts, "
            "first_zscore, second_zscore, side_zscore_threshold, pattern, pattern_since, "
            "pattern_buckets) VALUES ('coin', 'bybit', 'top_account/top_position', '1h', 'BTC', "
            "TIMESTAMP '2024-03-01', 2, -2, 1, 'cautious_whale', TIMESTAMP '2024-03-01', 1)"
        )
        conn.execute(
            "DELETE FROM whale_crowd_now WHERE coin = (SELECT min(coin) FROM whale_crowd_now)"
        )
        conn.execute("UPDATE cross_exchange SET n_exchanges = 6 WHERE metric = 'top_account'")
        conn.execute("UPDATE candle_flow SET buy_share = 1.5 WHERE method = 'taker'")
    failed = {name for name, ok in _run_checks(path).items() if not ok}
    assert failed == {
        "signal_zones_consistent",
        "alt_average_counts_and_means",
        "divergence_patterns_valid",
        "whale_crowd_now_matches_divergence",
        "cross_exchange_counts_valid",
        "candle_flow_shares_valid",
    }


def _violations(check: AssetChecksDefinition, path: Path) -> dict[str, int]:
    """The rules a check found broken, with their counts, as the UI shows them."""
    result = check(build_asset_check_context(), settings=PipelineSettings(warehouse=str(path)))  # type: ignore[call-arg]
    assert isinstance(result, AssetCheckResult)
    counts = result.metadata["violations"].value
    assert isinstance(counts, dict) and result.passed == (not any(counts.values()))
    return {rule: n for rule, n in counts.items() if n}


@pytest.mark.usefixtures("checks_universe")
def test_checks_compare_the_derived_tables_with_their_sources(tmp_path: Path) -> None:
    """Faults an incremental refresh could leave, each counted under its own rule: corrections
    to ls_ratio, klines, heatmap_matrix and alt_average that the tables reading them did not
    follow, rows left out (a cell, a BTC row, a candle's row, a divergence row), and a
    btc_vs_alts pattern its values do not give."""
    path = tmp_path / "sources.duckdb"
    build_warehouse(path, make_inputs(seed=5))
    first_cell = """(exchange, metric, period, coin, ts) = (SELECT (exchange, metric, period, coin,
        ts) FROM heatmap_matrix WHERE exchange = ? AND coin = ? AND metric = 'global_account'
        AND zscore IS NOT NULL ORDER BY ts LIMIT 1)"""
    with connect(path) as conn:
        conn.execute(f"UPDATE ls_ratio SET ratio = ratio * 1.01 WHERE {first_cell}", ["okx", "BTC"])
        conn.execute(f"DELETE FROM heatmap_matrix WHERE {first_cell}", ["bybit", "SOL"])
        conn.execute(
            f"UPDATE heatmap_matrix SET zscore = zscore + 0.01 WHERE {first_cell}",
            ["binance", "ETH"],
        )
        conn.execute(
            """DELETE FROM divergence_rows WHERE rowid = (SELECT min(rowid) FROM divergence_rows
               WHERE scope = 'coin' AND exchange = 'htx')"""
        )
        conn.execute("DELETE FROM btc_ls WHERE rowid = (SELECT max(rowid) FROM btc_ls)")
        conn.execute(
            """UPDATE klines SET taker_buy_volume = taker_buy_volume * 0.9
               WHERE (exchange, instrument, period, ts) = (SELECT (exchange, instrument,
                   period, ts) FROM candle_flow WHERE method = 'taker' ORDER BY ts LIMIT 1)"""
        )
        conn.execute("DELETE FROM candle_flow WHERE rowid = (SELECT max(rowid) FROM candle_flow)")
        conn.execute(
            """UPDATE alt_average SET alt_mean_ratio = alt_mean_ratio * 1.01
               WHERE rowid = (SELECT min(rowid) FROM alt_average)"""
        )
        conn.execute(
            """UPDATE divergence_rows SET pattern = 'zscore_divergence', pattern_since = ts,
                   pattern_buckets = 1
               WHERE rowid = (SELECT min(rowid) FROM divergence_rows WHERE scope = 'btc_vs_alts'
                   AND pattern IS NULL AND abs(first_zscore - second_zscore) < 1)"""
        )
    assert _violations(heatmap_matrix_cells_consistent, path) == {
        "cells_unlike_ls_ratio": 1,
        "ls_ratio_buckets_without_cell": 1,
    }
    assert _violations(btc_ls_one_row_per_bucket, path) == {"btc_cells_without_row": 1}
    assert _violations(candle_flow_shares_valid, path) == {
        "rows_unlike_klines": 1,
        "candles_without_row": 1,
    }
    # Bybit's SOL cell was one of its bucket's exchanges, and one of its bucket's alts.
    assert _violations(cross_exchange_counts_valid, path) == {"counts_unlike_heatmap_matrix": 1}
    assert _violations(alt_average_counts_and_means, path) == {"n_coins_unlike_heatmap_matrix": 1}
    # The deleted BTC row still has its zone; the alt average changed under its zone's feet.
    assert _violations(signal_zones_consistent, path) == {"values_unlike_btc_ls_or_alt_average": 2}
    assert _violations(divergence_patterns_valid, path) == {
        "values_unlike_their_sources": 1,
        "source_buckets_without_row": 1,
        "btc_vs_alts_pattern_inconsistent": 1,
    }


def test_assets_materialise_in_process_with_their_checks(tmp_path: Path) -> None:
    path = tmp_path / "assets.duckdb"
    load(path, make_inputs(seed=9))
    result = materialize(
        [*DERIVED_ASSETS, *ANALYTICS_CHECKS],
        resources={"settings": PipelineSettings(warehouse=str(path))},
        instance=DagsterInstance.ephemeral(),
        run_config=QUIET,
    )
    assert result.success
    done = {
        event.asset_key.to_user_string()
        for event in result.get_asset_materialization_events()
        if event.asset_key is not None
    }
    assert done == set(DERIVED_TABLES)
    checks = result.get_asset_check_evaluations()
    assert len(checks) == len(ANALYTICS_CHECKS) and all(c.passed for c in checks)


def test_candle_flow_momentum_and_extremes_by_hand(tmp_path: Path) -> None:
    """Six hourly taker shares worked through on paper with a Hull length of 4 (WMA of 2 and 4,
    then of round(sqrt(4)) = 2): only the sixth candle has every value its momentum needs."""
    from pipelines.warehouse import DDL_FILE

    t0 = pd.Timestamp("2026-01-01")
    shares = [0.5, 0.6, 0.8, 0.7, 0.15, 0.9]
    # changes: -, .1, .2, -.1, -.55, .75
    # WMA2 at 5th, 6th: (-.1 + 2 * -.55) / 3 = -.4, (-.55 + 2 * .75) / 3 = .31667
    # WMA4 at 5th, 6th: (.1 + .4 - .3 - 2.2) / 10 = -.2, (.2 - .2 - 1.65 + 3) / 10 = .135
    # raw = 2 * WMA2 - WMA4: -.6, .49833; momentum at 6th: (-.6 + 2 * .49833) / 3 = .13222
    with connect(tmp_path / "w.duckdb") as conn:
        conn.execute(DDL_FILE.read_text())
        for hour, share in enumerate(shares):
            conn.execute(
                "INSERT INTO klines (exchange, coin, instrument, period, ts, open, close, volume,"
                " taker_buy_volume, fetched_at) VALUES ('binance', 'BTC', 'BTCUSDT', '1h', ?,"
                " 1, 1, 100, ?, ?)",
                [t0 + pd.Timedelta(hours=hour), 100 * share, t0],
            )
        settings = AnalyticsSettings(flow_momentum_length=4, flow_extreme_share=0.8)
        refresh(conn, "candle_flow", UNIVERSE, settings)
        rows = conn.execute("SELECT momentum, extreme FROM candle_flow ORDER BY ts").fetchall()
    momentum = [m for m, _ in rows]
    assert momentum[:5] == [None] * 5
    assert momentum[5] == pytest.approx(0.132222, abs=1e-6)
    # 0.8 is on the threshold (flagged); 0.15 leaves 0.85 to sellers; 0.7 is not extreme
    assert [e for _, e in rows] == [None, None, "buyers", None, "sellers", "buyers"]


def test_btc_price_is_the_candles_of_the_chosen_btc_instrument(tmp_path: Path) -> None:
    """Every BTC candle, L/S rows or not; with two BTC instruments on one exchange, the one
    marked in_universe (as heatmap_matrix chooses)."""
    from pipelines.warehouse import DDL_FILE

    t0 = pd.Timestamp("2026-01-01")
    with connect(tmp_path / "w.duckdb") as conn:
        conn.execute(DDL_FILE.read_text())
        for instrument, chosen in (("BTCUSDT", True), ("BTCUSDC", False)):
            conn.execute(
                "INSERT INTO instruments VALUES ('binance', ?, 'BTC', 'BTC', 1, NULL, ?, ?, ?)",
                [instrument, chosen, t0, t0],
            )
            for hour in range(3):
                close = 100.0 + hour if chosen else 1.0
                conn.execute(
                    "INSERT INTO klines (exchange, coin, instrument, period, ts, close, fetched_at)"
                    " VALUES ('binance', 'BTC', ?, '1h', ?, ?, ?)",
                    [instrument, t0 + pd.Timedelta(hours=hour), close, t0],
                )
        refresh(conn, "btc_price", Universe(coins=("BTC",), alt_exclusions=()))
        rows = conn.execute(
            "SELECT exchange, period, ts, close FROM btc_price ORDER BY ts"
        ).fetchall()
    assert [(e, p, c) for e, p, _, c in rows] == [("binance", "1h", 100.0 + h) for h in range(3)]
    assert len({row[2] for row in rows}) == 3  # one row per bucket, not one per instrument
