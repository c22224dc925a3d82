"""The simulator's shared core: app factory, rate limiting, fault injection, request stats, runners.

Exchange modules (`binance.py`, `bybit.py`, ...) describe themselves as an `ExchangeSpec`; this
module mounts each under `/<exchange>`, puts every request through the same pipeline

    ban check -> sliding-window rate limits -> fault dice -> handler -> drift/truncation -> headers

and counts what happened in `SimStats`. Everything time-dependent reads the injected `clock`, so
tests freeze time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from pipelines.simulator import binance, bitget, bybit, gate, htx, okx
from pipelines.simulator.spec import (
    Breach,
    Call,
    ExchangeSpec,
    Instrument,
    Json,
    RateLimit,
    Refusal,
    Reply,
    Route,
)

SPECS: dict[str, ExchangeSpec] = {
    spec.name: spec
    for spec in (binance.SPEC, bybit.SPEC, okx.SPEC, bitget.SPEC, gate.SPEC, htx.SPEC)
}
EXCHANGES: tuple[str, ...] = tuple(SPECS)
FAULT_KINDS: tuple[str, ...] = (
    "429",  # the exchange's over-limit answer
    "5xx",  # a gateway's HTML error page
    "timeout",  # the answer stalls for `timeout_seconds`
    "truncated",  # status and headers as usual, the body cut in half
    "busy",  # the exchange's own "try again" envelope (often HTTP 200: Bitget 40725, HTX 1004)
    "reset",  # the connection is dropped before any answer
    "drift",  # a data field renamed
    "ban",  # the ban answer
)
SIMULATED_HEADER = "X-LSR-Simulated"

Clock = Callable[[], float]


@dataclass(frozen=True)
class FaultConfig:
    """Random faults: each request is faulted with probability `rate`, kind drawn from `kinds`.

    The draws come from `random.Random(seed)` in request order, so a run is reproducible. Faults
    never change the data of a correct answer; they replace or mangle the answer.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "5xx", "timeout", "truncated", "busy", "reset")
    seed: int = 0
    timeout_seconds: float = 30.0  # how long a "timeout" fault stalls before answering
    # Bursts: a faulted request, asked again, is faulted again with probability `repeat` (None:
    # `rate`, independent draws), at most `max_in_a_row` times in a row (None: no cap).
    repeat: float | None = None
    max_in_a_row: int | None = None
    # Only the first `first_requests` requests can be faulted (an outage that ends); None: all.
    first_requests: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {self.rate}")


# ---------------------------------------------------------------------------------------------
# Stats


