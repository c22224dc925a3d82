"""Facts about the simulated coins: typical price level, trading volume and perpetual launch date.

The levels only need to be realistic in magnitude (BTC ~90k, small coins < 1) so that number
formatting, multiplier contracts and value columns look like the real thing. Coins the table does
not know (e.g. added to universe.yaml later) get hash-derived facts, so the simulator still lists
them. Each coin also has its loadings on the market (see series.py): how strongly its price
follows the market's (`price_beta`) and its crowd the market's mood (`crowd_beta`); alts
load more than BTC on both, as they do in real markets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from pipelines.simulator.grid import DAY, ms_of

_UNIVERSE_YAML = Path(__file__).resolve().parents[1] / "universe.yaml"

# coin, USD price, daily perp volume on the largest venue (USD millions), first perp listing date
_TABLE = """
BTC 90000 15000 2019-09-25
ETH 3000 9000 2019-11-27
SOL 140 3000 2020-09-14
XRP 2.1 2000 2020-01-06
DOGE 0.15 1500 2020-07-10
BNB 880 600 2020-02-10
ADA 0.42 500 2020-01-31
TRX 0.28 150 2020-01-16
AVAX 13 300 2020-09-23
LINK 13 350 2020-01-17
TON 1.6 150 2024-08-08
SHIB 0.0000085 120 2021-05-10
DOT 2.2 150 2020-08-20
BCH 560 250 2019-12-18
LTC 80 300 2020-01-09
NEAR 1.7 200 2020-10-15
UNI 5.5 150 2020-09-18
APT 1.7 120 2022-10-19
ICP 3.5 90 2021-05-11
PEPE 0.0000045 700 2023-05-05
ETC 13 120 2020-01-16
FIL 1.5 130 2020-10-15
ATOM 2.3 90 2020-02-07
ARB 0.2 200 2023-03-23
OP 0.3 150 2022-06-01
SUI 1.5 900 2023-05-03
INJ 5.5 100 2020-10-26
STX 0.3 40 2021-07-27
HBAR 0.12 250 2020-08-06
TIA 0.6 100 2023-10-31
SEI 0.13 120 2023-08-15
WIF 0.35 400 2024-01-17
BONK 0.0000095 150 2023-11-21
FLOKI 0.00005 60 2023-05-08
JUP 0.22 80 2024-01-31
LDO 0.6 90 2022-09-13
AAVE 170 350 2020-10-15
XLM 0.23 200 2020-01-20
ALGO 0.13 80 2020-06-02
GRT 0.04 50 2020-12-18
SAND 0.13 60 2020-08-14
AXS 0.9 40 2020-11-04
GALA 0.007 70 2021-09-13
ENA 0.25 600 2024-04-02
ONDO 0.42 200 2024-01-18
WLD 0.55 250 2023-07-24
TAO 260 250 2024-04-11
ORDI 4 120 2023-11-07
CRV 0.38 150 2020-08-14
DYDX 0.2 50 2021-09-09
HYPE 30 800 2024-11-29
TRUMP 5.5 400 2025-01-18
FET 0.25 200 2021-02-19
RENDER 1.5 120 2020-12-02
JTO 0.45 60 2023-12-07
PYTH 0.07 50 2023-11-21
KAS 0.05 40 2023-11-23
RUNE 0.7 60 2020-09-04
IMX 0.3 50 2021-11-05
MANA 0.16 40 2020-11-12
ZEC 400 300 2020-02-21
EGLD 6 30 2020-09-09
THETA 0.35 30 2020-02-18
ENS 9 40 2021-11-10
COMP 25 50 2020-06-19
"""


@dataclass(frozen=True)
class Coin:
    name: str
    price: float  # typical USD price of one coin
    daily_volume: float  # USD per day on a large venue
    listed_ms: int  # first perpetual listing
    daily_sigma: float  # typical daily log-return volatility
    price_beta: float  # loading on the market's price factor: BTC 1, alts 1.1..1.8
    crowd_beta: float  # loading on the market's mood (long shares): BTC 0.8, alts 0.8..1.5


def _sigma(name: str) -> float:
    # Big coins move less: BTC ~2.5 %/day, ETH ~3.5 %, small caps 4-7 %.
    if name == "BTC":
        return 0.025
    if name == "ETH":
        return 0.035
    return 0.04 + 0.03 * _hash_unit("sigma", name)


def _price_beta(name: str) -> float:
    # Alts amplify the market's moves (beta > 1); with their own noise on top, their daily
    # returns correlate ~0.5-0.8 with BTC's, as in real markets.
    if name == "BTC":
        return 1.0
    if name == "ETH":
        return 1.3
    return 1.1 + 0.7 * _hash_unit("price-beta", name)


def _crowd_beta(name: str) -> float:
    # BTC's crowd is the steadiest; alt crowds swing harder with the market's mood.
    if name == "BTC":
        return 0.8
    if name == "ETH":
        return 1.0
    return 0.8 + 0.7 * _hash_unit("crowd-beta", name)


def _hash_unit(*parts: str) -> float:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _facts(name: str, price: float, volume: float, listed_ms: int) -> Coin:
    return Coin(name, price, volume, listed_ms, _sigma(name), _price_beta(name), _crowd_beta(name))


def _parse(table: str) -> dict[str, Coin]:
    coins: dict[str, Coin] = {}
    for line in table.strip().splitlines():
        name, price, volume_musd, listed = line.split()
        volume = float(volume_musd) * 1e6
        coins[name] = _facts(name, float(price), volume, ms_of(listed))
    return coins


KNOWN: dict[str, Coin] = _parse(_TABLE)


@cache
def coin(name: str) -> Coin:
    """Facts for `name`; unknown coins get stable made-up facts (price 0.01..100)."""
    if name in KNOWN:
        return KNOWN[name]
    price = 10 ** (-2 + 4 * _hash_unit("price", name))
    volume = 10 ** (7.5 + 1.5 * _hash_unit("volume", name))
    listed = ms_of("2021-01-01") + int(_hash_unit("listed", name) * 900) * DAY
    return _facts(name, price, volume, listed)


@cache
def universe() -> tuple[str, ...]:
    """The pipeline's coins from universe.yaml (the table's first 50 if it is unreadable)."""
    try:
        loaded = yaml.safe_load(_UNIVERSE_YAML.read_text())
        names = tuple(str(c).upper() for c in loaded["coins"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        names = tuple(KNOWN)[:50]
    return names


def extras() -> tuple[str, ...]:
    """Table coins outside the universe: listed by the exchanges, ignored by the pipeline."""
    members = set(universe())
    return tuple(name for name in KNOWN if name not in members)
