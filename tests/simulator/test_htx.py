"""The HTX simulator, as a client sees it: the real response shapes, windows, paging,
errors and rate limits.

The clock is frozen and moved by hand: no test sleeps to observe timing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipelines.errors import PayloadError
from pipelines.exchanges import htx
from pipelines.simulator import FaultConfig, get_stats, server
from pipelines.simulator import htx as sim_htx
from pipelines.universe import load_universe, resolve
from tests.cassette_specs import htx as docs
from tests.clock import NOW, Clock
from tests.conftest import load_payload

HOUR = 3_600_000
DAY = 24 * HOUR
NOW_MS = int(NOW * 1000)
ACCOUNT = "/linear-swap-api/v1/swap_elite_account_ratio"
POSITION = "/linear-swap-api/v1/swap_elite_position_ratio"
OI = "/linear-swap-api/v1/swap_his_open_interest"
KLINES = "/linear-swap-ex/market/history/kline"
CONTRACTS = "/linear-swap-api/v1/swap_contract_info"


def _types(row: dict[str, Any]) -> dict[str, type]:
    return {key: type(value) for key, value in row.items()}


class Sim:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def get(self, path: str, **params: Any) -> tuple[int, Any, Any]:
        query = {k: str(v) for k, v in params.items()}
        async with self.client.get(f"/htx{path}", params=query) as response:
            text = await response.text()
            return response.status, json.loads(text), response.headers

    async def ok(self, path: str, **params: Any) -> Any:
        status, body, _ = await self.get(path, **params)
        assert status == 200 and body.get("status") == "ok", body
        return body

    @property
    def stats(self) -> server.SimStats:
        return get_stats(cast(Any, self.client.server).app)


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient] = []

    async def make(**kwargs: Any) -> Sim:
        kwargs.setdefault("clock", Clock())
        client = TestClient(TestServer(server.create_app(exchanges=("htx",), **kwargs)))
        await client.start_server()
        clients.append(client)
        return Sim(client)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def sim(make_sim: Callable[..., Any]) -> Sim:
    return cast(Sim, await make_sim())


def _holes(coin: str, start: int, end: int) -> set[int]:
    return {t for t in range(start, end, HOUR) if sim_htx.is_hole(coin, "60min", t)}


async def test_elite_ratios_have_the_documented_shape_window_and_order(sim: Sim) -> None:
    doc = load_payload("htx/elite_account_ratio_doc_example.json")
    plain = next(c for c in ("BTC", "ETH", "SOL", "XRP") if sim_htx.locked_share(c, 0) == 0)
    locked = next(c for c in ("BTC", "ETH", "SOL", "XRP") if sim_htx.locked_share(c, 0) > 0)
    for coin in (plain, locked):
        body = await sim.ok(ACCOUNT, contract_code=f"{coin}-USDT", period="4hour")
        assert list(body) == list(doc) and list(body["data"]) == list(doc["data"])
        assert body["ts"] == NOW_MS and body["data"]["contract_code"] == f"{coin}-USDT"
        rows = body["data"]["list"]
        stamps = [r["ts"] for r in rows]
        assert len(rows) == htx.ELITE_ROWS and stamps == sorted(stamps)  # oldest first
        assert stamps[-1] == NOW_MS - NOW_MS % (4 * HOUR)  # the open bucket is the newest
        for row in rows:
            assert set(row) == set(doc["data"]["list"][0])
            assert all(type(v) in (int, float) for v in row.values()) and type(row["ts"]) is int
            total = row["buy_ratio"] + row["sell_ratio"] + row["locked_ratio"]
            assert total == pytest.approx(1, abs=1e-4)
        if coin == plain:
            assert all(_types(r) == _types(doc["data"]["list"][0]) for r in rows)  # 0 is an int
        else:
            assert all(r["locked_ratio"] > 0 for r in rows)  # long + short < 1
    position = await sim.ok(POSITION, contract_code="btc-usdt", period="15min")  # any case
    assert all(set(r) == {"buy_ratio", "sell_ratio", "ts"} for r in position["data"]["list"])


async def test_hourly_series_have_holes_and_days_start_at_16_utc(sim: Sim) -> None:
    newest = NOW_MS - NOW_MS % HOUR
    for coin in ("BTC", "DOGE", "PEPE", "LINK"):
        for path in (ACCOUNT, POSITION):
            body = await sim.ok(path, contract_code=f"{coin}-USDT", period="60min")
            stamps = [r["ts"] for r in body["data"]["list"]]
            window = set(range(newest - 47 * HOUR, newest + HOUR, HOUR))
            assert set(stamps) == window - _holes(coin, newest - 47 * HOUR, newest + HOUR)
    assert sum(len(_holes(c, newest - 30 * DAY, newest)) for c in ("BTC", "ETH")) > 0
    daily = await sim.ok(ACCOUNT, contract_code="ETH-USDT", period="1day")
    stamps = [r["ts"] for r in daily["data"]["list"]]
    assert len(stamps) == 48 and {t % DAY for t in stamps} == {16 * HOUR}


async def test_closed_buckets_agree_across_periods(sim: Sim) -> None:
    hourly = await sim.ok(ACCOUNT, contract_code="SOL-USDT", period="60min")
    four = await sim.ok(ACCOUNT, contract_code="SOL-USDT", period="4hour")
    by_ts = {r["ts"]: r for r in hourly["data"]["list"]}
    shared = [r for r in four["data"]["list"][:-1] if r["ts"] in by_ts]  # skip the open bucket
    assert len(shared) >= 5 and all(by_ts[r["ts"]] == r for r in shared)


async def test_elite_and_oi_parameters_and_errors(sim: Sim) -> None:
    doc_error = json.loads(docs.UNKNOWN_CONTRACT)
    status, body, headers = await sim.get(ACCOUNT, contract_code="NOPE-USDT", period="60min")
    assert status == 200 and list(body) == list(doc_error)
    assert (body["err_code"], body["err_msg"]) == (doc_error["err_code"], doc_error["err_msg"])
    assert headers["ratelimit-limit"] == "240" and headers["ratelimit-interval"] == "3000"
    for wrong in ({"contract_code": "BTC-USDT", "period": "1h"}, {"contract_code": "BTC-USDT"}):
        status, body, _ = await sim.get(ACCOUNT, **wrong)
        assert status == 200 and body["status"] == "error" and isinstance(body["err_code"], int)
    status, body, _ = await sim.get(ACCOUNT, period="60min")
    assert body["err_code"] == 1014
    # OI history: documented periods only, size 1..200 (default 48), newest first.
    doc_oi = json.loads(docs.DOC_OPEN_INTEREST)
    body = await sim.ok(OI, contract_code="DOGE-USDT", period="60min", amount_type=2)
    assert list(body["data"]) == list(doc_oi["data"])
    ticks = body["data"]["tick"]
    assert len(ticks) == 48 and [t["ts"] for t in ticks] == sorted(
        (t["ts"] for t in ticks), reverse=True
    )
    for tick in ticks:
        assert set(tick) == set(doc_oi["data"]["tick"][0])
        assert (type(tick["volume"]), type(tick["value"]), tick["amount_type"]) == (float, float, 2)
    assert (
        len(
            (await sim.ok(OI, contract_code="DOGE-USDT", period="1day", amount_type=2, size=200))[
                "data"
            ]["tick"]
        )
        == 200
    )
    bads: list[dict[str, Any]] = [{"size": 201}, {"period": "5min"}, {"amount_type": 3}]
    for bad in bads:
        params = {"contract_code": "DOGE-USDT", "period": "60min", "amount_type": 2} | bad
        status, body, _ = await sim.get(OI, **params)
        assert status == 200 and body["status"] == "error"
    contracts = await sim.ok(OI, contract_code="DOGE-USDT", period="60min", amount_type=1, size=1)
    coins = ticks[0]["volume"]
    size = sim_htx.contract_size("DOGE")
    assert contracts["data"]["tick"][0]["volume"] == pytest.approx(coins / size, abs=0.5)


async def test_klines_follow_size_or_from_to_in_seconds(sim: Sim) -> None:
    doc = json.loads(docs.DOC_KLINES)
    body = await sim.ok(KLINES, contract_code="BTC-USDT", period="60min", size=5)
    assert list(body) == list(doc) and body["ch"] == "market.BTC-USDT.kline.60min"
    rows = body["data"]
    assert len(rows) == 5 and [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert rows[-1]["id"] * 1000 == NOW_MS - NOW_MS % HOUR  # seconds; the open candle last
    for row in rows:
        assert list(row) == list(doc["data"][0]) and _types(row) == _types(doc["data"][0]) | {
            "amount": float,
            "count": int,
        }
        assert row["low"] <= min(row["open"], row["close"]) <= row["high"]
        size = sim_htx.contract_size("BTC")
        assert row["amount"] == pytest.approx(row["vol"] * size)
    assert all(a["close"] == b["open"] for a, b in itertools.pairwise(rows))
    start = (NOW_MS - NOW_MS % DAY - DAY) // 1000
    day = await sim.ok(
        KLINES, contract_code="BTC-USDT", period="60min", **{"from": start}, to=start + 86_399
    )
    assert [r["id"] for r in day["data"]] == list(range(start, start + 86_400, 3600))
    # size wins over from/to [doc]; neither: an empty list; from without to: refused.
    both = await sim.ok(
        KLINES, contract_code="BTC-USDT", period="60min", size=2, **{"from": start}, to=start + 7200
    )
    assert [r["id"] for r in both["data"]] == [r["id"] for r in rows[-2:]]
    assert (await sim.ok(KLINES, contract_code="BTC-USDT", period="60min"))["data"] == []
    long = await sim.ok(
        KLINES, contract_code="BTC-USDT", period="5min", **{"from": start - 30 * 86_400}, to=start
    )
    assert len(long["data"]) == 2000
    daily = await sim.ok(KLINES, contract_code="BTC-USDT", period="1day", size=3)
    assert {r["id"] * 1000 % DAY for r in daily["data"]} == {16 * HOUR}  # Singapore days
    doc_error = json.loads(docs.MARKET_ERROR)
    for params in (
        {"contract_code": "NOPE-USDT", "period": "60min", "size": 1},
        {"contract_code": "BTC-USDT", "period": "7min", "size": 1},
        {"contract_code": "BTC-USDT", "period": "60min", "size": 2001},
        {"contract_code": "BTC-USDT", "period": "60min", "from": start},
    ):
        status, body, _ = await sim.get(KLINES, **params)
        assert (
            status == 200
            and list(body) == list(doc_error)
            and body["err-code"] == "invalid-parameter"
        )
    status, body, _ = await sim.get(KLINES, contract_code="NOPE-USDT", period="60min", size=1)
    assert body == doc_error | {"ts": NOW_MS}


async def test_contract_info_and_listing(sim: Sim) -> None:
    doc = json.loads(docs.DOC_CONTRACT_INFO)
    body = await sim.ok(CONTRACTS, business_type="swap")
    entries = body["data"]
    for entry in entries:
        assert set(doc["data"][0]) <= set(entry)
        assert {k: type(entry[k]) for k in doc["data"][0]} == _types(doc["data"][0]) | {
            "contract_size": float
        }
    codes = {e["contract_code"] for e in entries}
    assert {"PEPE-USDT", "SHIB-USDT", "BONK-USDT", "FLOKI-USDT", "龙虾-USDT"} <= codes
    assert not any(c.startswith("1000") for c in codes)  # names, not multiplier contracts
    everything = await sim.ok(CONTRACTS, business_type="all")
    futures = [e for e in everything["data"] if e["business_type"] == "futures"]
    assert len(futures) == 2 and all(e["delivery_date"] for e in futures)
    one = await sim.ok(CONTRACTS, contract_code="eth-usdt")
    assert [e["contract_code"] for e in one["data"]] == ["ETH-USDT"]
    status, body, _ = await sim.get(CONTRACTS, contract_code="NOPE-USDT")
    assert status == 200 and body["err_code"] == 1014

    listings = htx.parse_instruments(everything)
    symbols = {listing.instrument for listing in listings}
    assert not symbols & {"CYBER-USDT", "BLESS-USDT", "NVDA-USDT", "XAU-USDT"}
    assert not any(s.count("-") > 1 for s in symbols)  # no dated futures
    mapping = resolve("htx", listings, load_universe())
    assert set(load_universe().coins) - set(mapping) == set(sim_htx.UNLISTED)
    assert len(mapping) >= 47 and mapping["PEPE"] == "PEPE-USDT"
    assert all(listing.onboard_ms for listing in listings)


async def test_listing_gaps_can_be_switched_off(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(listing_gaps=False)
    body = await sim.ok(CONTRACTS)
    assert {f"{c}-USDT" for c in load_universe().coins} <= {
        e["contract_code"] for e in body["data"]
    }


async def test_unknown_path_is_a_spring_style_404(sim: Sim) -> None:
    real = json.loads(docs.UNKNOWN_PATH)
    status, body, headers = await sim.get("/linear-swap-api/v1/nope")
    assert status == 404 and headers["X-LSR-Simulated"] == "1"
    assert set(body) <= set(real) and (body["status"], body["error"]) == (404, "Not Found")
    assert body["timestamp"] == "2026-09-15T08:24:21.467+00:00"
    error = htx.VENUE.error_of(404, body)
    assert error is not None and error.code == "404"


async def test_public_limit_240_per_3s_answers_1032_and_never_bans(
    make_sim: Callable[..., Any],
) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock, rate_limit_scale=0.01)
    params = {"contract_code": "BTC-USDT", "period": "1day"}
    paths = (ACCOUNT, POSITION, OI, CONTRACTS)  # the non-market calls share one budget
    for i in range(240):
        status, body, _ = await sim.get(
            paths[i % 4],
            **(params | {"amount_type": 2, "size": 1} if paths[i % 4] == OI else params),
        )
        assert status == 200 and body["status"] == "ok"
    for _ in range(20):  # over the limit, again and again: 1032 on HTTP 200, no ban
        status, body, _ = await sim.get(ACCOUNT, **params)
        assert (status, body["err_code"], body["err_msg"]) == (
            200,
            1032,
            "The number of access exceeded the limit.",
        )
    kline = await sim.ok(KLINES, contract_code="BTC-USDT", period="60min", size=1)  # own budget
    assert len(kline["data"]) == 1
    clock.advance(0.031)  # the (scaled) 3 s window has passed
    await sim.ok(ACCOUNT, **params)
    assert sim.stats.max_requests_in_window("htx", sim_htx.PUBLIC) == 240
    assert sim.stats.allowed_in_window("htx", sim_htx.PUBLIC) == 240
    assert sim.stats.rate_limited("htx") == 0  # no 403/418/429 at all


async def test_market_limit_800_per_second(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(rate_limit_scale=0.01)
    for _ in range(800):
        await sim.ok(KLINES, contract_code="ETH-USDT", period="1min", size=1)
    status, body, _ = await sim.get(KLINES, contract_code="ETH-USDT", period="1min", size=1)
    assert status == 200 and body["err_code"] == 1032
    await sim.ok(ACCOUNT, contract_code="ETH-USDT", period="60min")  # the other budget is free
    assert sim.stats.max_requests_in_window("htx", sim_htx.MARKET) == 800


async def test_faults_speak_htx(make_sim: Callable[..., Any]) -> None:
    clean = await make_sim()
    drift = await make_sim(faults=FaultConfig(rate=1.0, kinds=("drift",)))
    good = await clean.ok(ACCOUNT, contract_code="BTC-USDT", period="60min")
    bad = await drift.ok(ACCOUNT, contract_code="BTC-USDT", period="60min")
    assert [r["buy_rate"] for r in bad["data"]["list"]] == [
        r["buy_ratio"] for r in good["data"]["list"]
    ]
    with pytest.raises(PayloadError, match="buy_ratio"):
        htx.parse("top_account", bad, instrument="BTC-USDT", period="1h")
    oi = await drift.ok(OI, contract_code="BTC-USDT", period="60min", amount_type=2)
    assert all("oi_volume" in t for t in oi["data"]["tick"])
    for path, params in (
        (KLINES, {"contract_code": "BTC-USDT", "period": "60min", "size": 3}),
        (CONTRACTS, {}),
    ):
        assert await drift.ok(path, **params) == await clean.ok(path, **params)
    for kind in ("429", "ban"):  # HTX's only over-limit answer is 1032 in an HTTP 200 body
        faulty = await make_sim(faults=FaultConfig(rate=1.0, kinds=(kind,)))
        status, body, _ = await faulty.get(ACCOUNT, contract_code="BTC-USDT", period="60min")
        assert (status, body["err_code"]) == (200, 1032)
