"""The simulator's shared machinery, as a client sees it on any exchange: listings, the
series' determinism, faults and the runners.

The clock is frozen and moved by hand: no test sleeps to observe timing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from pipelines.simulator import (
    EXCHANGES,
    FaultConfig,
    SimulatorThread,
    get_stats,
    run_simulator,
)
from tests.clock import NOW, Clock
from tests.simulator.conftest import Make, fetch, ok

# 2026-09-15 08:24:21.467 UTC: the moment of the real Bybit capture in the shared payloads.
HOUR = 3_600_000
DAY = 86_400_000
NOW_MS = int(NOW * 1000)
UNIVERSE = Path(__file__).resolve().parents[2] / "pipelines" / "universe.yaml"
BINANCE_RATIOS = (
    "/futures/data/globalLongShortAccountRatio",
    "/futures/data/topLongShortAccountRatio",
    "/futures/data/topLongShortPositionRatio",
)


def universe_coins() -> list[str]:
    import yaml

    return [str(c) for c in yaml.safe_load(UNIVERSE.read_text())["coins"]]


async def test_every_response_is_marked_simulated(sim: TestClient) -> None:
    for path in ("/binance/fapi/v1/exchangeInfo", "/bybit/v5/market/kline", "/nowhere"):
        _, _, headers = await fetch(sim, path)
        assert headers["X-LSR-Simulated"] == "1"


# ---------------------------------------------------------------------------------------------
# Listings


async def test_listings_cover_the_universe_with_native_names_and_gaps(sim: TestClient) -> None:
    info = await ok(sim, "/binance/fapi/v1/exchangeInfo")
    assert info["timezone"] == "UTC" and info["serverTime"] == NOW_MS
    binance = {s["symbol"]: s for s in info["symbols"]}
    usable = {
        s
        for s, e in binance.items()
        if e["contractType"] == "PERPETUAL"
        and e["quoteAsset"] == "USDT"
        and e["status"] == "TRADING"
    }
    assert {"1000PEPEUSDT", "1000SHIBUSDT", "1000BONKUSDT", "1000FLOKIUSDT"} <= usable
    assert {e["contractType"] for e in binance.values()} > {"PERPETUAL"}
    assert {e["quoteAsset"] for e in binance.values()} > {"USDT"}
    assert {e["status"] for e in binance.values()} > {"TRADING"}

    bybit = await ok(sim, "/bybit/v5/market/instruments-info", category="linear")
    assert bybit["result"]["nextPageCursor"] == ""
    bybit_symbols = {e["symbol"] for e in bybit["result"]["list"]}
    assert {"1000PEPEUSDT", "SHIB1000USDT", "1000BONKUSDT", "1000FLOKIUSDT"} <= bybit_symbols
    assert len(bybit_symbols) > 60

    def listed(symbols: set[str], native: dict[str, str]) -> set[str]:
        return {c for c in universe_coins() if native.get(c, f"{c}USDT") in symbols}

    on_binance = listed(usable, {c: f"1000{c}USDT" for c in ("PEPE", "SHIB", "BONK", "FLOKI")})
    on_bybit = listed(
        bybit_symbols,
        {
            "PEPE": "1000PEPEUSDT",
            "SHIB": "SHIB1000USDT",
            "BONK": "1000BONKUSDT",
            "FLOKI": "1000FLOKIUSDT",
        },
    )
    assert set(universe_coins()) - on_binance == {"TON"}
    assert set(universe_coins()) - on_bybit == {"ICP"}
    assert len(on_binance) >= 47 and len(on_bybit) >= 47
    assert len(universe_coins()) - len(on_binance) <= 2


async def test_listing_gaps_can_be_switched_off(make_sim: Make) -> None:
    sim = await make_sim(listing_gaps=False)
    rows = await ok(
        sim,
        "/binance/futures/data/globalLongShortAccountRatio",
        symbol="TONUSDT",
        period="1h",
        limit=1,
    )
    assert len(rows) == 1
    body = await ok(sim, "/bybit/v5/market/instruments-info", category="linear", symbol="ICPUSDT")
    assert [e["symbol"] for e in body["result"]["list"]] == ["ICPUSDT"]


# ---------------------------------------------------------------------------------------------
# Determinism and consistency of the series


async def test_same_request_same_answer_and_closed_buckets_never_change(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock)
    path = "/binance/futures/data/topLongShortPositionRatio"
    first = await ok(sim, path, symbol="SOLUSDT", period="1h", limit=48)
    assert await ok(sim, path, symbol="SOLUSDT", period="1h", limit=48) == first
    other = await make_sim(clock=Clock())  # a separate app: same synthetic history
    assert await ok(other, path, symbol="SOLUSDT", period="1h", limit=48) == first

    clock.advance(3 * 3600)
    later = await ok(sim, path, symbol="SOLUSDT", period="1h", limit=48)
    closed = {r["timestamp"]: r for r in first[:-1]}
    overlap = [r for r in later if r["timestamp"] in closed]
    assert len(overlap) == 44
    assert all(r == closed[r["timestamp"]] for r in overlap)


async def test_the_open_bucket_is_provisional_until_it_closes(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock)
    path = "/bybit/v5/market/account-ratio"
    current = str(NOW_MS - NOW_MS % HOUR)
    seen = set()
    for _ in range(10):  # ten minutes inside the open hour
        body = await ok(sim, path, category="linear", symbol="BTCUSDT", period="1h", limit=3)
        newest = body["result"]["list"][0]
        assert newest["timestamp"] == current
        seen.add(newest["buyRatio"])
        clock.advance(60)
    assert len(seen) > 1
    clock.now = NOW + 2 * 3600  # the hour has closed: its value is now final
    final = await ok(sim, path, category="linear", symbol="BTCUSDT", period="1h", limit=3)
    clock.now = NOW + 30 * 86400
    again = await ok(
        sim, path, category="linear", symbol="BTCUSDT", period="1h", endTime=int(current), limit=1
    )
    by_time = {r["timestamp"]: r for r in final["result"]["list"]}
    assert again["result"]["list"][0] == by_time[current]


async def test_hourly_and_daily_rows_agree_at_midnight(sim: TestClient) -> None:
    midnight = NOW_MS - NOW_MS % DAY
    for path in (BINANCE_RATIOS[0], "/futures/data/openInterestHist"):
        start = midnight - 20 * DAY
        daily = await ok(
            sim,
            f"/binance{path}",
            symbol="ETHUSDT",
            period="1d",
            startTime=start,
            endTime=midnight - DAY,
        )
        hourly = await ok(
            sim,
            f"/binance{path}",
            symbol="ETHUSDT",
            period="1h",
            startTime=start,
            endTime=midnight - DAY,
            limit=500,
        )
        by_time = {r["timestamp"]: r for r in hourly}
        assert len(daily) == 20
        for row in daily:
            assert by_time[row["timestamp"]] == row
    body_d = await ok(
        sim,
        "/bybit/v5/market/account-ratio",
        category="linear",
        symbol="ETHUSDT",
        period="1d",
        limit=10,
    )
    body_h = await ok(
        sim,
        "/bybit/v5/market/account-ratio",
        category="linear",
        symbol="ETHUSDT",
        period="1h",
        limit=500,
    )
    hourly_rows = {r["timestamp"]: r for r in body_h["result"]["list"]}
    for row in body_d["result"]["list"][1:]:  # skip today's open (provisional) day
        assert hourly_rows[row["timestamp"]] == row


async def test_taker_volumes_add_up_and_candles_chain(sim: TestClient) -> None:
    day = NOW_MS - NOW_MS % DAY - DAY
    path = "/binance/futures/data/takerlongshortRatio"
    daily = await ok(sim, path, symbol="BTCUSDT", period="1d", startTime=day, endTime=day)
    hourly = await ok(
        sim, path, symbol="BTCUSDT", period="1h", startTime=day, endTime=day + DAY - HOUR, limit=500
    )
    assert len(daily) == 1 and len(hourly) == 24
    for key in ("buyVol", "sellVol"):
        total = sum(float(r[key]) for r in hourly)
        assert total == pytest.approx(float(daily[0][key]), abs=24 * 1e-4)
    candles = await ok(sim, "/binance/fapi/v1/klines", symbol="BTCUSDT", interval="1h", limit=48)
    assert all(a[4] == b[1] for a, b in itertools.pairwise(candles))


def always(kind: str, **kwargs: Any) -> FaultConfig:
    return FaultConfig(rate=1.0, kinds=(kind,), **kwargs)


BINANCE_RATIO = (
    "/binance/futures/data/globalLongShortAccountRatio",
    {"symbol": "BTCUSDT", "period": "1h", "limit": 5},
)
BYBIT_RATIO = (
    "/bybit/v5/market/account-ratio",
    {"category": "linear", "symbol": "BTCUSDT", "period": "1h", "limit": 5},
)


async def test_fault_429(make_sim: Make) -> None:
    sim = await make_sim(faults=always("429"))
    status, body, headers = await fetch(sim, BINANCE_RATIO[0], **BINANCE_RATIO[1])
    assert (status, body["code"], headers["Retry-After"]) == (429, -1003, "1")
    status, body, headers = await fetch(sim, BYBIT_RATIO[0], **BYBIT_RATIO[1])
    assert (status, body["retCode"], headers["Retry-After"]) == (429, 10006, "1")
    stats = get_stats(sim.server.app)
    assert stats.faults[("binance", "429")] == 1 and stats.faults[("bybit", "429")] == 1


async def test_fault_5xx(make_sim: Make) -> None:
    sim = await make_sim(faults=always("5xx"))
    statuses = {(await fetch(sim, BINANCE_RATIO[0], **BINANCE_RATIO[1]))[0] for _ in range(20)}
    assert statuses == {502, 503}


async def test_fault_timeout_stalls_then_answers_correctly(make_sim: Make) -> None:
    clean = await make_sim()
    expected = await ok(clean, BINANCE_RATIO[0], **BINANCE_RATIO[1])
    stalled = await make_sim(faults=always("timeout", timeout_seconds=30))
    with pytest.raises(TimeoutError):
        await stalled.get(
            BINANCE_RATIO[0], params=BINANCE_RATIO[1], timeout=aiohttp.ClientTimeout(total=0.3)
        )
    brief = await make_sim(faults=always("timeout", timeout_seconds=0.05))
    assert await ok(brief, BINANCE_RATIO[0], **BINANCE_RATIO[1]) == expected


async def test_fault_truncated_body(make_sim: Make) -> None:
    clean = await make_sim()
    sim = await make_sim(faults=always("truncated"))
    for path, params in (BINANCE_RATIO, BYBIT_RATIO):
        async with clean.get(path, params=params) as response:
            whole = await response.text()
        async with sim.get(path, params=params) as response:
            assert response.status == 200
            cut = await response.text()
        assert len(cut) == len(whole) // 2 and whole.startswith(cut)
        with pytest.raises(json.JSONDecodeError):
            json.loads(cut)


async def test_fault_drift_renames_a_field_but_keeps_the_data(make_sim: Make) -> None:
    clean = await make_sim()
    sim = await make_sim(faults=always("drift"))
    rows = await ok(sim, BINANCE_RATIO[0], **BINANCE_RATIO[1])
    good = await ok(clean, BINANCE_RATIO[0], **BINANCE_RATIO[1])
    assert all("longAccount" not in r and "longAcct" in r for r in rows)
    assert [r["longAcct"] for r in rows] == [r["longAccount"] for r in good]
    body = await ok(sim, BYBIT_RATIO[0], **BYBIT_RATIO[1])
    assert all("buy_ratio" in r and "buyRatio" not in r for r in body["result"]["list"])
    # Bodies without named data fields keep their schema: kline arrays, instrument lists.
    candles = await ok(sim, "/binance/fapi/v1/klines", symbol="BTCUSDT", interval="1h", limit=2)
    assert candles == await ok(
        clean, "/binance/fapi/v1/klines", symbol="BTCUSDT", interval="1h", limit=2
    )
    info = await ok(sim, "/binance/fapi/v1/exchangeInfo")
    assert all("onboardDate" in e and "contractType" in e for e in info["symbols"])
    body = await ok(sim, "/bybit/v5/market/instruments-info", category="linear")
    assert all("contractType" in e for e in body["result"]["list"])


async def test_fault_ban_answers(make_sim: Make) -> None:
    sim = await make_sim(faults=always("ban"))
    status, body, headers = await fetch(sim, BINANCE_RATIO[0], **BINANCE_RATIO[1])
    assert status == 418 and "banned until" in body["msg"] and int(headers["Retry-After"]) == 120
    status, body, _ = await fetch(sim, BYBIT_RATIO[0], **BYBIT_RATIO[1])
    assert status == 403 and "access too frequent" in body


async def test_faults_follow_a_seeded_sequence(make_sim: Make) -> None:
    config = FaultConfig(rate=0.5, kinds=("429", "5xx"), seed=7)
    runs = []
    for _ in range(2):
        sim = await make_sim(faults=config)
        runs.append(
            [(await fetch(sim, BINANCE_RATIO[0], **BINANCE_RATIO[1]))[0] for _ in range(30)]
        )
    assert runs[0] == runs[1]
    assert {200, 429} <= set(runs[0]) and set(runs[0]) <= {200, 429, 502, 503}


def test_fault_config_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError):
        FaultConfig(kinds=("meteor",))


# ---------------------------------------------------------------------------------------------
# Runners


async def test_run_simulator_on_a_free_port() -> None:
    async with run_simulator(port=0, clock=Clock()) as running:
        assert running.port > 0 and set(running.base_urls) == set(EXCHANGES)
        url = running.base_urls["bybit"] + "/v5/market/kline"
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                url, params={"category": "linear", "symbol": "BTCUSDT", "interval": "D"}
            ) as response,
        ):
            assert response.headers["X-LSR-Simulated"] == "1"
            assert (await response.json())["retCode"] == 0
        assert running.stats.requests[("bybit", "/v5/market/kline")] == 1


def test_simulator_thread_serves_synchronous_callers() -> None:
    with SimulatorThread(port=0, clock=Clock(), exchanges=("binance",)) as running:
        assert list(running.base_urls) == ["binance"]
        url = running.base_urls["binance"] + "/fapi/v1/exchangeInfo"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["X-LSR-Simulated"] == "1"
            assert json.loads(response.read())["serverTime"] == NOW_MS
        assert running.stats.total_requests("binance") == 1
        with urllib.request.urlopen(
            running.base_urls["binance"].rsplit("/", 1)[0] + "/_sim/stats", timeout=10
        ) as response:
            served = json.loads(response.read())
        assert served["requests"] == {"binance /fapi/v1/exchangeInfo": 1}
        assert served["statuses"] == {"binance 200": 1}
        assert served["windows"]["binance weight-1m"] == {"max_used": 1, "allowed": 2400}
        assert running.stats_snapshot() == served


def test_stalled_answers_do_not_block_shutdown() -> None:
    async def scenario() -> None:
        async with run_simulator(faults=always("timeout", timeout_seconds=60)) as running:
            url = running.base_urls["binance"] + "/fapi/v1/exchangeInfo"
            async with aiohttp.ClientSession() as session:
                with pytest.raises(TimeoutError):
                    await session.get(url, timeout=aiohttp.ClientTimeout(total=0.2))

    asyncio.run(asyncio.wait_for(scenario(), timeout=10))
