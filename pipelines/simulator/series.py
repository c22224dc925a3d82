"""Deterministic synthetic market series.

Every value is a pure function of (exchange, coin, metric, time): no state, no randomness beyond
integer hashing (splitmix64 over blake2b seeds; Python's `hash()` is salted per process). Snapshot
series (long shares, open interest, prices) are functions of the instant, so the 1h row at 00:00
equals the 1d row at 00:00. Flow series (taker volumes) are differences of one cumulative curve,
so 24 hourly volumes add up to the daily volume exactly.

Values of the bucket that is still open may drift with the clock (`provisional`); once the bucket
has closed they never change.

The coins are not independent: like real ones they share a market (see "The market" below). A
market-wide mood moves every coin's long share, each by its loading (`Coin.crowd_beta`); a market
price factor moves every price (`Coin.price_beta`); regimes of a few days decide whether BTC's
crowd moves with the alts' or against them; crowds chase the last day's price trend; takers buy
more while the trend rises. All of it is a function of time alone, so every property above holds.

Each series has one implementation, over numpy arrays of instants (`long_shares`, `prices`...).
The one-instant functions the exchange handlers call (`long_share`, `price`...) read a cached
block of 1,024 consecutive instants on the coarsest grid (1d, 1h, 5m, 1m) the instant lies on,
so a page of rows costs microseconds rather than tens of them per value, and an instant has the
same value however it is asked for.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from pipelines.simulator.coins import coin as coin_facts
from pipelines.simulator.grid import DAY, HOUR, MINUTE

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TAU = 2 * math.pi

Octaves = tuple[tuple[float, float], ...]  # (knot spacing in minutes, amplitude)

# Share of the largest venue's volume/OI that each exchange carries.
VENUE_SHARE: dict[str, float] = {"binance": 1.0, "bybit": 0.55}
_AVG_TRADE_USD = 2_500.0


def _mix(x: int) -> int:
    """splitmix64 finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


