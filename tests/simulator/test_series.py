"""The synthetic series as a demo's reader sees them: the coins share a market (their prices
move together), and every value is still a pure function of its arguments.

The figures are measured over the series themselves (numpy), at the tests' frozen clock.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipelines.simulator import series
from pipelines.simulator.coins import universe
from pipelines.simulator.grid import DAY, HOUR, MINUTE
from tests.clock import NOW

END = int(NOW * 1000) // DAY * DAY  # the midnight before the frozen clock
COINS = universe()  # BTC first


def instants(days: int, step: int = HOUR, end: int | None = None) -> np.ndarray:
    """The `days` days before `end` (END by default), every `step` ms (int64 epoch ms)."""
    end = END if end is None else end
    return end - days * DAY + np.arange(days * DAY // step, dtype=np.int64) * step


def test_prices_share_a_market() -> None:
    returns = np.diff(np.log([series.prices(c, instants(91, DAY)) for c in COINS]), axis=1)
    btc = returns[0]
    correlations = [np.corrcoef(btc, alt)[0, 1] for alt in returns[1:]]
    assert np.mean(correlations) > 0.4
    betas = [np.cov(btc, alt)[0, 1] / btc.var(ddof=1) for alt in returns[1:]]
    assert np.median(betas) > 1  # alts amplify the market's moves


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