@dataclass
class SimStats:
    """What the simulator saw, since the app started. Keys are (exchange, ...) tuples.

    - `requests[(exchange, path)]`: requests received per endpoint (path without the prefix),
      including refused and faulted ones.
    - `statuses[(exchange, status)]`: responses per HTTP status; 429/418/403 are rate-limit or
      ban answers (`rate_limited(exchange)` sums them).
    - `faults[(exchange, kind)]`: injected faults per kind.
    - `max_requests_in_window(exchange, bucket)` vs `allowed_in_window(exchange, bucket)`: the
      highest usage one IP reached inside one sliding window, and the real limit. Buckets:
      Binance "weight-1m" and each "/futures/data/..." path; Bybit "ip-5s" (`buckets()`).
    """

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    faults: Counter[tuple[str, str]] = field(default_factory=Counter)
    _peaks: dict[tuple[str, str], int] = field(default_factory=dict)
    _allowed: dict[tuple[str, str], int] = field(default_factory=dict)

    def max_requests_in_window(self, exchange: str, bucket: str) -> int:
        return self._peaks.get((exchange, bucket), 0)

    def allowed_in_window(self, exchange: str, bucket: str) -> int:
        return self._allowed[(exchange, bucket)]

    def buckets(self, exchange: str) -> list[str]:
        return [bucket for ex, bucket in self._allowed if ex == exchange]

    def rate_limited(self, exchange: str) -> int:
        return sum(self.statuses[(exchange, status)] for status in (403, 418, 429))

    def total_requests(self, exchange: str) -> int:
        return sum(n for (ex, _path), n in self.requests.items() if ex == exchange)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly flat summary (also served at GET /_sim/stats).

        `{"requests": {"binance /fapi/v1/klines": 3, ...}, "statuses": {"binance 200": 3},
        "faults": {"bybit 5xx": 1}, "windows": {"bybit ip-5s": {"max_used": 9, "allowed": 600}}}`
        """
        return {
            "requests": {f"{ex} {path}": n for (ex, path), n in sorted(self.requests.items())},
            "statuses": {f"{ex} {status}": n for (ex, status), n in sorted(self.statuses.items())},
            "faults": {f"{ex} {kind}": n for (ex, kind), n in sorted(self.faults.items())},
            "windows": {
                f"{ex} {bucket}": {
                    "max_used": self.max_requests_in_window(ex, bucket),
                    "allowed": allowed,
                }
                for (ex, bucket), allowed in self._allowed.items()
            },
        }

    def _register(self, exchange: str, limits: Iterable[RateLimit]) -> None:
        for limit in limits:
            self._allowed[(exchange, limit.bucket)] = limit.capacity

    def _observe(self, exchange: str, bucket: str, used: int) -> None:
        key = (exchange, bucket)
        self._peaks[key] = max(self._peaks.get(key, 0), used)


# ---------------------------------------------------------------------------------------------
# Rate limiting


class _Limiter:
    """Sliding windows per (IP, bucket), strikes (429s answered) and bans for one exchange.

    Refused requests do not use up the window; they count as strikes, and a breach after
    `strikes_before_ban` strikes inside the window bans the IP (Binance 418; Bybit bans at once).
    """

    def __init__(self, spec: ExchangeSpec, scale: float, stats: SimStats) -> None:
        self._spec = spec
        self._scale = scale
        self._stats = stats
        self._limits = {limit.bucket: limit for limit in spec.limits}
        self._used: dict[tuple[str, str], deque[tuple[float, int]]] = defaultdict(deque)
        # Units in each window, kept beside it: summing a window of thousands per request would
        # cost more than answering the request.
        self._in_window: dict[tuple[str, str], int] = defaultdict(int)
        self._strikes: dict[str, deque[float]] = defaultdict(deque)
        self._banned_until: dict[str, float] = {}

    def admit(self, ip: str, costs: Mapping[str, int], now: float) -> Reply | None:
        """None if the request may proceed (its cost is then recorded), else the refusal."""
        until = self._banned_until.get(ip)
        if until is not None and now < until:
            return self._spec.banned(_breach(ip, now, until))
        if until is not None:  # the ban is over: a fresh start
            del self._banned_until[ip]
            self._strikes.pop(ip, None)
        for bucket, units in costs.items():
            limit = self._limits.get(bucket)
            if limit is not None and self.usage(ip, bucket, now) + units > limit.capacity:
                return self._refuse(ip, limit, units, now)
        for bucket, units in costs.items():
            if bucket in self._limits:
                self._used[(ip, bucket)].append((now, units))
                self._in_window[(ip, bucket)] += units
                self._stats._observe(self._spec.name, bucket, self.usage(ip, bucket, now))
        return None

    def usage(self, ip: str, bucket: str, now: float) -> int:
        """Units used by `ip` in the window ending now."""
        limit = self._limits.get(bucket)
        entries = self._used.get((ip, bucket))
        if limit is None or not entries:
            return 0
        horizon = now - limit.window_s * self._scale
        while entries and entries[0][0] <= horizon:
            self._in_window[(ip, bucket)] -= entries.popleft()[1]
        return self._in_window[(ip, bucket)]

    def ban_seconds(self) -> float:
        return self._spec.ban_s * self._scale

    def _refuse(self, ip: str, limit: RateLimit, units: int, now: float) -> Reply:
        window = limit.window_s * self._scale
        strikes = self._strikes[ip]
        while strikes and strikes[0] <= now - window:
            strikes.popleft()
        if len(strikes) >= self._spec.strikes_before_ban:
            until = now + self.ban_seconds()
            self._banned_until[ip] = until
            strikes.clear()
            return self._spec.banned(_breach(ip, now, until, limit))
        strikes.append(now)
        free_at = self._free_at(ip, limit, units, now)
        return self._spec.too_many(_breach(ip, now, free_at, limit))

    def _free_at(self, ip: str, limit: RateLimit, units: int, now: float) -> float:
        """When enough old requests leave the window for this one to fit."""
        window = limit.window_s * self._scale
        excess = self.usage(ip, limit.bucket, now) + units - limit.capacity
        freed = 0
        for t, used in self._used[(ip, limit.bucket)]:
            freed += used
            if freed >= excess:
                return t + window
        return now + window


def _breach(ip: str, now: float, until: float, limit: RateLimit | None = None) -> Breach:
    return Breach(
        ip=ip,
        now_ms=int(now * 1000),
        retry_after_s=max(1, math.ceil(until - now)),
        until_ms=int(until * 1000),
        limit=limit,
    )


# ---------------------------------------------------------------------------------------------
# Faults


class _Dice:
    """The seeded fault sequence shared by all exchanges of one app."""

    def __init__(self, config: FaultConfig | None) -> None:
        self.config = config or FaultConfig()
        self._rng = random.Random(self.config.seed)

        self._streaks: dict[object, int] = {}  # consecutive faults per request
        self._rolled = 0

    def roll(self, request: object = None) -> str | None:
        """The fault for this request, if any; `request` identifies it across retries."""
        config = self.config
        self._rolled += 1
        over = config.first_requests is not None and self._rolled > config.first_requests
        if config.rate <= 0 or not config.kinds or over:
            return None
        streak = self._streaks.pop(request, 0)
        capped = config.max_in_a_row is not None and streak >= config.max_in_a_row
        chance = config.repeat if streak and config.repeat is not None else config.rate
        if capped or self._rng.random() >= chance:
            return None
        self._streaks[request] = streak + 1
        return self._rng.choice(config.kinds)

    def gateway_status(self) -> int:
        return self._rng.choice((502, 503))


def _drop_connection(request: web.Request) -> None:
    """A connection reset: the socket closes with no answer (the reply written later is lost)."""
    if request.transport is not None:
        request.transport.abort()


def _server_error(status: int) -> Reply:
    title = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}[status]
    html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return Reply(status, html, content_type="text/html")


def drifted(body: Json, renames: Iterable[tuple[str, str]]) -> Json:
    """Schema drift: rename the first listed field the body has, everywhere it occurs.

    Bodies with none of those fields (instrument lists, kline arrays) are left as they are, so
    the drift hits the named fields of the data feeds.
    """
    for old, new in renames:
        if _has_key(body, old):
            return _rename(body, old, new)
    return body


def _has_key(body: Json, key: str) -> bool:
    if isinstance(body, dict):
        return key in body or any(_has_key(v, key) for v in body.values())
    if isinstance(body, list):
        return any(_has_key(v, key) for v in body)
    return False


def _rename(body: Json, old: str, new: str) -> Json:
    if isinstance(body, dict):
        return {(new if k == old else k): _rename(v, old, new) for k, v in body.items()}
    if isinstance(body, list):
        return [_rename(v, old, new) for v in body]
    return body


# ---------------------------------------------------------------------------------------------
# The app


@dataclass
class _Context:
    clock: Clock
    stats: SimStats
    dice: _Dice
    closing: asyncio.Event  # set at shutdown, so stalled "timeout" answers end promptly


@dataclass
class _Venue:
    spec: ExchangeSpec
    instruments: Mapping[str, Instrument]
    limiter: _Limiter


STATS_KEY: web.AppKey[SimStats] = web.AppKey("lsr_simulator_stats", SimStats)


def create_app(
    *,
    exchanges: Iterable[str] = EXCHANGES,
    clock: Clock = time.time,
    faults: FaultConfig | None = None,
    rate_limit_scale: float = 1.0,
    listing_gaps: bool = True,
) -> web.Application:
    """An aiohttp app serving each exchange under `/<exchange>/...` plus GET /_sim/stats."""
    unknown = [name for name in exchanges if name not in SPECS]
    if unknown:
        raise ValueError(f"unknown exchanges {unknown}; known: {list(SPECS)}")
    if rate_limit_scale <= 0:
        raise ValueError("rate_limit_scale must be positive")
    stats = SimStats()
    ctx = _Context(clock, stats, _Dice(faults), asyncio.Event())
    app = web.Application()
    now_ms = int(clock() * 1000)
    for name in exchanges:
        spec = SPECS[name]
        listed = {inst.symbol: inst for inst in spec.instruments(listing_gaps, now_ms)}
        venue = _Venue(spec, listed, _Limiter(spec, rate_limit_scale, stats))
        stats._register(name, spec.limits)
        for route in spec.routes:
            app.router.add_get(f"/{name}{route.path}", _endpoint(ctx, venue, route))
    app.router.add_get("/_sim/stats", _stats_endpoint)
    app.on_response_prepare.append(_mark_simulated)
    app.on_shutdown.append(_closing(ctx))
    app[STATS_KEY] = stats
    return app


def get_stats(app: web.Application) -> SimStats:
    return app[STATS_KEY]


def _endpoint(
    ctx: _Context, venue: _Venue, route: Route
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    name = venue.spec.name

    async def handle(request: web.Request) -> web.StreamResponse:
        now = ctx.clock()
        ip = request.remote or "unknown"
        query = {k: request.query[k] for k in request.query}  # first value of each key
        query |= request.match_info  # path parameters ({symbol} in the archive's paths)
        ctx.stats.requests[(name, route.path)] += 1
        reply = venue.limiter.admit(ip, route.cost(query), now)
        fault = None
        if reply is None:
            fault = ctx.dice.roll((name, route.path, tuple(sorted(query.items()))))
            if fault is not None:
                ctx.stats.faults[(name, fault)] += 1
            if fault == "reset":
                _drop_connection(request)
            reply = await _answer(ctx, venue, route, query, fault, ip)
        response = _response(reply, truncate=fault == "truncated")
        for header, bucket in venue.spec.usage_headers:
            response.headers[header] = str(venue.limiter.usage(ip, bucket, ctx.clock()))
        ctx.stats.statuses[(name, response.status)] += 1
        return response

    return handle


async def _answer(
    ctx: _Context, venue: _Venue, route: Route, query: Mapping[str, str], fault: str | None, ip: str
) -> Reply:
    now = ctx.clock()
    if fault == "429":
        return venue.spec.throttled(int(now * 1000))
    if fault == "busy":
        return venue.spec.busy(int(now * 1000))
    if fault == "5xx":
        return _server_error(ctx.dice.gateway_status())
    if fault == "ban":  # the ban answer only; the IP is not actually banned afterwards
        return venue.spec.banned(_breach(ip, now, now + venue.limiter.ban_seconds()))
    if fault == "timeout":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.closing.wait(), ctx.dice.config.timeout_seconds)
        now = ctx.clock()
    call = Call(venue.spec.name, route.path, query, int(now * 1000), venue.instruments)
    try:
        reply = route.handler(call)
    except Refusal as refusal:
        reply = refusal.reply
    if fault == "drift" and reply.status == 200:
        reply = replace(reply, body=drifted(reply.body, venue.spec.drift))
    return reply


def _response(reply: Reply, *, truncate: bool) -> web.Response:
    if isinstance(reply.body, bytes):
        body = reply.body
    elif reply.content_type == "application/json":
        body = json.dumps(reply.body, separators=(",", ":")).encode()
    else:
        body = str(reply.body).encode()
    if truncate:  # valid status and headers, JSON cut in half
        body = body[: len(body) // 2]
    return web.Response(
        status=reply.status, body=body, content_type=reply.content_type, headers=dict(reply.headers)
    )


async def _stats_endpoint(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS_KEY].as_dict())


async def _mark_simulated(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers[SIMULATED_HEADER] = "1"


def _closing(ctx: _Context) -> Callable[[web.Application], Awaitable[None]]:
    async def on_shutdown(_app: web.Application) -> None:
        ctx.closing.set()

    return on_shutdown


# ---------------------------------------------------------------------------------------------
# Runners


def environment_for(base_urls: Mapping[str, str]) -> dict[str, str]:
    """The settings that point the pipeline at a simulator: each exchange's
    `LSR_<EXCHANGE>_BASE_URL`, and Binance's archive, served under Binance's prefix."""
    env = {f"LSR_{name.upper()}_BASE_URL": url for name, url in base_urls.items()}
    if "binance" in base_urls:
        env["LSR_BINANCE_ARCHIVE_URL"] = base_urls["binance"]
    return env


@dataclass(frozen=True)
class RunningSimulator:
    host: str
    port: int
    app: web.Application
    exchanges: tuple[str, ...]

    @property
    def base_urls(self) -> dict[str, str]:
        """exchange -> base URL to use in place of the real host, e.g. .../binance."""
        return {name: f"http://{self.host}:{self.port}/{name}" for name in self.exchanges}

    @property
    def environment(self) -> dict[str, str]:
        return environment_for(self.base_urls)

    @property
    def stats(self) -> SimStats:
        return self.app[STATS_KEY]


@contextlib.asynccontextmanager
async def run_simulator(
    port: int = 0, *, host: str = "127.0.0.1", **app_options: Any
) -> AsyncIterator[RunningSimulator]:
    """Serve `create_app(**app_options)` on host:port (a free port when 0) for the block."""
    app = create_app(**app_options)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        exchanges = tuple(app_options.get("exchanges", EXCHANGES))
        yield RunningSimulator(host, bound, app, exchanges)
    finally:
        await runner.cleanup()


class SimulatorThread:
    """The simulator on its own event loop in a daemon thread, for synchronous callers.

    with SimulatorThread(rate_limit_scale=0.05) as sim:
        fetch(sim.base_urls["binance"])
        print(sim.stats.as_dict())
    """

    def __init__(self, port: int = 0, **app_options: Any) -> None:
        self._port = port
        self._options = app_options
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._running: RunningSimulator | None = None
        self._error: BaseException | None = None

    def start(self) -> SimulatorThread:
        """Start serving; returns once the server is listening (or raises its startup error)."""
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="lsr-simulator", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop may have closed on its own
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)

    def stats_snapshot(self) -> dict[str, Any]:
        """`stats.as_dict()` taken on the server's own thread, safe while it is serving."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("simulator thread is not started")

        async def take() -> dict[str, Any]:
            return self.stats.as_dict()

        return asyncio.run_coroutine_threadsafe(take(), loop).result(timeout=10)

    @property
    def running(self) -> RunningSimulator:
        if self._running is None:
            raise RuntimeError("simulator thread is not started")
        return self._running

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def base_urls(self) -> dict[str, str]:
        return self.running.base_urls

    @property
    def environment(self) -> dict[str, str]:
        return environment_for(self.base_urls)

    @property
    def stats(self) -> SimStats:
        return self.running.stats

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with run_simulator(self._port, **self._options) as running:
                self._running = running
                self._ready.set()
                await self._stop.wait()
        except BaseException as error:  # surfaced by start() instead of dying in the thread
            self._error = error
        finally:
            self._ready.set()