@lru_cache(maxsize=8192)
def seed(*parts: str) -> int:
    """A stable 64-bit seed for a tuple of names."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def unit(s: int, k: int) -> float:
    """Uniform in [0, 1), fixed by (seed, integer key)."""
    return _mix(s ^ _mix(k & _MASK)) / 2**64


def signed(s: int, k: int) -> float:
    """Uniform in [-1, 1), fixed by (seed, integer key)."""
    return 2.0 * unit(s, k) - 1.0


# ---------------------------------------------------------------------------------------------
# Long/short shares

# The coin's own mood (beside the market's, see `long_shares`), shared by its metrics and venues.
_SHARE_COMMON: Octaves = ((360, 0.008), (1440, 0.012), (10080, 0.02), (43200, 0.015))
_SHARE_OWN: Octaves = ((720, 0.006), (4320, 0.012))
# Top traders lean a little shorter than the crowd, by position size even more.
_METRIC_OFFSET: dict[str, float] = {
    "global_account": 0.0,
    "top_account": -0.02,
    "top_position": -0.035,
}


def long_share(exchange: str, coin: str, metric: str, t_ms: int) -> float:
    """Share of longs (0.3..0.75) in `metric` at instant t (see `long_shares`)."""
    return _at("long_share", (exchange, coin, metric), t_ms)


def provisional(
    exchange: str, coin: str, metric: str, bucket_ms: int, length_ms: int, now_ms: int
) -> float:
    """Drift in [-1, 1] of a bucket that is still open at `now`, 0 once it has closed.

    It changes every minute and shrinks towards the close, so a re-fetch of the newest bucket
    sees a different value and the pipeline has to overwrite it.
    """
    if not bucket_ms <= now_ms < bucket_ms + length_ms:
        return 0.0
    remaining = 1.0 - (now_ms - bucket_ms) / length_ms
    return remaining * signed(
        seed("drift", exchange, coin, metric, str(bucket_ms)), now_ms // MINUTE
    )


def share_at(
    exchange: str, coin: str, metric: str, bucket_ms: int, length_ms: int, now_ms: int
) -> float:
    """The long share an exchange publishes for a bucket, provisional if the bucket is open."""
    drift = 0.01 * provisional(exchange, coin, metric, bucket_ms, length_ms, now_ms)
    return min(0.75, max(0.3, long_share(exchange, coin, metric, bucket_ms) + drift))


# ---------------------------------------------------------------------------------------------
# Prices

_PRICE_SPACINGS: tuple[int, ...] = (1, 5, 30, 240, 1440, 10080, 43200)
# Layers this slow or slower make the price's trend, without its minute-to-minute ticks: what
# crowds chase (`_chase`) and takers follow (`_taker_lean`).
_TREND_SPACING = 30


def _brownian(sigma: float, slowest: int = 1) -> Octaves:
    """Layers for a Brownian-like log price of daily volatility `sigma`: a layer with knots L
    minutes apart moves ~ sigma * sqrt(L / 1 day). Only layers at least `slowest` apart."""
    return tuple((s, 0.6 * sigma * math.sqrt(s / 1440)) for s in _PRICE_SPACINGS if s >= slowest)


@cache
def _own_sigma(coin: str) -> float:
    """Daily volatility of the coin's own price moves, beside beta x the market's: together they
    make its `daily_sigma`, but at least 30 % of it is its own (a high-beta coin moves more)."""
    facts = coin_facts(coin)
    market = facts.price_beta * _MARKET_SIGMA
    return math.sqrt(max(facts.daily_sigma**2 - market**2, (0.3 * facts.daily_sigma) ** 2))


def price(coin: str, t_ms: int, exchange: str = "") -> float:
    """USD price of one coin at instant t; exchanges differ by a tiny basis (see `prices`)."""
    return _at("price", (coin, exchange), t_ms)


# ---------------------------------------------------------------------------------------------
# Taker volumes (cumulative) and open interest

# Busy hours and days, shared by both sides (a busy hour is busy for buyers and sellers alike).
_VOLUME_CYCLES: tuple[tuple[float, float], ...] = ((1440, 0.3), (10080, 0.15))
_SIDE_CYCLE = 0.02  # each side's own slow cycle, so the sides differ beyond the trend
_VOLUME_NOISE = 0.05  # per-minute knot noise of each side
# The most of a side's mean rate that moves to the other side in any minute as takers follow the
# trend. Per-minute volume is at least 1 - 0.3 - 0.15 - 0.02 (cycles) - 2 x 0.05 (noise) - 0.35
# (lean) = 0.08 of the mean rate, so both curves keep rising.
_LEAN = 0.35


def _volume_rate(exchange: str, coin: str) -> float:
    """Taker volume per minute per side, in coins."""
    facts = coin_facts(coin)
    return facts.daily_volume * VENUE_SHARE.get(exchange, 0.5) / facts.price / 1440 / 2


def cumulative_taker(exchange: str, coin: str, side: str, t_ms: int) -> float:
    """Coins bought (side "buy") or sold by takers from the epoch to t; rises strictly.

    Straight between whole minutes, so an open bucket's volume grows smoothly with the clock.
    """
    key = (exchange, coin, side)
    m = t_ms / MINUTE
    k = math.floor(m)
    a = _at("cumulative_taker", key, k * MINUTE)
    if m == k:
        return a
    return a + (_at("cumulative_taker", key, (k + 1) * MINUTE) - a) * (m - k)


def taker_volumes(
    exchange: str, coin: str, start_ms: int, end_ms: int, now_ms: int
) -> tuple[float, float]:
    """(buy, sell) taker volume in coins over [start, end), only up to `now` if still open."""
    end = min(end_ms, now_ms)
    buy = cumulative_taker(exchange, coin, "buy", end)
    buy -= cumulative_taker(exchange, coin, "buy", start_ms)
    sell = cumulative_taker(exchange, coin, "sell", end)
    sell -= cumulative_taker(exchange, coin, "sell", start_ms)
    return max(buy, 0.0), max(sell, 0.0)


_OI_OCTAVES: Octaves = ((60, 0.01), (1440, 0.05), (10080, 0.12), (43200, 0.15))


def open_interest(exchange: str, coin: str, t_ms: int) -> float:
    """Open interest in coins at instant t (see `open_interests`)."""
    return _at("open_interest", (exchange, coin), t_ms)


def open_interest_at(
    exchange: str, coin: str, bucket_ms: int, length_ms: int, now_ms: int
) -> float:
    """Open interest an exchange publishes for a bucket, provisional if the bucket is open."""
    drift = 0.002 * provisional(exchange, coin, "open_interest", bucket_ms, length_ms, now_ms)
    return open_interest(exchange, coin, bucket_ms) * (1.0 + drift)


def circulating_supply(coin: str) -> float:
    """A plausible, constant circulating supply (coins)."""
    facts = coin_facts(coin)
    market_cap = {"BTC": 1.8e12, "ETH": 3.6e11}.get(coin)
    if market_cap is None:
        market_cap = facts.daily_volume * (5 + 35 * unit(seed("mcap", coin), 0))
    return market_cap / facts.price


# ---------------------------------------------------------------------------------------------
# Candles


@dataclass(frozen=True)
class Candle:
    open: float
    high: float
    low: float
    close: float
    volume: float  # contracts (coins / multiplier)
    quote_volume: float  # USD
    trades: int
    taker_buy_volume: float
    taker_buy_quote: float


def candle(
    exchange: str, coin: str, open_ms: int, close_ms: int, now_ms: int, multiplier: int = 1
) -> Candle:
    """OHLCV of [open, close); a candle still open at `now` shows the market so far.

    open/close are the price at the bucket edges (so a candle's close is the next one's open);
    the wicks stretch beyond them by an amount that grows with the candle's length.
    """
    end = min(close_ms, now_ms)
    first = price(coin, open_ms, exchange)
    last = price(coin, end, exchange)
    wick = 0.5 * coin_facts(coin).daily_sigma * math.sqrt(max(end - open_ms, MINUTE) / DAY)
    high = max(first, last) * math.exp(wick * unit(seed("high", exchange, coin), open_ms))
    low = min(first, last) * math.exp(-wick * unit(seed("low", exchange, coin), open_ms))
    buy, sell = taker_volumes(exchange, coin, open_ms, close_ms, now_ms)
    mid = (first + high + low + last) / 4
    quote = (buy + sell) * mid
    m = float(multiplier)
    return Candle(
        open=first * m,
        high=high * m,
        low=low * m,
        close=last * m,
        volume=(buy + sell) / m,
        quote_volume=quote,
        trades=max(1, round(quote / _AVG_TRADE_USD)),
        taker_buy_volume=buy / m,
        taker_buy_quote=buy * mid,
    )


# ---------------------------------------------------------------------------------------------
# The series over many instants at once (numpy). Integer hashing wraps in uint64 exactly as the
# masked Python arithmetic of `unit` does.

_U = np.uint64


def _mix_array(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _U(_GOLDEN)
        x = (x ^ (x >> _U(30))) * _U(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U(27))) * _U(0x94D049BB133111EB)
    return x ^ (x >> _U(31))


def _unit_array(s: int, k: np.ndarray) -> np.ndarray:
    mixed = _mix_array(_U(s) ^ _mix_array(k.astype(np.int64).astype(np.uint64)))
    return mixed.astype(np.float64) / 2.0**64


def _signed_array(s: int, k: np.ndarray) -> np.ndarray:
    return 2.0 * _unit_array(s, k) - 1.0


def _value_noise_array(s: int, x: np.ndarray) -> np.ndarray:
    k = np.floor(x)
    f = x - k
    f = f * f * (3.0 - 2.0 * f)
    a, b = _knot_pairs(s, k)
    return a + (b - a) * f


def _knot_pairs(s: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The knot values at k and k + 1. A layer slower than the instants' step has fewer
    distinct knots than instants: hash each knot once rather than twice per instant (the
    market's layers are computed again for every coin and metric)."""
    if k.size and k.max() - k.min() < k.size:
        first = k.min()
        knots = _signed_array(s, np.arange(first, k.max() + 2))
        i = (k - first).astype(np.int64)
        return knots[i], knots[i + 1]
    return _signed_array(s, k), _signed_array(s, k + 1)


