"""The one HTTP layer every exchange connector goes through.

One `aiohttp.ClientSession` per run (connection reuse), a sliding-window limiter per exchange
rate-limit bucket, retries with exponential backoff that honour `Retry-After`, ban detection that
stops the exchange, request timeouts, and errors that name exchange, endpoint, symbol and the
body's own code and message. Every response body, good or bad, is kept in `responses` so the run
can land it in the raw zone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import aiohttp
from filelock import FileLock
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from pipelines.errors import (
    DataUnavailable,
    ExchangeApiError,
    ExchangeBanned,
    ExchangeError,
    RetryableError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# rate_limit: slow down and retry; busy: the exchange's own "try again" (service error, system
# busy), retried like a 5xx; unavailable: no data to serve; error: a business error, final.
ErrorKind = Literal["rate_limit", "busy", "unavailable", "error"]


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` (or weight units) in any `seconds`-long window."""

    requests: int
    seconds: float


@dataclass(frozen=True)
class ApiError:
    """An error envelope found in a response body."""

    code: str | None
    message: str
    kind: ErrorKind = "error"


@dataclass(frozen=True)
class ExchangeProfile:
    """What the HTTP layer needs to know about one exchange; each connector builds its own."""

    name: str
    base_url: str
    limits: Mapping[str, RateLimit]
    # Reads an error envelope out of (HTTP status, decoded body); None when the body is data.
    error_of: Callable[[int, Any], ApiError | None]
    ban_statuses: frozenset[int] = frozenset()
    concurrency: int = 16


@dataclass(frozen=True)
class RawResponse:
    """One response exactly as received, for the append-only landing zone."""

    exchange: str
    endpoint: str
    params: str
    symbol: str | None
    status: int
    body: str
    fetched_at: datetime
    simulated: bool


class SlidingWindowLimiter:
    """Admits at most `limit.requests` units in any window of `limit.seconds`, as the exchange
    counts them on arrival.

    A request's units count from the moment it is admitted until one window after its response
    arrived: the exchange saw it somewhere in between, so however late or bunched the arrivals
    (a loaded machine, network jitter), the exchange never counts more in a window than this.
    A leaky bucket (aiolimiter) admits a burst plus a window's refill, up to twice the limit.
    """

    # A small margin on top, for clocks that tick at different rates.
    SLACK = 0.01

    def __init__(
        self,
        limit: RateLimit,
        scale: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.capacity = limit.requests
        self.window = limit.seconds * scale * (1 + self.SLACK) + 0.02
        self._done: deque[tuple[float, int]] = deque()  # (response time, units)
        self._in_flight = 0
        self._lock = asyncio.Lock()
        self._clock = clock
        self._sleep = sleep

    @asynccontextmanager
    async def slot(self, cost: int = 1) -> AsyncIterator[None]:
        """Hold `cost` units for one request: `async with limiter.slot(): send()`."""
        cost = min(cost, self.capacity)
        await self._admit(cost)
        try:
            yield
        finally:
            self._in_flight -= cost
            self._done.append((self._clock(), cost))

    def history(self) -> list[tuple[float, int]]:
        """The answered requests still inside the window, as (wall-clock time, units)."""
        now, wall = self._clock(), time.time()
        self._used(now)  # drops what has left the window
        return [(wall - (now - t), units) for t, units in self._done]

    def seed(self, history: Iterable[tuple[float, int]]) -> None:
        """Count requests another process made (wall-clock times) as if made here."""
        now, wall = self._clock(), time.time()
        earlier = sorted((now - (wall - w), units) for w, units in history)
        self._done = deque(sorted([*earlier, *self._done]))

    def _used(self, now: float) -> int:
        # Compared as the sleep below computes it, so waking at the deadline admits.
        while self._done and now >= self._done[0][0] + self.window:
            self._done.popleft()
        return self._in_flight + sum(units for _, units in self._done)

    async def _admit(self, cost: int) -> None:
        async with self._lock:  # first come, first served
            while True:
                now = self._clock()
                if self._used(now) + cost <= self.capacity:
                    self._in_flight += cost
                    return
                # Wait for the oldest answered request to leave the window, or, when only
                # requests still in flight fill it, for one of them to come back.
                wake = self._done[0][0] + self.window if self._done else now + 0.005
                await self._sleep(wake - now)


class RateLimitLedger:
    """What one process leaves for the next that fetches from the same exchange and host.

    Exchanges count requests per IP, not per process: a run that starts while the previous
    run's requests are still inside a window (Binance's five minutes, Bitget's one second) must
    count them too, or back-to-back partitions break the limit. Each exchange's fetches are
    serialised (Dagster run-tag limits; `exclusive` on one host), so a JSON file per
    exchange and base URL is read when a client starts and written when it closes.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @asynccontextmanager
    async def exclusive(self, exchange: str, base_url: str) -> AsyncIterator[None]:
        """Held for a whole partition fetch: one fetch per exchange and host at a time."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self._path(exchange, base_url).with_suffix(".lock"))
        await asyncio.to_thread(lock.acquire)  # waiting must not block the event loop
        try:
            yield
        finally:
            lock.release()

    def load(self, exchange: str, base_url: str) -> dict[str, list[tuple[float, int]]]:
        path = self._path(exchange, base_url)
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):  # none yet, or a torn file: nothing to count
            return {}
        return {
            bucket: [(float(w), int(u)) for w, u in entries]
            for bucket, entries in saved.get("buckets", {}).items()
        }

    def save(
        self, exchange: str, base_url: str, buckets: dict[str, list[tuple[float, int]]]
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(exchange, base_url)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"buckets": buckets}))
        temporary.replace(path)  # atomic: a reader sees the old file or the new one

    def _path(self, exchange: str, base_url: str) -> Path:
        digest = hashlib.sha256(base_url.encode()).hexdigest()[:12]
        return self.folder / f"{exchange}-{digest}.json"