class SimulatorProcess:
    """The simulator in a child process (`python -m pipelines.simulator`) on a free port.

    In a thread it would share the interpreter lock with the client it serves; in its own
    process the demo uses both cores. Stats are at `<base>/_sim/stats`.
    """

    def __init__(
        self,
        *,
        rate_limit_scale: float = 1.0,
        faults: FaultConfig | None = None,
        exchanges: Iterable[str] = EXCHANGES,
        startup_timeout: float = 30.0,
    ) -> None:
        self._scale = rate_limit_scale
        self._faults = faults or FaultConfig()
        self._exchanges = tuple(exchanges)
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_urls(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{self.port}/{name}" for name in self._exchanges}

    @property
    def environment(self) -> dict[str, str]:
        return environment_for(self.base_urls)

    def start(self) -> SimulatorProcess:
        self.port = _free_port()
        command = [
            sys.executable, "-m", "pipelines.simulator", "--port", str(self.port),
            "--exchanges", ",".join(self._exchanges),
            "--rate-limit-scale", str(self._scale),
            "--fault-rate", str(self._faults.rate),
            "--fault-kinds", ",".join(self._faults.kinds),
            "--fault-seed", str(self._faults.seed),
            "--timeout-seconds", str(self._faults.timeout_seconds),
        ]  # fmt: skip
        if self._faults.repeat is not None:
            command += ["--fault-repeat", str(self._faults.repeat)]
        if self._faults.max_in_a_row is not None:
            command += ["--fault-max-in-a-row", str(self._faults.max_in_a_row)]
        command += ["--parent-pid", str(os.getpid())]  # a kill -9 of ours takes it down too
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self._startup_timeout
        while not _listening(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                self.stop()
                raise RuntimeError(f"the simulator did not start: {error.strip()[-500:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def serve(port: int = 8765, **app_options: Any) -> None:
    """Serve until interrupted (the `lsr simulate` command); prints what to export."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # stop cleanly under process managers too
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop.set)
        async with run_simulator(port, **app_options) as running:
            print(
                f"LSR exchange simulator (synthetic data) on http://{running.host}:"
                f"{running.port}  -- stats at /_sim/stats; Ctrl-C to stop",
                flush=True,
            )
            for name, value in running.environment.items():
                print(f"export {name}={value}", flush=True)
            await stop.wait()
        print("simulator stopped", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
