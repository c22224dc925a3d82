"""The Binance simulator, as a client sees it: the real USD-M response shapes, errors, the
30-day window, limits and bans.

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
BINANCE_RATIOS = (
    "/futures/data/globalLongShortAccountRatio",
    "/futures/data/topLongShortAccountRatio",
    "/futures/data/topLongShortPositionRatio",
)


def json_types(row: dict[str, Any]) -> dict[str, type]:
    return {key: type(value) for key, value in row.items()}


# ---------------------------------------------------------------------------------------------
# Shapes and types against the real recordings


@pytest.mark.parametrize(
    ("path", "sample"),
    [
        (BINANCE_RATIOS[0], "binance/global_long_short_account_ratio_5m.json"),
        (BINANCE_RATIOS[1], "binance/global_long_short_account_ratio_5m.json"),
        (BINANCE_RATIOS[2], "binance/top_long_short_position_ratio_5m.json"),
        ("/futures/data/takerlongshortRatio", "binance/taker_long_short_ratio_5m.json"),
    ],
)
async def test_binance_rows_have_the_real_keys_types_and_order(
    sim: TestClient, path: str, sample: str
) -> None:
    real = load_payload(sample)
    rows = await ok(sim, f"/binance{path}", symbol="BTCUSDT", period="5m", limit=10)
    assert len(rows) == 10
    for row in rows:
        assert json_types(row) == json_types(real[0])
    stamps = [row["timestamp"] for row in rows]
    assert stamps == sorted(stamps) and {b - a for a, b in itertools.pairwise(stamps)} == {5 * MIN}
    if "longAccount" in rows[0]:
        for row in rows:
            assert all(len(row[k].split(".")[1]) == 4 for k in ("longAccount", "shortAccount"))
            assert 0.3 <= float(row["longAccount"]) <= 0.75
            assert float(row["longAccount"]) + float(row["shortAccount"]) == pytest.approx(1)
            ratio = float(row["longAccount"]) / float(row["shortAccount"])
            assert float(row["longShortRatio"]) == pytest.approx(ratio, abs=2e-3)
    else:
        assert all(float(row["buyVol"]) > 0 and float(row["sellVol"]) > 0 for row in rows)


async def test_binance_open_interest_has_the_real_fields_plus_supply(sim: TestClient) -> None:
    real = load_payload("binance/open_interest_hist_5m.json")[0]
    rows = await ok(sim, "/binance/futures/data/openInterestHist", symbol="BTCUSDT", period="5m")
    assert len(rows) == 30  # default limit
    for row in rows:
        assert set(row) == set(real) | {"CMCCirculatingSupply"}
        assert {k: type(v) for k, v in row.items() if k in real} == json_types(real)
        assert float(row["sumOpenInterest"]) > 0
    btc = float(rows[-1]["sumOpenInterestValue"]) / float(rows[-1]["sumOpenInterest"])
    assert 40_000 < btc < 200_000


async def test_binance_klines_match_the_real_array_layout(sim: TestClient) -> None:
    real = load_payload("binance/klines_1d_limit5.json")
    rows = await ok(sim, "/binance/fapi/v1/klines", symbol="BTCUSDT", interval="1d", limit=5)
    assert len(rows) == 5
    for row in rows:
        assert [type(v) for v in row] == [type(v) for v in real[0]]
        open_, high, low, close = (float(v) for v in row[1:5])
        assert high >= max(open_, close) and low <= min(open_, close) and low > 0
        assert row[6] == row[0] + DAY - 1
        assert 0 < float(row[9]) < float(row[5])  # taker buy volume < volume
        assert row[11] == "0"
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert rows[-1][0] == NOW_MS - NOW_MS % DAY  # the open candle is the last one


# ---------------------------------------------------------------------------------------------
# Errors


async def test_binance_error_bodies(sim: TestClient) -> None:
    path = "/binance/futures/data/globalLongShortAccountRatio"
    status, body, _ = await fetch(sim, path, symbol="NOPEUSDT", period="1h")
    assert (status, body) == (400, load_payload("binance/error_invalid_symbol_ticker24hr.json"))
    status, body, _ = await fetch(sim, path, symbol="BTCUSDT", period="5min")
    assert status == 400
    assert body == {"code": -1130, "msg": "Data sent for parameter 'period' is not valid."}
    status, body, _ = await fetch(sim, path, period="1h")
    assert status == 400 and body["code"] == -1102
    status, body, _ = await fetch(sim, "/binance/fapi/v1/klines", symbol="BTCUSDT", interval="7m")
    assert status == 400 and body["code"] == -1120


# ---------------------------------------------------------------------------------------------
# Binance windows: retention, limits, startTime/endTime


async def test_binance_refuses_start_times_older_than_30_days(sim: TestClient) -> None:
    path = "/binance/futures/data/globalLongShortAccountRatio"
    status, body, _ = await fetch(
        sim,
        path,
        symbol="BTCUSDT",
        period="1h",
        startTime=NOW_MS - 35 * DAY,
        endTime=NOW_MS - 34 * DAY,
    )
    assert status == 400
    assert body == {"code": -1130, "msg": "parameter 'startTime' is invalid."}
    # Just inside the window: answered, and nothing older than 30 days comes back.
    start = NOW_MS - 30 * DAY + HOUR
    rows = await ok(sim, path, symbol="BTCUSDT", period="1h", startTime=start, limit=500)
    assert len(rows) == 500 and rows[0]["timestamp"] >= start
    # Only an endTime long ago: nothing there (never rows outside the requested window).
    assert await ok(sim, path, symbol="BTCUSDT", period="1h", endTime=NOW_MS - 60 * DAY) == []
    # Klines have full history.
    old = await ok(
        sim,
        "/binance/fapi/v1/klines",
        symbol="BTCUSDT",
        interval="1d",
        startTime=NOW_MS - 400 * DAY,
        limit=3,
    )
    assert len(old) == 3 and old[0][0] >= NOW_MS - 400 * DAY


async def test_binance_limit_caps(sim: TestClient) -> None:
    path = "/binance/futures/data/topLongShortAccountRatio"
    assert len(await ok(sim, path, symbol="ETHUSDT", period="5m")) == 30
    assert len(await ok(sim, path, symbol="ETHUSDT", period="5m", limit=500)) == 500
    status, body, _ = await fetch(sim, path, symbol="ETHUSDT", period="5m", limit=501)
    assert status == 400 and body["code"] == -1130
    klines = "/binance/fapi/v1/klines"
    assert len(await ok(sim, klines, symbol="ETHUSDT", interval="1m")) == 500
    assert len(await ok(sim, klines, symbol="ETHUSDT", interval="1m", limit=1500)) == 1500
    status, body, _ = await fetch(sim, klines, symbol="ETHUSDT", interval="1m", limit=1501)
    assert status == 400 and body["code"] == -1130


async def test_binance_time_window_selection(sim: TestClient) -> None:
    path = "/binance/futures/data/globalLongShortAccountRatio"
    current = NOW_MS - NOW_MS % HOUR
    newest = await ok(sim, path, symbol="BTCUSDT", period="1h", limit=5)
    assert [r["timestamp"] for r in newest] == [current - i * HOUR for i in range(4, -1, -1)]
    start = current - 100 * HOUR + 1  # not on the grid: the first row is the next bucket
    rows = await ok(sim, path, symbol="BTCUSDT", period="1h", startTime=start, limit=3)
    assert [r["timestamp"] for r in rows] == [current - (99 - i) * HOUR for i in range(3)]
    end = current - 10 * HOUR
    rows = await ok(sim, path, symbol="BTCUSDT", period="1h", endTime=end, limit=3)
    assert [r["timestamp"] for r in rows] == [end - 2 * HOUR, end - HOUR, end]
    rows = await ok(
        sim, path, symbol="BTCUSDT", period="1h", startTime=end - 5 * HOUR, endTime=end, limit=500
    )
    assert [r["timestamp"] for r in rows] == [end - (5 - i) * HOUR for i in range(6)]
    future = await ok(sim, path, symbol="BTCUSDT", period="1h", startTime=current + HOUR)
    assert future == []
    # Taker rows are stamped with the period they sum: the newest is the last closed hour.
    taker = await ok(
        sim, "/binance/futures/data/takerlongshortRatio", symbol="BTCUSDT", period="1h", limit=2
    )
    assert taker[-1]["timestamp"] == current - HOUR


# ---------------------------------------------------------------------------------------------
# Rate limits


async def test_binance_429_then_418_ban_per_endpoint_limit(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock, rate_limit_scale=0.01)
    path = "/binance/futures/data/globalLongShortAccountRatio"
    params = {"symbol": "BTCUSDT", "period": "5m", "limit": 1}
    for _ in range(1000):
        await ok(sim, path, **params)
    status, body, headers = await fetch(sim, path, **params)
    assert status == 429 and body["code"] == -1003
    assert 1 <= int(headers["Retry-After"]) <= 3  # 300 s window x 0.01
    # The limit is per endpoint: another /futures/data endpoint still answers.
    await ok(sim, "/binance/futures/data/topLongShortAccountRatio", **params)
    for _ in range(5):
        assert (await fetch(sim, path, **params))[0] == 429
    status, body, headers = await fetch(sim, path, **params)
    assert status == 418 and "banned until" in body["msg"] and body["code"] == -1003
    assert int(headers["Retry-After"]) == 2  # 120 s x 0.01, rounded up
    # A banned IP is refused everywhere on the exchange, not on Bybit.
    assert (await fetch(sim, "/binance/fapi/v1/exchangeInfo"))[0] == 418
    await ok(sim, "/bybit/v5/market/kline", category="linear", symbol="BTCUSDT", interval="D")

    stats = get_stats(sim.server.app)
    assert stats.statuses[("binance", 429)] == 6 and stats.statuses[("binance", 418)] == 2
    endpoint = path.removeprefix("/binance")  # stats key endpoints by their real path
    assert stats.requests[("binance", endpoint)] == 1007
    assert stats.max_requests_in_window("binance", endpoint) == 1000
    assert stats.allowed_in_window("binance", endpoint) == 1000

    clock.advance(3.1)  # ban (1.2 s) and window (3 s) are over
    await ok(sim, path, **params)


async def test_binance_weight_budget_and_sliding_window(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock, rate_limit_scale=0.1)
    # limit=1500 weighs 10 whatever the rows; a one-candle window keeps the test fast.
    params = {
        "symbol": "BTCUSDT",
        "interval": "1m",
        "limit": 1500,
        "startTime": NOW_MS - 10 * MIN,
        "endTime": NOW_MS - 10 * MIN,
    }
    for i in range(240):
        status, _, headers = await fetch(sim, "/binance/fapi/v1/klines", **params)
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == str(10 * (i + 1))
        if i == 119:
            clock.advance(3)  # half of the (scaled) 6 s window
    status, body, headers = await fetch(sim, "/binance/fapi/v1/klines", **params)
    assert status == 429 and "2400 requests per minute" in body["msg"]
    assert headers["Retry-After"] == "3"  # the first 120 requests leave the window in 3 s
    clock.advance(3.01)
    await ok(sim, "/binance/fapi/v1/klines", **params)  # the window slid: room again
    stats = get_stats(sim.server.app)
    assert stats.max_requests_in_window("binance", "weight-1m") == 2400
    assert stats.allowed_in_window("binance", "weight-1m") == 2400
