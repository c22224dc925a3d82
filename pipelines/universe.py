"""The coin universe and its mapping to each exchange's native instruments.

Exchanges name the same USDT perpetual differently (`BTCUSDT`, `BTC-USDT-SWAP`, `BTC_USDT`,
`BTC-USDT`) and list low-priced coins as multiplier contracts (`1000PEPEUSDT`, `SHIB1000USDT`).
`coin_of` reads a native id back to its canonical coin; `resolve` intersects the configured
universe with what an exchange actually lists.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

UNIVERSE_FILE = Path(__file__).with_name("universe.yaml")

# Leading or trailing multipliers: 1000PEPE, 1000000MOG, 1MBABYDOGE, SHIB1000.
_MULTIPLIER = re.compile(
    r"^(?:(?P<lead>10{2,}|1M)(?=[A-Z]))?(?P<base>[A-Z0-9]+?)(?P<trail>10{2,})?$"
)


@dataclass(frozen=True)
class Universe:
    coins: tuple[str, ...]
    alt_exclusions: tuple[str, ...] = ()
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)


def load_universe(path: Path | None = None) -> Universe:
    """The universe: `path`, else `LSR_UNIVERSE`, else the bundled universe.yaml."""
    return _load(path or Path(os.environ.get("LSR_UNIVERSE") or UNIVERSE_FILE))


@cache
def _load(path: Path) -> Universe:
    """The universe file, or a one-line `UniverseError` saying what is wrong in it."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        reason = getattr(error, "problem", None) or error
        raise UniverseError(f"{path}: cannot read it{at}: {reason}") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("coins"), list):
        raise UniverseError(f"{path}: expected a mapping with a `coins:` list of coin symbols")
    coins = tuple(_symbol(path, c) for c in raw["coins"])
    if not coins:
        raise UniverseError(f"{path}: `coins:` is empty; list at least one coin (BTC first)")
    twice = sorted({c for c in coins if coins.count(c) > 1})
    if twice:
        raise UniverseError(f"{path}: coins listed twice: {', '.join(twice)}")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict) or not all(isinstance(m, dict) for m in overrides.values()):
        raise UniverseError(f"{path}: `overrides:` must map exchange -> coin -> instrument")
    return Universe(
        coins=coins,
        alt_exclusions=tuple(_symbol(path, c) for c in raw.get("alt_exclusions") or ()),
        overrides={
            str(ex): {str(c).upper(): str(i) for c, i in m.items()} for ex, m in overrides.items()
        },
    )


class UniverseError(ValueError):
    """The universe file cannot be used as it is."""


_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}$")


def _symbol(path: Path, value: object) -> str:
    symbol = str(value).strip().upper()
    if isinstance(value, (dict, list)) or not _SYMBOL.fullmatch(symbol):
        raise UniverseError(
            f"{path}: {value!r} is not a coin symbol (letters and digits, e.g. BTC)"
        )
    return symbol


def split_multiplier(base_asset: str) -> tuple[str, int]:
    """`1000PEPE` -> (`PEPE`, 1000); `SHIB1000` -> (`SHIB`, 1000); `BTC` -> (`BTC`, 1)."""
    match = _MULTIPLIER.match(base_asset.upper())
    if not match:
        return base_asset.upper(), 1
    lead, trail = match["lead"], match["trail"]
    factor = lead or trail
    if factor is None:
        return match["base"], 1
    return match["base"], 1_000_000 if factor == "1M" else int(factor)


@dataclass(frozen=True)
class Listing:
    """One listed instrument, as an exchange's instrument endpoint describes it."""

    instrument: str
    base_asset: str
    onboard_ms: int | None = None

    @property
    def coin(self) -> str:
        return split_multiplier(self.base_asset)[0]

    @property
    def multiplier(self) -> int:
        return split_multiplier(self.base_asset)[1]


def resolve(exchange: str, listings: list[Listing], universe: Universe) -> dict[str, str]:
    """Map each universe coin the exchange lists to its native instrument id.

    Where an exchange lists both a plain and a multiplier contract for one coin, the plain one
    wins (it is the one its L/S feeds cover).
    """
    pinned = universe.overrides.get(exchange, {})
    by_coin: dict[str, Listing] = {}
    for listing in listings:
        current = by_coin.get(listing.coin)
        if current is None or listing.multiplier < current.multiplier:
            by_coin[listing.coin] = listing
    mapping: dict[str, str] = {}
    listed_ids = {listing.instrument for listing in listings}
    for coin in universe.coins:
        if coin in pinned and pinned[coin] in listed_ids:
            mapping[coin] = pinned[coin]
        elif coin in by_coin:
            mapping[coin] = by_coin[coin].instrument
    return mapping
