"""The synthetic series as a demo's reader sees them: the coins share a market (their crowds and
prices move together, regimes of a few days turn BTC's crowd against the alts', takers buy into
rising prices), and every value is still a pure function of its arguments.

The figures are measured over the series themselves (numpy), at the tests' frozen clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pipelines.simulator import series
from pipelines.simulator.coins import universe
from pipelines.simulator.grid import DAY, HOUR, MINUTE
from tests.clock import NOW

END = int(NOW * 1000) // DAY * DAY  # the midnight before the frozen clock
COINS = universe()  # BTC first
ALTS = COINS[1:]


def instants(days: int, step: int = HOUR, end: int | None = None) -> np.ndarray:
    """The `days` days before `end` (END by default), every `step` ms (int64 epoch ms)."""
    end = END if end is None else end
    return end - days * DAY + np.arange(days * DAY // step, dtype=np.int64) * step


def ln_ratios(coins: tuple[str, ...], t: np.ndarray) -> np.ndarray:
    """ln(long/short) of Binance's global accounts, one row per coin, as the pipeline reads it."""
    shares = np.array([series.long_shares("binance", c, "global_account", t) for c in coins])
    return np.log(shares / (1 - shares))


def longest_run(flags: np.ndarray) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def test_crowds_move_together() -> None:
    # Independent coins would correlate ~0 (they did, -0.003, before the market was shared).
    shares = np.array(
        [series.long_shares("binance", c, "global_account", instants(30)) for c in COINS]
    )
    pairs = np.corrcoef(shares)[np.triu_indices(len(COINS), 1)]
    assert pairs.mean() > 0.3
    assert (pairs > 0).mean() > 0.8


def test_the_altcoin_average_moves() -> None:
    ln = ln_ratios(ALTS, instants(30))
    average = ln.mean(axis=0)  # ln of the geometric-mean ratio, as alt_average computes it
    # Were the coins independent, the variance of their mean would be exactly the sum of their
    # variances / n^2: that is the flat line the demo images used to show.
    independent_sd = math.sqrt(ln.var(axis=1).sum()) / len(ALTS)
    assert average.std() > 3 * independent_sd
    assert math.exp(average.max() - average.min()) > 1.2  # the ratio swings by a fifth or more


def test_prices_share_a_market() -> None:
    returns = np.diff(np.log([series.prices(c, instants(91, DAY)) for c in COINS]), axis=1)
    btc = returns[0]
    correlations = [np.corrcoef(btc, alt)[0, 1] for alt in returns[1:]]
    assert np.mean(correlations) > 0.4
    betas = [np.cov(btc, alt)[0, 1] / btc.var(ddof=1) for alt in returns[1:]]
    assert np.median(betas) > 1  # alts amplify the market's moves


def test_crowds_chase_the_price() -> None:
    # Day over day, a coin's long share rises more often after its price rose: pooled over
    # every coin and 90 days (4,500 pairs, so a correlation of 0.05 is far beyond chance).
    t = instants(91, DAY)
    price_moves, share_moves = [], []
    for c in COINS:
        price_moves.append(np.diff(np.log(series.prices(c, t))))
        share_moves.append(np.diff(series.long_shares("binance", c, "global_account", t)))
    moves = [
        np.concatenate([(m - m.mean()) / m.std() for m in x]) for x in (price_moves, share_moves)
    ]
    assert np.corrcoef(*moves)[0, 1] > 0.05


def test_regimes_turn_btc_against_the_alts_for_days() -> None:
    t = instants(90)
    kinds = np.array([series.regime(int(x)) for x in t])
    assert {"risk_on", "rotation"} <= set(kinds)
    btc, alts = (x[24:] - x[:-24] for x in (ln_ratios(("BTC",), t)[0], ln_ratios(ALTS, t).mean(0)))

    def day_changes_correlate(kind: str) -> float:
        """Correlation of BTC's and the alt average's moves over the days within `kind`."""
        within = (kinds[24:] == kind) & (kinds[:-24] == kind)
        return float(np.corrcoef(btc[within], alts[within])[0, 1])

    assert day_changes_correlate("risk_on") > 0.3
    assert day_changes_correlate("rotation") < -0.15
    # What a reader sees: BTC's ratio and the alt average's move apart, each by over 5 %, over
    # every day-long window of a stretch of 36 hours or more (before the market was shared
    # the alt average never moved 5 % in a day over these 90 days).
    apart = (np.sign(btc) != np.sign(alts)) & (np.abs(btc) > 0.05) & (np.abs(alts) > 0.05)
    assert longest_run(apart) >= 12