def _layered_array(s: int, t_min: np.ndarray, octaves: Octaves) -> np.ndarray:
    total = np.zeros_like(t_min)
    for spacing, amplitude in octaves:
        # Seeded by spacing, not position, so a subset of the layers (the price's trend) has
        # the same values as in the whole.
        layer_seed = (s + int(spacing) * _GOLDEN) & _MASK
        total += amplitude * _value_noise_array(layer_seed, t_min / spacing)
    return total


# ---------------------------------------------------------------------------------------------
# The market: what every coin shares. Without it the coins' crowds would be independent, and
# their average over ~49 alts a flat line; real crowds and prices move together.
#
# - The mood (`market_mood`): layered noise over hours..weeks (sd ~1), seeded by name, not by
#   coin, plus a tilt drawn per regime. A coin's long share moves by _MOOD_SHARE x its
#   `crowd_beta` x the regime's loading x the mood.
# - Regimes of 1..7 days, drawn per regime index: risk_on (every crowd follows the mood),
#   rotation (BTC's crowd moves against the alts': what draws crowds into alts draws them out
#   of BTC) and quiet (the mood fades, coins follow their own stories). A new regime takes
#   over within _REGIME_BLEND minutes, so a shift shows as a step over a few hours, not a jump.
# - Prices: log price = price_beta x the market's price factor + the coin's own moves.
# - Crowds chase (`_chase`): the long share rises after the price rose over the last day.
# - Takers follow the trend (`_taker_lean`): buy volume leans up while the price trend rises.

