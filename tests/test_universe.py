"""Coins map to each exchange's native instruments, multipliers included."""

from __future__ import annotations

import pytest

from pipelines.universe import Listing, Universe, load_universe, resolve, split_multiplier


def test_default_universe_has_fifty_distinct_coins_with_btc_first() -> None:
    universe = load_universe()
    assert len(universe.coins) == 50 == len(set(universe.coins))
    assert universe.coins[0] == "BTC"


@pytest.mark.parametrize(
    ("base", "coin", "factor"),
    [
        ("1000PEPE", "PEPE", 1000),
        ("SHIB1000", "SHIB", 1000),
        ("1000000MOG", "MOG", 1_000_000),
        ("1MBABYDOGE", "BABYDOGE", 1_000_000),
        ("BTC", "BTC", 1),
        ("1INCH", "1INCH", 1),  # a coin whose name starts with a digit is not a multiplier
    ],
)
def test_multiplier_contracts_map_to_their_base_coin(base: str, coin: str, factor: int) -> None:
    assert split_multiplier(base) == (coin, factor)


def test_resolve_intersects_the_universe_with_what_the_exchange_lists() -> None:
    universe = Universe(coins=("BTC", "PEPE", "SHIB", "TON"))
    listed = [
        Listing("BTCUSDT", "BTC"),
        Listing("1000PEPEUSDT", "1000PEPE"),
        Listing("SHIB1000USDT", "SHIB1000"),
        Listing("DOGEUSDT", "DOGE"),
    ]
    assert resolve("bybit", listed, universe) == {
        "BTC": "BTCUSDT",
        "PEPE": "1000PEPEUSDT",
        "SHIB": "SHIB1000USDT",
    }  # TON is not listed; DOGE is not in the universe


def test_plain_contract_wins_over_a_multiplier_one_and_overrides_pin() -> None:
    listed = [Listing("1000PEPEUSDT", "1000PEPE"), Listing("PEPEUSDT", "PEPE")]
    assert resolve("x", listed, Universe(coins=("PEPE",))) == {"PEPE": "PEPEUSDT"}
    pinned = Universe(coins=("PEPE",), overrides={"x": {"PEPE": "1000PEPEUSDT"}})
    assert resolve("x", listed, pinned) == {"PEPE": "1000PEPEUSDT"}