def test_regimes_last_days_and_shift_within_hours() -> None:
    t = instants(90)
    kinds = [series.regime(int(x)) for x in t]
    starts = [i for i in range(1, len(t)) if kinds[i] != kinds[i - 1]]
    lengths = np.diff(starts)
    assert len(starts) >= 5 and lengths.min() >= 24  # several regimes, each a day or longer
    mood = series.market_mood(t)
    assert 0.5 < mood.std() < 1.5 and (np.abs(np.diff(mood)) < 0.5).all()  # no jumps


def test_whales_sometimes_lean_against_their_crowd() -> None:
    """Top traders by position size hold views of their own: over 30 days, in some hours their
    ratio is more than one sd above its mean while the crowd's is more than one sd below, or the
    reverse (what the whale-vs-crowd view lists); with both driven by one coin-wide series they
    never were."""
    t = instants(30)
    against = []
    for coin in COINS:
        sides = []
        for metric in ("top_position", "global_account"):
            share = series.long_shares("okx", coin, metric, t)
            ln = np.log(share / (1 - share))
            sides.append((ln - ln.mean()) / ln.std())
        whales, crowd = sides
        against.append(((whales > 1) & (crowd < -1)) | ((whales < -1) & (crowd > 1)))
    hours = np.array(against)
    assert hours.mean() > 0.01  # of all coin-hours
    assert hours.any(axis=1).sum() >= 10  # in many coins, not one odd series


def test_takers_buy_into_rising_prices() -> None:
    t = instants(14, end=END + HOUR)  # hour edges, so each hour's volume is a difference
    leaning_up, leaning_down = [], []
    for exchange in ("binance", "okx"):
        for c in COINS[:10]:
            buy = np.diff(series.cumulative_takers(exchange, c, "buy", t))
            sell = np.diff(series.cumulative_takers(exchange, c, "sell", t))
            rose = np.diff(series.prices(c, t, exchange)) > 0
            buyers_ahead = buy > sell
            leaning_up.append(buyers_ahead[rose].mean())
            leaning_down.append(buyers_ahead[~rose].mean())
    assert np.mean(leaning_up) > 0.7 and np.mean(leaning_down) < 0.3  # was 0.52 and 0.51


def test_taker_curves_rise_every_minute() -> None:
    t = instants(2, MINUTE)
    for c in COINS:
        for side in ("buy", "sell"):
            assert (np.diff(series.cumulative_takers("gate", c, side, t)) > 0).all(), (c, side)


def test_values_do_not_depend_on_how_they_are_asked() -> None:
    days, hours = instants(40, DAY), instants(40, HOUR)
    minutes = instants(2, MINUTE)
    arrays: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "share": lambda t: series.long_shares("okx", "SOL", "top_account", t),
        "price": lambda t: series.prices("SOL", t, "okx"),
        "bought": lambda t: series.cumulative_takers("okx", "SOL", "buy", t),
        "oi": lambda t: series.open_interests("okx", "SOL", t),
    }
    one: dict[str, Callable[[int], float]] = {
        "share": lambda t: series.long_share("okx", "SOL", "top_account", t),
        "price": lambda t: series.price("SOL", t, "okx"),
        "bought": lambda t: series.cumulative_taker("okx", "SOL", "buy", t),
        "oi": lambda t: series.open_interest("okx", "SOL", t),
    }
    for name, f in arrays.items():
        daily = f(days)
        assert (daily == f(days)).all(), name  # the same call, the same values
        assert (daily == f(hours)[::24]).all(), name  # midnights on the hourly grid
        assert (f(minutes)[::60] == f(hours)[-48:]).all(), name  # hours on the minute grid
        assert [one[name](int(x)) for x in hours[-30:]] == list(f(hours[-30:])), name
        assert one[name](int(days[3])) == daily[3], name  # from the daily block
