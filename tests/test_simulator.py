"""The exchange simulator behaves like the real Binance USD-M and Bybit v5 APIs, as a client sees.

The clock is frozen (and moved by hand) everywhere: no test sleeps to observe timing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipelines.simulator import (
    EXCHANGES,
    FaultConfig,
    SimulatorThread,
    create_app,
    get_stats,
    run_simulator,
)

# 2026-09-15 08:24:21.467 UTC: the moment of the real Bybit capture in the shared payloads.
NOW = 1_789_460_661.467
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
NOW_MS = int(NOW * 1000)

PAYLOAD_DIRS = (Path(__file__).parent / "payloads", Path("/work/shared/exchanges/payloads"))
UNIVERSE = Path(__file__).resolve().parents[1] / "pipelines" / "universe.yaml"

BINANCE_RATIOS = (
    "/futures/data/globalLongShortAccountRatio",
    "/futures/data/topLongShortAccountRatio",
    "/futures/data/topLongShortPositionRatio",
)


class Clock:
    """A hand-moved clock: `clock.now` is the simulator's epoch seconds."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Json = Any
Make = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_sim() -> AsyncIterator[Make]:
    """`await make_sim(**create_app_kwargs)` -> a test client; the clock defaults to NOW."""
    clients: list[TestClient] = []

    async def make(**kwargs: Any) -> TestClient:
        kwargs.setdefault("clock", Clock())
        client = TestClient(TestServer(create_app(**kwargs)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def sim(make_sim: Make) -> TestClient:
    return await make_sim()


async def fetch(client: TestClient, path: str, **params: Any) -> tuple[int, Json, Any]:
    """(status, parsed JSON or text, headers) of GET path?params."""
    query = {k: str(v) for k, v in params.items()}
    async with client.get(path, params=query) as response:
        text = await response.text()
        try:
            body: Json = json.loads(text)
        except json.JSONDecodeError:
            body = text
        return response.status, body, response.headers


async def ok(client: TestClient, path: str, **params: Any) -> Json:
    status, body, _ = await fetch(client, path, **params)
    assert status == 200, body
    return body


def payload(relative: str) -> Json:
    for folder in PAYLOAD_DIRS:
        if (folder / relative).exists():
            return json.loads((folder / relative).read_text())
    pytest.skip(f"real payload {relative} not available")


def json_types(row: dict[str, Any]) -> dict[str, type]:
    return {key: type(value) for key, value in row.items()}


def universe_coins() -> list[str]:
    import yaml

    return [str(c) for c in yaml.safe_load(UNIVERSE.read_text())["coins"]]


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
    real = payload(sample)
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
    real = payload("binance/open_interest_hist_5m.json")[0]
    rows = await ok(sim, "/binance/futures/data/openInterestHist", symbol="BTCUSDT", period="5m")
    assert len(rows) == 30  # default limit
    for row in rows:
        assert set(row) == set(real) | {"CMCCirculatingSupply"}
        assert {k: type(v) for k, v in row.items() if k in real} == json_types(real)
        assert float(row["sumOpenInterest"]) > 0
    btc = float(rows[-1]["sumOpenInterestValue"]) / float(rows[-1]["sumOpenInterest"])
    assert 40_000 < btc < 200_000


async def test_binance_klines_match_the_real_array_layout(sim: TestClient) -> None:
    real = payload("binance/klines_1d_limit5.json")
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


async def test_bybit_account_ratio_matches_the_real_capture(sim: TestClient) -> None:
    real = payload("bybit/account_ratio_5min_live_2026-09-15.json")
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
    real = payload("bybit/open_interest_doc_example.json")
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


async def test_every_response_is_marked_simulated(sim: TestClient) -> None:
    for path in ("/binance/fapi/v1/exchangeInfo", "/bybit/v5/market/kline", "/nowhere"):
        _, _, headers = await fetch(sim, path)
        assert headers["X-LSR-Simulated"] == "1"


# ---------------------------------------------------------------------------------------------
# Errors


async def test_binance_error_bodies(sim: TestClient) -> None:
    path = "/binance/futures/data/globalLongShortAccountRatio"
    status, body, _ = await fetch(sim, path, symbol="NOPEUSDT", period="1h")
    assert (status, body) == (400, payload("binance/error_invalid_symbol_ticker24hr.json"))
    status, body, _ = await fetch(sim, path, symbol="BTCUSDT", period="5min")
    assert status == 400
    assert body == {"code": -1130, "msg": "Data sent for parameter 'period' is not valid."}
    status, body, _ = await fetch(sim, path, period="1h")
    assert status == 400 and body["code"] == -1102
    status, body, _ = await fetch(sim, "/binance/fapi/v1/klines", symbol="BTCUSDT", interval="7m")
    assert status == 400 and body["code"] == -1120


async def test_bybit_errors_are_http_200_with_retcode(sim: TestClient) -> None:
    real = payload("bybit/error_unknown_symbol_instruments_info.json")
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
# Bybit paging


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


# ---------------------------------------------------------------------------------------------
# Faults


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