_MOOD: Octaves = ((240, 0.3), (1440, 0.7), (4320, 0.9), (10080, 1.0), (30240, 0.8))
_MOOD_SHARE = 0.03  # long share per unit of mood (x crowd_beta x the regime's loading)
_CHASE = 0.012  # long share gained per daily sigma the price rose over the last day (saturating)
_MARKET_SIGMA = 0.025  # daily log-return volatility of the market's price factor (BTC-like)


@dataclass(frozen=True)
class Regime:
    """How each crowd loads on the market's mood while the regime lasts."""

    name: str
    odds: float  # share of regimes of this kind
    btc: float  # BTC's loading
    alts: float  # every other coin's loading


REGIMES: tuple[Regime, ...] = (
    Regime("risk_on", 0.5, 1.0, 1.0),
    Regime("rotation", 0.3, -1.0, 1.0),
    Regime("quiet", 0.2, 0.3, 0.3),
)
_REGIME_ODDS = np.cumsum([r.odds for r in REGIMES])
_REGIME_SPACING = 4 * 1440  # minutes: regime i starts at i x spacing + a jitter < _REGIME_JITTER,
_REGIME_JITTER = 3 * 1440  # so regimes last 1..7 days, 4 on average
_REGIME_BLEND = 720  # minutes a new regime takes to take over
_REGIME_TILT = 0.6  # each regime shifts the mood by up to this


def _regime_start(i: np.ndarray) -> np.ndarray:
    """Epoch minute at which regime `i` starts."""
    return i * _REGIME_SPACING + _REGIME_JITTER * _unit_array(seed("regime-start"), i)


