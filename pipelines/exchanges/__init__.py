"""Exchange connectors, one module each; `CONNECTORS` is the registry the pipeline iterates."""

from __future__ import annotations

from pipelines.exchanges import binance, bitget, bybit, gate, htx, okx
from pipelines.exchanges.base import Connector

# Each module named on its own, so mypy checks that it really is a Connector (a loop over a
# tuple of modules would see only `ModuleType`, which matches any protocol).
CONNECTORS: dict[str, Connector] = {
    binance.NAME: binance,
    bybit.NAME: bybit,
    okx.NAME: okx,
    bitget.NAME: bitget,
    gate.NAME: gate,
    htx.NAME: htx,
}
EXCHANGES: tuple[str, ...] = tuple(CONNECTORS)


def connector(name: str) -> Connector:
    try:
        return CONNECTORS[name]
    except KeyError:
        raise ValueError(f"unknown exchange {name!r}; known: {', '.join(EXCHANGES)}") from None
