"""The shared HTTP layer against the simulator: limits kept, faults retried, timeouts, bans."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.errors import ExchangeApiError, ExchangeBanned, RetryableError
from pipelines.exchanges import binance, bybit, connector
from pipelines.exchanges.base import Window
from pipelines.http import (
    HttpClient,
    RateLimit,
    RateLimitLedger,
    SlidingWindowLimiter,
    _interpret,
)
from pipelines.simulator import FaultConfig, run_simulator

SCALE = 0.01


class FakeClock:
    """A clock that only moves when someone sleeps: no real waiting, no timing flakiness."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def _limiter(limit: RateLimit, clock: FakeClock) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(limit, clock=clock, sleep=clock.sleep)


async def test_sliding_window_never_admits_more_than_the_limit_in_any_window() -> None:
    clock = FakeClock()
    limiter = _limiter(RateLimit(5, 10.0), clock)
    stamps = []
    for _ in range(23):
        async with limiter.slot():
            stamps.append(clock.now)
            clock.now += 0.5  # the request takes half a second
    window = limiter.window
    for i, start in enumerate(stamps):
        assert sum(1 for t in stamps[i:] if t < start + window) <= 5
    # One after another, each counted until a window after its answer came back.
    assert stamps[5] >= stamps[0] + 0.5 + 10.0


async def test_a_weighted_request_uses_its_weight() -> None:
    clock = FakeClock()
    limiter = _limiter(RateLimit(10, 60.0), clock)
    async with limiter.slot(cost=6):
        answered = clock.now
    async with limiter.slot(cost=5):  # 11 > 10: waits for the window to pass
        assert clock.now >= answered + 60.0


async def test_requests_in_flight_count_until_they_are_answered() -> None:
    clock = FakeClock()
    limiter = _limiter(RateLimit(2, 10.0), clock)
    admitted = []

    async def request(n: int, takes: float) -> None:
        async with limiter.slot():
            admitted.append((n, clock.now))
            await clock.sleep(takes)

    await asyncio.gather(request(1, 30.0), request(2, 1.0), request(3, 1.0))
    third = dict(admitted)[3]
    assert third >= 1000.0 + 1.0 + 10.0  # waited for request 2's answer plus a window


def _yesterday() -> Window:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Window.of(day - timedelta(days=1), day)


async def test_client_stays_inside_the_simulators_rate_limits(monkeypatch) -> None:
    """More requests than one Bybit window allows: the limiter spreads them, none is refused."""
    scale = 0.5  # a 2.5 s window: long enough for 600 requests to pile into it
    async with run_simulator(rate_limit_scale=scale, exchanges=("bybit",)) as sim:
        async with HttpClient(rate_limit_scale=scale, base_urls=sim.base_urls) as client:
            await asyncio.gather(
                *(
                    bybit.fetch_ls(client, "BTCUSDT", "global_account", "1h", _yesterday())
                    for _ in range(700)
                )
            )
        assert sim.stats.rate_limited("bybit") == 0
        assert sim.stats.total_requests("bybit") == 700
        assert sim.stats.max_requests_in_window("bybit", "ip-5s") <= 600


@pytest.mark.parametrize("shared_ledger", [True, False])
async def test_back_to_back_runs_share_one_window_through_the_ledger(
    monkeypatch, tmp_path, shared_ledger: bool
) -> None:
    """Two runs of 400 requests each, one after the other, as two backfill partitions are.

    Bybit allows 600 per window per IP: the second run must count the first run's requests.
    Without the ledger (the control) it does not, and the exchange sees more than allowed.
    """
    scale = 0.5
    async with run_simulator(rate_limit_scale=scale, exchanges=("bybit",)) as sim:
        for run in range(2):
            ledger = RateLimitLedger(tmp_path / (".rate-limits" if shared_ledger else str(run)))
            async with HttpClient(
                rate_limit_scale=scale, ledger=ledger, max_attempts=1, base_urls=sim.base_urls
            ) as client:
                await asyncio.gather(
                    *(
                        bybit.fetch_ls(client, "BTCUSDT", "global_account", "1h", _yesterday())
                        for _ in range(400)
                    ),
                    return_exceptions=True,
                )
        peak = sim.stats.max_requests_in_window("bybit", "ip-5s")
        refused = sim.stats.rate_limited("bybit")
    if shared_ledger:
        assert peak <= 600 and refused == 0
    else:
        assert peak > 600 or refused > 0


