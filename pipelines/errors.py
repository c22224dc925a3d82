"""Errors that say which exchange, endpoint and symbol went wrong, and how."""

from __future__ import annotations


class ExchangeError(Exception):
    """A request to an exchange failed; the message names exchange, endpoint and symbol."""

    def __init__(
        self,
        exchange: str,
        endpoint: str,
        detail: str,
        *,
        symbol: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.exchange = exchange
        self.endpoint = endpoint
        self.symbol = symbol
        self.status = status
        self.code = code
        self.detail = detail
        parts = [f"{exchange} {endpoint}"]
        if symbol:
            parts.append(f"symbol={symbol}")
        if status is not None:
            parts.append(f"HTTP {status}")
        if code is not None:
            parts.append(f"code={code}")
        super().__init__(" ".join(parts) + f": {detail}")


class ExchangeApiError(ExchangeError):
    """The exchange answered with an error envelope (a business error, not retried)."""


class RetryableError(ExchangeError):
    """Rate limited, 5xx, timeout or a truncated body: worth another try after a pause."""

    def __init__(self, *args: object, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ExchangeBanned(ExchangeError):
    """The exchange banned this IP (Binance 418, Bybit 403): stop calling it and report."""


class DataUnavailable(ExchangeError):
    """The exchange can no longer serve the requested window (e.g. older than its retention)."""


class PayloadError(ValueError):
    """A response body whose shape a parser does not recognise."""

    def __init__(self, exchange: str, endpoint: str, detail: str, *, symbol: str | None = None):
        self.exchange = exchange
        self.endpoint = endpoint
        self.symbol = symbol
        where = f"{exchange} {endpoint}" + (f" symbol={symbol}" if symbol else "")
        super().__init__(f"{where}: {detail}")