def _regimes(t_min: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(regime index, minutes since it started) at each instant."""
    i = np.floor(t_min / _REGIME_SPACING)
    start = _regime_start(i)
    # Regime i starts within _REGIME_JITTER (< spacing) after its mark, so an instant before
    # that start still belongs to regime i - 1, which started before the mark.
    before = t_min < start
    i = np.where(before, i - 1, i)
    return i, t_min - np.where(before, _regime_start(i), start)


def _regime_kinds(i: np.ndarray) -> np.ndarray:
    """Index into REGIMES of each regime `i`, drawn with the regimes' odds."""
    drawn = np.searchsorted(_REGIME_ODDS, _unit_array(seed("regime-kind"), i), side="right")
    return np.minimum(drawn, len(REGIMES) - 1)


def _blended(per_regime: Callable[[np.ndarray], np.ndarray], t_min: np.ndarray) -> np.ndarray:
    """A per-regime value at each instant, eased from the previous regime's at each start."""
    i, since = _regimes(t_min)
    w = np.clip(since / _REGIME_BLEND, 0.0, 1.0)
    w = w * w * (3.0 - 2.0 * w)
    previous = per_regime(i - 1)
    return previous + (per_regime(i) - previous) * w


def regime(t_ms: int) -> str:
    """Name of the market regime at instant t (see REGIMES)."""
    i, _ = _regimes(np.array([t_ms / MINUTE]))
    return REGIMES[int(_regime_kinds(i)[0])].name


def market_mood(t_ms: np.ndarray) -> np.ndarray:
    """The market's mood at each instant: positive draws crowds long (sd ~1, no unit)."""
    t_min = t_ms / MINUTE
    tilt = _blended(lambda i: _REGIME_TILT * _signed_array(seed("regime-tilt"), i), t_min)
    return _layered_array(seed("market-mood"), t_min, _MOOD) + tilt


def _mood_loading(coin: str, t_min: np.ndarray) -> np.ndarray:
    """How much the coin's long share moves per unit of mood at each instant."""
    per_kind = np.array([r.btc if coin == "BTC" else r.alts for r in REGIMES])
    loading = _blended(lambda i: per_kind[_regime_kinds(i)], t_min)
    return _MOOD_SHARE * coin_facts(coin).crowd_beta * loading


def _log_price_moves(coin: str, t_min: np.ndarray, slowest: int = 1) -> np.ndarray:
    """The coin's log price relative to its level: price_beta x the market's moves + its own,
    from the layers at least `slowest` minutes apart (all of them by default)."""
    market = _layered_array(seed("market-price"), t_min, _brownian(_MARKET_SIGMA, slowest))
    own = _layered_array(seed("price", coin), t_min, _brownian(_own_sigma(coin), slowest))
    return coin_facts(coin).price_beta * market + own


def _chase(coin: str, t_ms: np.ndarray) -> np.ndarray:
    """Long share the crowd adds after a rise: the price trend's move over the last day (the
    crowd reacts to the day, not to each tick) in daily sigmas, softly capped at two of them,
    so a crash cannot push every share to the clip."""
    now = _log_price_moves(coin, t_ms / MINUTE, _TREND_SPACING)
    day_before = _log_price_moves(coin, (t_ms - DAY) / MINUTE, _TREND_SPACING)
    x = (now - day_before) / coin_facts(coin).daily_sigma
    return _CHASE * x / np.sqrt(1.0 + 0.25 * x * x)


@cache
def _trend_max_slope(coin: str) -> float:
    """Bound of the price trend's change per minute: a smoothstep value-noise layer moves at
    most 1.5 x its knot gap (<= 2 x amplitude) per spacing."""
    beta = coin_facts(coin).price_beta
    market = [(s, beta * a) for s, a in _brownian(_MARKET_SIGMA, _TREND_SPACING)]
    own = list(_brownian(_own_sigma(coin), _TREND_SPACING))
    return sum(3.0 * a / s for s, a in market + own)


def _taker_lean(coin: str, k: np.ndarray) -> np.ndarray:
    """What the buy side's cumulative curve gains and the sell side's loses at whole minute k,
    in mean-rate minutes: proportional to the price trend, so over any window takers buy more
    while the trend rose. Scaled so that it moves at most _LEAN per minute."""
    trend = _log_price_moves(coin, k, _TREND_SPACING)
    return _LEAN / _trend_max_slope(coin) * trend


def _share_base(coin: str) -> float:
    """The coin's usual long share: alts 0.47..0.60 (ratio ~0.9..1.5). BTC's crowd sits at
    the alts' average (ratio ~1.17), so in a rotation either side can end up the long one and
    `divergence` sees both btc_long_alts_short and btc_short_alts_long."""
    if coin == "BTC":
        return 0.54
    return 0.47 + 0.13 * unit(seed("share-base", coin), 0)


# Top traders follow the market's mood less than the crowd does and hold views of their own (a
# slow stance per coin, the same on every exchange: they read the same market), so at times the
# whales lean one way while the crowd leans the other, as the whale-vs-crowd view looks for.
_WHALE_MARKET: dict[str, float] = {"top_account": 0.6, "top_position": 0.3}
_WHALE_STANCE: dict[str, float] = {"top_account": 0.03, "top_position": 0.05}
_STANCE_OCTAVES: Octaves = ((1440, 0.6), (4320, 1.0), (14400, 0.8))


def _whale_stance(coin: str, metric: str, t_min: np.ndarray) -> np.ndarray | float:
    weight = _WHALE_STANCE.get(metric)
    if weight is None:
        return 0.0
    return weight * _layered_array(seed("whale-stance", coin), t_min, _STANCE_OCTAVES)


def long_shares(exchange: str, coin: str, metric: str, t_ms: np.ndarray) -> np.ndarray:
    """Share of longs (0.3..0.75) in `metric` at each instant `t_ms` (int64 epoch ms).

    The market's part (mood x loading, and chasing the coin's price) and a coin-wide part
    (baseline, a slow cycle, layered noise) are shared by every metric and exchange, so they
    move together; a metric/exchange part makes them distinct.
    """
    t_min = t_ms / MINUTE
    market = _mood_loading(coin, t_min) * market_mood(t_ms) + _chase(coin, t_ms)
    market = _WHALE_MARKET.get(metric, 1.0) * market + _whale_stance(coin, metric, t_min)
    base = _share_base(coin)
    offset = _METRIC_OFFSET.get(metric, 0.0)
    offset += 0.02 * signed(seed("share-offset", exchange, coin, metric), 0)
    cycle_min = (4 + 5 * unit(seed("share-cycle", coin), 0)) * 1440
    phase = _TAU * unit(seed("share-phase", coin), 0)
    cycle = 0.012 * np.sin(_TAU * t_min / cycle_min + phase)
    common = _layered_array(seed("share", coin), t_min, _SHARE_COMMON)
    own = _layered_array(seed("share", exchange, coin, metric), t_min, _SHARE_OWN)
    noise = 0.003 * _signed_array(seed("share-noise", exchange, coin, metric), t_ms // MINUTE)
    return np.clip(base + offset + market + cycle + common + own + noise, 0.3, 0.75)


def open_interests(exchange: str, coin: str, t_ms: np.ndarray) -> np.ndarray:
    """Open interest in coins at each instant `t_ms`."""
    facts = coin_facts(coin)
    level = 0.6 * facts.daily_volume * VENUE_SHARE.get(exchange, 0.5) / facts.price
    log_move = _layered_array(seed("oi", exchange, coin), t_ms / MINUTE, _OI_OCTAVES)
    noise = 0.001 * _signed_array(seed("oi-noise", exchange, coin), t_ms // MINUTE)
    return level * np.exp(log_move) * (1.0 + noise)


def prices(coin: str, t_ms: np.ndarray, exchange: str = "") -> np.ndarray:
    """USD price of one coin at each instant `t_ms`: Brownian-like layers of value noise, the
    market's (x price_beta) and the coin's own."""
    t_min = t_ms / MINUTE
    log_move = _log_price_moves(coin, t_min)
    if exchange:
        log_move += 0.0003 * _value_noise_array(seed("basis", exchange, coin), t_min / 60)
    return coin_facts(coin).price * np.exp(log_move)


def cumulative_takers(exchange: str, coin: str, side: str, t_ms: np.ndarray) -> np.ndarray:
    """Coins bought or sold by takers from the epoch to each whole-minute instant `t_ms`.

    The integral of 1 + cosine cycles (busy hours and days shared by both sides, a slow one of
    the side's own), plus per-minute knot noise, plus or minus the lean to the price trend
    (`_taker_lean`); see _LEAN for why the curve keeps rising.
    """
    k = (t_ms // MINUTE).astype(np.float64)
    shared = seed("volume", exchange, coin)
    s = seed("volume", exchange, coin, side)
    own_period = 2000 + 7000 * unit(seed("volume-cycle", coin, side), 0)
    total = k.copy()
    for i, (period, amplitude) in enumerate(_VOLUME_CYCLES):
        total += _integrated_wave(k, period, amplitude, _TAU * unit(shared, -1 - i))
    total += _integrated_wave(k, own_period, _SIDE_CYCLE, _TAU * unit(s, -1))
    total += _VOLUME_NOISE * _signed_array(s, k)
    lean = _taker_lean(coin, k)
    total += lean if side == "buy" else -lean
    return _volume_rate(exchange, coin) * total


def _integrated_wave(k: np.ndarray, period: float, amplitude: float, phase: float) -> np.ndarray:
    """The integral up to minute k of amplitude x cos(2 pi k / period + phase)."""
    # math.sin, not np.sin: the arguments reach 1e5 radians, where the two differ in the
    # last bits, and a cumulative curve of this size turns those bits into volume.
    waves = [math.sin(x) for x in (_TAU * k / period + phase)]
    return amplitude * period / _TAU * np.asarray(waves)


# ---------------------------------------------------------------------------------------------
# One instant at a time, from cached blocks

_BLOCK = 1024
_GRIDS = (DAY, HOUR, 5 * MINUTE, MINUTE)  # coarsest first: 1d rows share 1h rows' midnights
_SERIES: dict[str, Callable[[tuple[str, ...], np.ndarray], np.ndarray]] = {
    "long_share": lambda key, t: long_shares(key[0], key[1], key[2], t),
    "open_interest": lambda key, t: open_interests(key[0], key[1], t),
    "price": lambda key, t: prices(key[0], t, key[1]),
    "cumulative_taker": lambda key, t: cumulative_takers(key[0], key[1], key[2], t),
}


@lru_cache(maxsize=16384)  # 8 KB a block: at most ~130 MB, a demo uses a few thousand
def _block(kind: str, key: tuple[str, ...], step: int, index: int) -> np.ndarray:
    instants = (index * _BLOCK + np.arange(_BLOCK, dtype=np.int64)) * step
    return _SERIES[kind](key, instants)


def _at(kind: str, key: tuple[str, ...], t_ms: int) -> float:
    """One value of a series: from the block of the coarsest grid `t_ms` lies on, else alone."""
    for step in _GRIDS:
        if t_ms % step == 0:
            n = t_ms // step
            return float(_block(kind, key, step, n // _BLOCK)[n % _BLOCK])
    return float(_SERIES[kind](key, np.array([t_ms], dtype=np.int64))[0])
