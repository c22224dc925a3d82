"""Exchange connectors, one module each; `CONNECTORS` is the registry the pipeline iterates."""

from __future__ import annotations

from typing import cast

from pipelines.exchanges import binance, bitget, bybit, gate, htx, okx
from pipelines.exchanges.base import Connector

CONNECTORS: dict[str, Connector] = {
    module.NAME: cast(Connector, module) for module in (binance, bybit, okx, bitget, gate, htx)
}
EXCHANGES: tuple[str, ...] = tuple(CONNECTORS)


def connector(name: str) -> Connector:
    try:
        return CONNECTORS[name]
    except KeyError:
        raise ValueError(f"unknown exchange {name!r}; known: {', '.join(EXCHANGES)}") from None