@dataclass
class _ExchangeState:
    limiters: dict[str, SlidingWindowLimiter]
    semaphore: asyncio.Semaphore
    base_url: str
    earlier: dict[str, list[tuple[float, int]]]  # the ledger's entries, per bucket
    banned: ExchangeBanned | None = None
    requests: int = 0
    retries: int = 0
    sent: int = 0  # what the transport put on the wire, counted by a trace hook
    per_bucket: dict[str, int] = field(default_factory=dict)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_backoff = wait_exponential_jitter(multiplier=0.25, max=20.0, jitter=0.25)


def _wait(state: RetryCallState) -> float:
    """Exponential backoff with jitter, never shorter than the server's Retry-After."""
    base = _backoff(state)
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, RetryableError) and error.retry_after is not None:
        return max(base, error.retry_after)
    return base


class HttpClient:
    """Async client for one run. Use as `async with HttpClient() as client:`."""

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        max_attempts: int = 6,
        rate_limit_scale: float = 1.0,
        ledger: RateLimitLedger | None = None,
        base_urls: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # Exchange name -> where to send its requests instead of its own host (the simulator).
        self.base_urls = dict(base_urls or {})
        self.ledger = ledger
        self.max_attempts = max_attempts
        self.rate_limit_scale = rate_limit_scale
        self.responses: list[RawResponse] = []
        self._session: aiohttp.ClientSession | None = None
        self._states: dict[str, _ExchangeState] = {}
        self._shared: dict[tuple[object, ...], asyncio.Future[Any]] = {}

    async def __aenter__(self) -> HttpClient:
        # Created here, inside the running loop, never at construction time.
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(self._count_sent)
        self._session = aiohttp.ClientSession(
            timeout=self.timeout,
            connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
            headers={"User-Agent": "lsr-heatmap/0.1", "Accept": "application/json"},
            trace_configs=[tracing],
        )
        # aiohttp re-sends an idempotent request by itself when a kept-alive connection was
        # reset, within milliseconds and past the rate limiter. Every retry goes through the
        # limiter instead (aiohttp's own test client turns it off the same way; no public knob).
        self._session._retry_connection = False
        return self

    async def _count_sent(self, _session: object, context: Any, _params: object) -> None:
        state = self._states.get(getattr(context, "trace_request_ctx", None) or "")
        if state is not None:
            state.sent += 1

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self.ledger is not None:
            for name, state in self._states.items():
                try:
                    self.ledger.save(name, state.base_url, self._history(state))
                except OSError as error:  # a full disk must not cost the fetch itself
                    log.warning("%s: rate-limit ledger not saved: %s", name, error)

    @staticmethod
    def _history(state: _ExchangeState) -> dict[str, list[tuple[float, int]]]:
        """The ledger's entries and this client's own, per bucket, still inside a window."""
        mine = {bucket: limiter.history() for bucket, limiter in state.limiters.items()}
        untouched = {b: e for b, e in state.earlier.items() if b not in mine}
        return {**untouched, **{b: e for b, e in mine.items() if e}}

    def stats(self) -> dict[str, dict[str, Any]]:
        """Requests and retries made per exchange, what the transport sent, and per bucket.

        `sent` equals `requests` unless something below the limiter re-sent a request."""
        return {
            name: {
                "requests": s.requests,
                "retries": s.retries,
                "sent": s.sent,
                "per_bucket": dict(s.per_bucket),
            }
            for name, s in self._states.items()
        }

    def _state(self, profile: ExchangeProfile) -> _ExchangeState:
        state = self._states.get(profile.name)
        if state is None:
            base = self.base_url(profile)
            earlier = self.ledger.load(profile.name, base) if self.ledger else {}
            state = _ExchangeState({}, asyncio.Semaphore(profile.concurrency), base, earlier)
            self._states[profile.name] = state
        return state

    def base_url(self, profile: ExchangeProfile) -> str:
        """Where this client sends the exchange's requests."""
        return self.base_urls.get(profile.name, profile.base_url).rstrip("/")

    def _limiter(
        self, profile: ExchangeProfile, state: _ExchangeState, bucket: str
    ) -> SlidingWindowLimiter:
        """The limiter of a bucket. `name:key` buckets get one limiter per key with the limit
        of `name`: OKX limits each instrument separately, for instance."""
        limiter = state.limiters.get(bucket)
        if limiter is None:
            limit = profile.limits[bucket.split(":", 1)[0]]
            limiter = state.limiters[bucket] = SlidingWindowLimiter(limit, self.rate_limit_scale)
            limiter.seed(state.earlier.get(bucket, ()))
        return limiter

    async def get_shared_json(
        self,
        profile: ExchangeProfile,
        endpoint: str,
        params: Mapping[str, str | int],
        *,
        buckets: Mapping[str, int],
        symbol: str | None = None,
    ) -> Any:
        """`get_json`, made once per run for identical requests: where one response carries
        several datasets (Gate's contract_stats holds four metric kinds and open interest)."""
        key = (profile.name, endpoint, tuple(sorted((k, str(v)) for k, v in params.items())))
        return await self.once(
            key, lambda: self.get_json(profile, endpoint, params, buckets=buckets, symbol=symbol)
        )

    async def once(self, key: tuple[object, ...], make: Callable[[], Awaitable[T]]) -> T:
        """The result of `make()`, awaited once per run and key however many tasks ask."""
        task = self._shared.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self._shared[key] = task
        return cast(T, await asyncio.shield(task))

    async def get_file(
        self,
        profile: ExchangeProfile,
        endpoint: str,
        *,
        buckets: Mapping[str, int],
        symbol: str | None = None,
    ) -> bytes | None:
        """GET a file (a zip, a checksum): its bytes, or None when it does not exist (404).

        Retried, rate limited and kept in the landing zone like every JSON request."""
        return cast(
            bytes | None,
            await self._with_retries(profile, endpoint, {}, buckets, symbol, _interpret_file),
        )

    async def get_json(
        self,
        profile: ExchangeProfile,
        endpoint: str,
        params: Mapping[str, str | int],
        *,
        buckets: Mapping[str, int],
        symbol: str | None = None,
    ) -> Any:
        """GET `endpoint`, returning the decoded body of a good answer.

        `buckets` names the rate-limit buckets this request counts against, with its cost in each.
        Raises `ExchangeBanned`, `DataUnavailable`, `ExchangeApiError`, or, once retries are spent,
        `RetryableError`.
        """
        return await self._with_retries(profile, endpoint, params, buckets, symbol, _interpret)

    async def _with_retries(
        self,
        profile: ExchangeProfile,
        endpoint: str,
        params: Mapping[str, str | int],
        buckets: Mapping[str, int],
        symbol: str | None,
        interpret: Interpreter,
    ) -> Any:
        state = self._state(profile)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(self.max_attempts),
            wait=_wait,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    state.retries += 1
                return await self._attempt(
                    profile, state, endpoint, params, buckets, symbol, interpret
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(
        self,
        profile: ExchangeProfile,
        state: _ExchangeState,
        endpoint: str,
        params: Mapping[str, str | int],
        buckets: Mapping[str, int],
        symbol: str | None,
        interpret: Interpreter,
    ) -> Any:
        if state.banned is not None:
            raise state.banned
        async with state.semaphore, AsyncExitStack() as slots:
            for bucket, cost in buckets.items():
                await slots.enter_async_context(self._limiter(profile, state, bucket).slot(cost))
                state.per_bucket[bucket] = state.per_bucket.get(bucket, 0) + 1
            state.requests += 1
            status, content, headers = await self._send(profile, endpoint, params, symbol)
        self.responses.append(
            RawResponse(
                exchange=profile.name,
                endpoint=endpoint,
                params=json.dumps(dict(params), sort_keys=True),
                symbol=symbol,
                status=status,
                body=_as_text(content),
                fetched_at=datetime.now(UTC).replace(tzinfo=None),
                simulated=headers.get("X-LSR-Simulated") == "1",
            )
        )
        try:
            return interpret(profile, endpoint, symbol, status, content, headers)
        except ExchangeBanned as banned:
            state.banned = banned
            raise

    async def _send(
        self,
        profile: ExchangeProfile,
        endpoint: str,
        params: Mapping[str, str | int],
        symbol: str | None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        assert self._session is not None, "HttpClient used outside `async with`"
        url = self.base_url(profile) + endpoint
        try:
            async with self._session.get(
                url,
                params={k: str(v) for k, v in params.items()},
                trace_request_ctx=profile.name,  # type: ignore[arg-type]  # any object is passed on
            ) as r:
                return r.status, await r.read(), r.headers
        except TimeoutError as error:
            raise RetryableError(
                profile.name, endpoint, "request timed out", symbol=symbol
            ) from error
        except aiohttp.ClientError as error:
            raise RetryableError(
                profile.name, endpoint, f"connection failed: {error}", symbol=symbol
            ) from error


Interpreter = Callable[[ExchangeProfile, str, str | None, int, bytes, Mapping[str, str]], Any]


def _as_text(content: bytes) -> str:
    """A body as the landing zone keeps it: text, or base64 for binary files (zips)."""
    try:
        return content.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(content).decode()


def _interpret_file(
    profile: ExchangeProfile,
    endpoint: str,
    symbol: str | None,
    status: int,
    content: bytes,
    headers: Mapping[str, str],
) -> bytes | None:
    """A file's bytes; None for 404 (not published); retryable or final errors otherwise."""
    where: dict[str, Any] = {"symbol": symbol, "status": status}
    if status == 200:
        return content
    if status == 404:
        return None
    snippet = content[:200].decode(errors="replace")
    if status == 429 or status >= 500:
        raise RetryableError(
            profile.name,
            endpoint,
            f"HTTP {status}: {snippet}",
            retry_after=_retry_after(headers),
            **where,
        )
    raise ExchangeApiError(profile.name, endpoint, f"unexpected answer: {snippet}", **where)


def _interpret(
    profile: ExchangeProfile,
    endpoint: str,
    symbol: str | None,
    status: int,
    content: bytes,
    headers: Mapping[str, str],
) -> Any:
    """Turn one HTTP answer into data or the right error."""
    text = content.decode(errors="replace")
    where: dict[str, Any] = {"symbol": symbol, "status": status}
    snippet = text[:200]
    if status in profile.ban_statuses:
        raise ExchangeBanned(profile.name, endpoint, f"IP banned: {snippet}", **where)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    envelope = profile.error_of(status, body) if body is not None else None
    if status == 429 or (envelope is not None and envelope.kind == "rate_limit"):
        detail = envelope.message if envelope else f"rate limited: {snippet}"
        raise RetryableError(
            profile.name,
            endpoint,
            detail,
            retry_after=_retry_after(headers),
            code=envelope.code if envelope else None,
            **where,
        )
    if envelope is not None and envelope.kind == "busy":
        raise RetryableError(profile.name, endpoint, envelope.message, code=envelope.code, **where)
    if status >= 500:
        raise RetryableError(profile.name, endpoint, f"server error: {snippet}", **where)
    if envelope is not None:
        error_type: type[ExchangeError] = (
            DataUnavailable if envelope.kind == "unavailable" else ExchangeApiError
        )
        raise error_type(profile.name, endpoint, envelope.message, code=envelope.code, **where)
    if body is None:
        if status == 200 or text.lstrip()[:1] in ("{", "["):
            # A cut-off body: the exchange (or a proxy) dropped the connection mid-answer. An
            # error envelope can be cut too (Bitget's 40054 arrives as HTTP 400), so any JSON
            # that does not parse is asked for again; an HTML error page is final.
            raise RetryableError(profile.name, endpoint, f"invalid JSON body: {snippet}", **where)
        raise ExchangeApiError(profile.name, endpoint, f"unexpected body: {snippet}", **where)
    if status >= 400:
        raise ExchangeApiError(profile.name, endpoint, f"unexpected body: {snippet}", **where)
    return body
