"""The Bitget simulator, as a client sees it: the real response shapes, windows, paging,
errors and rate limits.

The clock is frozen and moved by hand: no test sleeps to observe timing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pandas as pd
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipelines.errors import PayloadError
from pipelines.exchanges import bitget
from pipelines.simulator import FaultConfig, create_app, get_stats
from pipelines.simulator import bitget as sim_bitget
from pipelines.universe import load_universe, resolve
from tests.cassette_specs.bitget import CANDLES_DOC, CONTRACTS_DOC, OPEN_INTEREST_DOC
from tests.clock import NOW, Clock
from tests.conftest import load_payload

LONG_SHORT = "bitget/long_short_5m_gct_fixture.json"
POSITION_DOC = "bitget/position_long_short_doc_example.json"
TAKER_DOC = "bitget/taker_buy_sell_doc_example.json"
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW_MS = int(NOW * 1000)
FIXTURE_TIME = 1_758_611_911.133  # requestTime of the 2025 long-short fixture
MARKET = "/bitget/api/v2/mix/market"


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _data_rows(relative: str) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], load_payload(relative)["data"])


class Sim:
    """A test client on a simulator whose clock moves a little before each request, so the
    per-endpoint limit (1/s, scaled) never refuses unless a test means it to."""

    def __init__(self, client: TestClient, clock: Clock, tick: float) -> None:
        self.client, self.clock, self.tick = client, clock, tick

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        self.clock.now += self.tick
        query = {k: str(v) for k, v in params.items()}
        async with self.client.get(f"{MARKET}{path}", params=query) as response:
            return response.status, json.loads(await response.text())

    async def ok(self, path: str, **params: Any) -> Any:
        status, body = await self.get(path, **params)
        assert status == 200 and body["code"] == "00000", body
        return body


MakeSim = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    clients: list[TestClient] = []

    async def make(now: float = NOW, scale: float = 0.001, tick: float = 0.002, **kw: Any) -> Sim:
        clock = Clock(now)
        app = create_app(exchanges=("bitget",), clock=clock, rate_limit_scale=scale, **kw)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Sim(client, clock, tick)

    yield make
    for client in clients:
        await client.close()


def _types(row: dict[str, Any]) -> dict[str, type]:
    return {k: type(v) for k, v in row.items()}


@pytest.mark.parametrize(
    ("path", "sample"),
    [
        ("/long-short", LONG_SHORT),
        ("/position-long-short", POSITION_DOC),
        ("/taker-buy-sell", TAKER_DOC),
    ],
)
async def test_simulated_feeds_have_the_real_envelope_keys_and_types(
    make_sim: MakeSim, path: str, sample: str
) -> None:
    sim = await make_sim()
    real = load_payload(sample)
    body = await sim.ok(path, symbol="ETHUSDT", period="1h")
    assert _types(body) == _types(real)  # code/msg strings, requestTime an integer, data a list
    assert all(_types(row) == _types(real["data"][0]) for row in body["data"])
    assert all(isinstance(v, str) for row in body["data"] for v in row.values())
    account = await sim.ok("/account-long-short", symbol="ETHUSDT", period="1h")
    assert set(account["data"][0]) == {
        "longAccountRatio",
        "shortAccountRatio",
        "longShortAccountRatio",
        "ts",
    }


async def test_the_window_is_the_latest_30_closed_buckets_whatever_is_asked(
    make_sim: MakeSim,
) -> None:
    sim = await make_sim()
    body = await sim.ok("/account-long-short", symbol="SOLUSDT", period="1h")
    stamps = [int(r["ts"]) for r in body["data"]]
    newest = NOW_MS - NOW_MS % HOUR - HOUR  # the last closed hour, stamped with its start
    assert stamps == [newest - (29 - i) * HOUR for i in range(30)]  # oldest first
    for ignored in (
        {"limit": 5},
        {"startTime": NOW_MS - 10 * DAY, "endTime": NOW_MS - 9 * DAY},
        {"limit": 500, "startTime": 0},
    ):
        again = await sim.ok("/account-long-short", symbol="SOLUSDT", period="1h", **ignored)
        assert again["data"] == body["data"]
    default = await sim.ok("/taker-buy-sell", symbol="SOLUSDT")  # period defaults to 5m
    gaps = {b - a for a, b in itertools.pairwise(int(r["ts"]) for r in default["data"])}
    assert len(default["data"]) == 30 and gaps == {5 * MIN}
    for row in body["data"]:
        long, short = float(row["longAccountRatio"]), float(row["shortAccountRatio"])
        assert long + short == pytest.approx(1) and 0.3 <= long <= 0.75


async def test_the_fixture_moment_gives_the_fixture_timestamps_and_the_scaled_field(
    make_sim: MakeSim,
) -> None:
    sim = await make_sim(now=FIXTURE_TIME, tick=0.0)
    body = await sim.ok("/long-short", symbol="BTCUSDT", period="5m")
    real = _data_rows(LONG_SHORT)
    assert [r["ts"] for r in body["data"][:4]] == [r["ts"] for r in real]
    for row in body["data"]:
        quotient = float(row["longRatio"]) / float(row["shortRatio"])
        assert float(row["longShortRatio"]) == pytest.approx(quotient / 100, abs=6e-5)
    later = await make_sim()  # 2026: the combined field is the plain quotient
    for row in (await later.ok("/long-short", symbol="BTCUSDT", period="1h"))["data"]:
        quotient = float(row["longRatio"]) / float(row["shortRatio"])
        assert float(row["longShortRatio"]) == pytest.approx(quotient, abs=6e-5)


async def test_period_names_differ_between_feeds(make_sim: MakeSim) -> None:
    sim = await make_sim()
    assert len((await sim.ok("/long-short", symbol="BTCUSDT", period="1Dutc"))["data"]) == 30
    assert len((await sim.ok("/position-long-short", symbol="BTCUSDT", period="1d"))["data"]) == 30
    for path, period in (("/long-short", "1d"), ("/position-long-short", "1Dutc")):
        status, body = await sim.get(path, symbol="BTCUSDT", period=period)
        assert (status, body["code"], body["data"]) == (400, "40017", None)


async def test_error_envelopes(make_sim: MakeSim) -> None:
    sim = await make_sim()
    status, body = await sim.get("/long-short", symbol="NOTACOINUSDT", period="1h")
    assert (status, body["code"], body["msg"]) == (
        400,
        "40034",
        "Parameter NOTACOINUSDT does not exist",
    )
    assert set(body) == {"code", "msg", "requestTime", "data"} and body["data"] is None
    status, body = await sim.get("/long-short", period="1h")
    assert (status, body["code"]) == (400, "40019")
    for coin in sorted(sim_bitget.NO_TAKER):
        status, body = await sim.get("/taker-buy-sell", symbol=f"{coin}USDT", period="1h")
        assert (status, body["code"]) == (400, "40054") and "is empty" in body["msg"]
        await sim.ok("/long-short", symbol=f"{coin}USDT", period="1h")  # ratios are published
    status, body = await sim.get("/candles", symbol="BTCUSDT", granularity="1H")
    assert (status, body["code"]) == (400, "40019")  # productType is required there


async def test_one_request_per_second_per_endpoint_then_429(make_sim: MakeSim) -> None:
    sim = await make_sim(scale=1.0, tick=0.0)
    await sim.ok("/long-short", symbol="BTCUSDT", period="1h")
    status, body = await sim.get("/long-short", symbol="BTCUSDT", period="1h")
    assert (status, body) == (429, {"code": "429", "msg": "Too Many Requests"})
    await sim.ok("/account-long-short", symbol="BTCUSDT", period="1h")  # another endpoint's limit
    sim.clock.now += 1.0
    await sim.ok("/long-short", symbol="BTCUSDT", period="1h")
    for _ in range(20):
        await sim.ok("/candles", symbol="BTCUSDT", productType="USDT-FUTURES", granularity="1H")
    status, _ = await sim.get(
        "/candles", symbol="BTCUSDT", productType="USDT-FUTURES", granularity="1H"
    )
    assert status == 429
    stats = get_stats(sim.client.server.app)
    assert stats.max_requests_in_window("bitget", "/api/v2/mix/market/long-short") == 1
    assert stats.max_requests_in_window("bitget", "/api/v2/mix/market/candles") == 20
    assert stats.allowed_in_window("bitget", "ip-1m") == 6000
    assert stats.statuses[("bitget", 429)] == 2


async def test_candles_shape_depth_range_cap_and_limit(make_sim: MakeSim) -> None:
    sim = await make_sim()
    real = json.loads(CANDLES_DOC)["data"]
    usdt = {"symbol": "BTCUSDT", "productType": "usdt-futures"}
    body = await sim.ok("/candles", granularity="1H", limit=48, **usdt)
    rows = body["data"]
    assert len(rows) == 48 and all([type(v) for v in r] == [type(v) for v in real[0]] for r in rows)
    current = NOW_MS - NOW_MS % HOUR  # the open candle is the newest, oldest first
    assert [int(r[0]) for r in rows] == [current - (47 - i) * HOUR for i in range(48)]
    assert all(a[4] == b[1] for a, b in itertools.pairwise(rows))  # a close is the next open
    assert len((await sim.ok("/candles", granularity="5m", **usdt))["data"]) == 100  # default
    old = await sim.ok(
        "/candles",
        granularity="1H",
        startTime=NOW_MS - 100 * DAY,
        endTime=NOW_MS - 80 * DAY,
        limit=1000,
        **usdt,
    )
    first = int(old["data"][0][0])
    assert NOW_MS - 83 * DAY <= first < NOW_MS - 83 * DAY + HOUR  # 1H: 83 days deep
    status, body = await sim.get(
        "/candles", granularity="1Dutc", startTime=NOW_MS - 91 * DAY, endTime=NOW_MS, **usdt
    )
    assert (status, body["code"]) == (400, "00001")
    status, body = await sim.get("/candles", granularity="1H", limit=1001, **usdt)
    assert (status, body["code"]) == (400, "40017")
    daily = await sim.ok("/candles", granularity="1Dutc", limit=3, **usdt)
    assert all(int(r[0]) % DAY == 0 for r in daily["data"])
    utc8 = await sim.ok("/candles", granularity="1D", limit=3, **usdt)
    assert all(int(r[0]) % DAY == 16 * HOUR for r in utc8["data"])  # 00:00 UTC+8


async def test_open_interest_is_the_current_snapshot(make_sim: MakeSim) -> None:
    sim = await make_sim()
    real = json.loads(OPEN_INTEREST_DOC)
    body = await sim.ok("/open-interest", symbol="ETHUSDT", productType="USDT-FUTURES")
    assert _types(body["data"]) == _types(real["data"])
    assert _types(body["data"]["openInterestList"][0]) == _types(
        real["data"]["openInterestList"][0]
    )
    assert body["data"]["openInterestList"][0]["symbol"] == "ETHUSDT"
    assert int(body["data"]["ts"]) == body["requestTime"]
    frame = bitget.parse_open_interest(body, instrument="ETHUSDT", period="1h")
    assert _ms(frame["ts"].iloc[0]) == body["requestTime"] - body["requestTime"] % HOUR


async def test_contracts_cover_the_universe_with_gaps_and_entries_to_filter(
    make_sim: MakeSim,
) -> None:
    sim = await make_sim()
    real = json.loads(CONTRACTS_DOC)["data"][0]
    body = await sim.ok("/contracts", productType="USDT-FUTURES")
    entries = body["data"]
    assert all(set(e) == set(real) and _types(e) == _types(real) for e in entries)
    assert {e["symbolType"] for e in entries} == {"perpetual", "delivery"}
    assert {e["symbolStatus"] for e in entries} > {"normal"}
    mapping = resolve("bitget", bitget.parse_instruments(body), load_universe())
    missing = set(load_universe().coins) - set(mapping)
    assert missing == set(sim_bitget.UNLISTED) and len(mapping) >= 47
    assert mapping["BONK"] == "1000BONKUSDT" and mapping["PEPE"] == "PEPEUSDT"
    gapless = await make_sim(listing_gaps=False)
    full = await gapless.ok("/contracts", productType="USDT-FUTURES")
    assert set(load_universe().coins) <= set(
        resolve("bitget", bitget.parse_instruments(full), load_universe())
    )


async def test_drift_renames_the_declared_fields(make_sim: MakeSim) -> None:
    sim = await make_sim(faults=FaultConfig(rate=1.0, kinds=("drift",)))
    body = await sim.ok("/long-short", symbol="BTCUSDT", period="1h")
    assert all("longRate" in r and "longRatio" not in r for r in body["data"])
    with pytest.raises(PayloadError, match="longRatio"):
        bitget.parse("global_account", body, instrument="BTCUSDT", period="1h")
    oi = await sim.ok("/open-interest", symbol="BTCUSDT", productType="USDT-FUTURES")
    assert "amount" in oi["data"]["openInterestList"][0]


async def test_hourly_and_daily_rows_agree_at_midnight(make_sim: MakeSim) -> None:
    today = NOW_MS - NOW_MS % DAY
    sim = await make_sim(now=(today + 90 * MIN) / 1000)  # 01:30: both windows hold yesterday
    midnight = str(today - DAY)
    for path, daily in (("/long-short", "1Dutc"), ("/position-long-short", "1d")):
        hourly = await sim.ok(path, symbol="XRPUSDT", period="1h")
        days = await sim.ok(path, symbol="XRPUSDT", period=daily)
        assert days["data"][-1]["ts"] == midnight  # the last closed day
        by_ts = {r["ts"]: r for r in hourly["data"]}
        assert by_ts[midnight] == days["data"][-1]
