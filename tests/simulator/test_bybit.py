"""The Bybit simulator, as a client sees it: the real v5 response shapes, errors, cursor
paging, limits and bans.

The clock is frozen and moved by hand: no test sleeps to observe timing.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pipelines.simulator import (
    get_stats,
)
from tests.clock import NOW, Clock
from tests.conftest import load_payload
from tests.simulator.conftest import Make, fetch, ok

# 2026-09-15 08:24:21.467 UTC: the moment of the real Bybit capture in the shared payloads.
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
NOW_MS = int(NOW * 1000)


def json_types(row: dict[str, Any]) -> dict[str, type]:
    return {key: type(value) for key, value in row.items()}


async def test_bybit_account_ratio_matches_the_real_capture(sim: TestClient) -> None:
    real = load_payload("bybit/account_ratio_5min_live_2026-09-15.json")
    body = await ok(
        sim,
        "/bybit/v5/market/account-ratio",
        category="linear",
        symbol="ETHUSDT",
        period="5min",
        limit=3,
    )
    assert set(body) == set(real) and set(body["result"]) == set(real["result"])
    assert body["retCode"] == 0 and body["retMsg"] == "OK" and body["time"] == NOW_MS
    rows = body["result"]["list"]
    for row in rows:
        assert json_types(row) == json_types(real["result"]["list"][0])
        assert float(row["buyRatio"]) + float(row["sellRatio"]) == pytest.approx(1)
    # Same instant as the capture: the same timestamps, newest first, and the same cursor form.
    assert [r["timestamp"] for r in rows] == [r["timestamp"] for r in real["result"]["list"]]
    assert body["result"]["nextPageCursor"] == real["result"]["nextPageCursor"]


async def test_bybit_open_interest_and_kline_shapes(sim: TestClient) -> None:
    real = load_payload("bybit/open_interest_doc_example.json")
    body = await ok(
        sim,
        "/bybit/v5/market/open-interest",
        category="linear",
        symbol="BTCUSDT",
        intervalTime="1h",
        limit=5,
    )
    assert set(body["result"]) == set(real["result"])
    assert body["result"]["symbol"] == "BTCUSDT" and body["result"]["category"] == "linear"
    rows = body["result"]["list"]
    assert len(rows) == 5
    assert all(json_types(r) == json_types(real["result"]["list"][0]) for r in rows)
    stamps = [int(r["timestamp"]) for r in rows]
    assert stamps == sorted(stamps, reverse=True)

    kline = await ok(
        sim, "/bybit/v5/market/kline", category="linear", symbol="BTCUSDT", interval="60", limit=4
    )
    assert kline["result"]["category"] == "linear" and kline["result"]["symbol"] == "BTCUSDT"
    candles = kline["result"]["list"]
    assert len(candles) == 4 and all(len(c) == 7 for c in candles)
    assert all(isinstance(v, str) for c in candles for v in c)
    assert [int(c[0]) for c in candles] == [NOW_MS - NOW_MS % HOUR - i * HOUR for i in range(4)]
    assert candles[1][1] == candles[2][4]  # newest first: an hour's open is the previous close


async def test_bybit_errors_are_http_200_with_retcode(sim: TestClient) -> None:
    real = load_payload("bybit/error_unknown_symbol_instruments_info.json")
    status, body, _ = await fetch(
        sim, "/bybit/v5/market/instruments-info", category="linear", symbol="NOTACOINUSDT"
    )
    assert status == 200 and set(body) == set(real)
    assert {k: body[k] for k in ("retCode", "retMsg", "result")} == {
        k: real[k] for k in ("retCode", "retMsg", "result")
    }
    path = "/bybit/v5/market/account-ratio"
    for symbol in ("btcusdt", "NOTACOINUSDT"):
        status, body, _ = await fetch(sim, path, category="linear", symbol=symbol, period="1h")
        assert (status, body["retCode"], body["retMsg"]) == (
            200,
            10001,
            "params error: symbol invalid",
        )
    status, body, _ = await fetch(sim, path, category="linear", symbol="BTCUSDT", period="5m")
    assert (status, body["retCode"], body["retMsg"]) == (200, 10001, "params error: period invalid")


async def _walk(client: TestClient, path: str, **params: Any) -> tuple[list[int], int]:
    """All timestamps reached by following nextPageCursor, and the number of pages."""
    stamps: list[int] = []
    cursor = ""
    pages = 0
    while True:
        query = dict(params, cursor=cursor) if cursor else params
        body = await ok(client, path, **query)
        assert body["retCode"] == 0, body
        stamps += [int(row["timestamp"]) for row in body["result"]["list"]]
        pages += 1
        cursor = body["result"]["nextPageCursor"]
        if not cursor:
            return stamps, pages
        assert pages < 100


async def test_bybit_cursor_walks_back_to_2020_without_gaps_or_duplicates(
    sim: TestClient,
) -> None:
    stamps, pages = await _walk(
        sim,
        "/bybit/v5/market/account-ratio",
        category="linear",
        symbol="BTCUSDT",
        period="1d",
        limit=500,
    )
    assert stamps == sorted(stamps, reverse=True)  # newest first across pages
    assert {a - b for a, b in itertools.pairwise(stamps)} == {DAY}  # no gaps, no duplicates
    assert stamps[0] == NOW_MS - NOW_MS % DAY
    assert stamps[-1] == 1_595_203_200_000  # 2020-07-20, the documented earliest start
    assert pages == -(-len(stamps) // 500)


async def test_bybit_cursor_respects_start_time(sim: TestClient) -> None:
    start = NOW_MS - 3 * DAY
    stamps, pages = await _walk(
        sim,
        "/bybit/v5/market/open-interest",
        category="linear",
        symbol="SOLUSDT",
        intervalTime="5min",
        startTime=start,
        limit=200,
    )
    current = NOW_MS - NOW_MS % (5 * MIN)
    first = start + (-start) % (5 * MIN)
    assert stamps == list(range(current, first - 1, -5 * MIN))
    assert pages == -(-len(stamps) // 200)


async def test_bybit_limits(sim: TestClient) -> None:
    path = "/bybit/v5/market/account-ratio"
    body = await ok(sim, path, category="linear", symbol="XRPUSDT", period="5min")
    assert len(body["result"]["list"]) == 50
    body = await ok(sim, path, category="linear", symbol="XRPUSDT", period="5min", limit=500)
    assert len(body["result"]["list"]) == 500
    body = await ok(sim, path, category="linear", symbol="XRPUSDT", period="5min", limit=501)
    assert body["retCode"] == 10001
    body = await ok(
        sim,
        "/bybit/v5/market/open-interest",
        category="linear",
        symbol="XRPUSDT",
        intervalTime="5min",
        limit=201,
    )
    assert body["retCode"] == 10001
    body = await ok(
        sim, "/bybit/v5/market/kline", category="linear", symbol="XRPUSDT", interval="1"
    )
    assert len(body["result"]["list"]) == 200


async def test_bybit_instruments_page_with_a_cursor(sim: TestClient) -> None:
    whole = await ok(sim, "/bybit/v5/market/instruments-info", category="linear")
    expected = [e["symbol"] for e in whole["result"]["list"]]
    seen: list[str] = []
    cursor = ""
    while True:
        params = {"category": "linear", "limit": 7, **({"cursor": cursor} if cursor else {})}
        body = await ok(sim, "/bybit/v5/market/instruments-info", **params)
        page = [e["symbol"] for e in body["result"]["list"]]
        assert 0 < len(page) <= 7
        seen += page
        cursor = body["result"]["nextPageCursor"]
        if not cursor:
            break
    assert seen == expected


async def test_bybit_403_ban_for_ten_minutes(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock, rate_limit_scale=0.01)
    params = {"category": "linear", "symbol": "BTCUSDT", "period": "1h", "limit": 1}
    for _ in range(600):
        await ok(sim, "/bybit/v5/market/account-ratio", **params)
    status, body, _ = await fetch(sim, "/bybit/v5/market/account-ratio", **params)
    assert status == 403 and "access too frequent" in body
    clock.advance(5.5)  # the 5 s window is long over, the ban (6 s) is not
    status, _, _ = await fetch(sim, "/bybit/v5/market/instruments-info", category="linear")
    assert status == 403
    await ok(sim, "/binance/fapi/v1/exchangeInfo")  # Binance is unaffected
    clock.advance(1)
    body = await ok(sim, "/bybit/v5/market/account-ratio", **params)
    assert body["retCode"] == 0
    stats = get_stats(sim.server.app)
    assert stats.statuses[("bybit", 403)] == 2 and stats.rate_limited("bybit") == 2
    assert stats.max_requests_in_window("bybit", "ip-5s") == 600