async def test_429_5xx_and_truncated_bodies_are_retried_to_the_same_answer(monkeypatch) -> None:
    window = _yesterday()
    async with (
        run_simulator(rate_limit_scale=SCALE) as sim,
        HttpClient(rate_limit_scale=SCALE, base_urls=sim.base_urls) as client,
    ):
        clean = await binance.fetch_ls(client, "BTCUSDT", "top_position", "1h", window)
    faults = FaultConfig(rate=0.5, kinds=("429", "5xx", "truncated"), seed=3)
    async with run_simulator(rate_limit_scale=SCALE, faults=faults) as sim:
        async with HttpClient(
            rate_limit_scale=SCALE, max_attempts=10, base_urls=sim.base_urls
        ) as client:
            pages = [
                await binance.fetch_ls(client, "BTCUSDT", "top_position", "1h", window)
                for _ in range(6)
            ]
            retries = client.stats()["binance"]["retries"]
        assert sum(sim.stats.faults.values()) > 0
    assert all(page == clean for page in pages)
    assert retries == sum(sim.stats.faults.values())


async def test_a_stalled_answer_times_out_and_is_retried(monkeypatch) -> None:
    faults = FaultConfig(rate=1.0, kinds=("timeout",), timeout_seconds=5.0)
    async with (
        run_simulator(faults=faults) as sim,
        HttpClient(timeout=0.2, max_attempts=2, base_urls=sim.base_urls) as client,
    ):
        with pytest.raises(RetryableError, match="timed out") as caught:
            await bybit.fetch_ls(client, "BTCUSDT", "global_account", "1h", _yesterday())
        assert client.stats()["bybit"]["requests"] == 2
    assert caught.value.exchange == "bybit" and caught.value.symbol == "BTCUSDT"


async def test_a_ban_stops_every_later_call_to_that_exchange(monkeypatch) -> None:
    async with run_simulator(faults=FaultConfig(rate=1.0, kinds=("ban",))) as sim:
        async with HttpClient(base_urls=sim.base_urls) as client:
            for _ in range(3):
                with pytest.raises(ExchangeBanned, match="bybit"):
                    await bybit.fetch_ls(client, "BTCUSDT", "global_account", "1h", _yesterday())
        assert sim.stats.total_requests("bybit") == 1


@pytest.mark.parametrize(
    ("module", "status", "body"),
    [
        ("bitget", 200, '{"code":"40725","msg":"service return an error","data":null}'),
        (
            "htx",
            200,
            '{"status":"error","err_code":1004,"err_msg":"System busy. Please try'
            ' again later","ts":1}',
        ),
        ("bybit", 200, '{"retCode":10016,"retMsg":"Internal server error.","result":{}}'),
        (
            "okx",
            429,
            '{"code":"50013","data":[],"msg":"Systems are busy. Please try again later."}',
        ),
        ("binance", 503, '{"code":-1008,"msg":"Server is currently overloaded."}'),
        ("gate", 500, '{"label":"SERVER_ERROR","message":"Internal server error"}'),
        # A "not published" envelope cut in half arrives as unparseable JSON with HTTP 400.
        ("bitget", 400, '{"code":"40054","msg":"The data fetched by BTCU'),
    ],
)
def test_an_exchanges_own_try_again_answer_is_retried(module: str, status: int, body: str) -> None:
    profile = connector(module).profile()
    with pytest.raises(RetryableError, match=f"^{module} /x symbol=BTC"):
        _interpret(profile, "/x", "BTC", status, body.encode(), {})


def test_an_html_error_page_on_a_client_error_is_final() -> None:
    profile = connector("bitget").profile()
    with pytest.raises(ExchangeApiError, match="HTTP 404"):
        _interpret(profile, "/x", None, 404, b"<html><body>Not Found</body></html>", {})
