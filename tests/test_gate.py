"""Gate: parsers on the real payloads, cassettes through the HTTP layer, the simulator, and fetches.

The simulator clock is frozen (and moved by hand) wherever time matters; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipelines.errors import DataUnavailable, ExchangeApiError, PayloadError
from pipelines.exchanges import CONNECTORS, gate
from pipelines.exchanges.base import LS_COLUMNS, Window
from pipelines.http import HttpClient
from pipelines.ingest import fetch_partition
from pipelines.resources import ExchangeAccess
from pipelines.simulator import FaultConfig, SimulatorThread, server
from pipelines.simulator import gate as gate_sim
from pipelines.universe import load_universe, resolve, split_multiplier
from schemas.ls_ratio import split_valid
from tests.conftest import load_payload

DOC = "gate/contract_stats_doc_example.json"
NOT_FOUND = "gate/error_contract_not_found.json"
STATS = "/gate/futures/usdt/contract_stats"
CANDLES = "/gate/futures/usdt/candlesticks"
CONTRACTS = "/gate/futures/usdt/contracts"
RATIO_FIELDS = ("lsr_account", "top_lsr_account", "top_lsr_size", "lsr_taker")
COUNT_FIELDS = {
    "long_users",
    "short_users",
    "long_taker_size",
    "short_taker_size",
    "top_long_size",
    "top_short_size",
}
# REFERENCE.md 5.1, a real 2022 row (as quoted there, fields elided by the quote left out).
REAL_2022: dict[str, Any] = {
    "long_liq_size": 0,
    "lsr_account": 1.7797816801139,
    "mark_price": 29692.91,
    "top_lsr_size": 0.91006677837509,
    "time": 1654335300,
    "open_interest_usd": 2226295750.1279,
    "top_lsr_account": 1.1739130434783,
    "open_interest": 749773515,
    "long_liq_usd": 0,
    "lsr_taker": 0.073035332215347,
}
# REFERENCE.md 5.2 / the Gate doc: one candlestick row.
DOC_CANDLE: dict[str, Any] = {
    "t": 1539852480,
    "v": 97151,
    "c": "1.032",
    "h": "1.032",
    "l": "1.032",
    "o": "1.032",
}

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW = 1_789_460_661.467  # 2026-09-15 08:24:21.467 UTC
NOW_MS = int(NOW * 1000)


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _kind(value: Any) -> str:
    """JSON type: int and float are both numbers (Gate prints integral floats without a point)."""
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


def _shares(ratio: float) -> tuple[float, float]:
    return ratio / (1 + ratio), 1 / (1 + ratio)


# ---------------------------------------------------------------------------------------------
# Parsers on the real payloads


@pytest.mark.parametrize(("metric", "field"), list(gate.FIELDS.items()))
@pytest.mark.parametrize("body", ["doc", "strings", "real_2022"])
def test_each_kind_becomes_shares_derived_from_its_published_ratio(
    metric: str, field: str, body: str
) -> None:
    if body == "real_2022":
        rows = [REAL_2022]
    else:
        rows = load_payload(DOC)
        if body == "strings":  # ccxt shows every value as a string
            rows = [{k: str(v) for k, v in r.items()} for r in rows]
    frame = gate.parse(metric, rows, instrument="BTC_USDT", period="5m")

    assert list(frame.columns) == LS_COLUMNS and len(frame) == len(rows)
    row, raw = frame.iloc[0], rows[0]
    published = float(raw[field])
    assert row["source_ratio"] == published
    assert (row["long_share"], row["short_share"]) == pytest.approx(_shares(published))
    assert row["ratio"] == pytest.approx(published)
    assert _ms(row["ts"]) == int(raw["time"]) * 1000  # seconds on the wire
    assert row["source_ts"] == int(raw["time"]) * 1000
    assert (row["exchange"], row["coin"], row["metric"]) == ("gate", "BTC", metric)


def test_doc_example_taker_ratio_of_100_is_kept_raw() -> None:
    raw = load_payload(DOC)[0]
    frame = gate.parse("taker_volume", [raw], instrument="BTC_USDT", period="5m")
    assert raw["lsr_taker"] == 100
    assert frame["source_ratio"].iloc[0] == 100
    assert frame["long_share"].iloc[0] == pytest.approx(100 / 101)
    assert split_valid(frame)[1].empty


def test_a_zero_ratio_is_not_published_not_a_zero_ratio() -> None:
    raw = {**load_payload(DOC)[0], "top_lsr_account": 0, "top_lsr_size": 0}
    for metric in ("top_account", "top_position"):
        frame = gate.parse(metric, [raw], instrument="AXS_USDT", period="5m")
        row = frame.iloc[0]
        assert math.isnan(row["long_share"]) and math.isnan(row["short_share"])
        assert math.isnan(row["ratio"]) and math.isnan(row["source_ratio"])
        kept, rejected = split_valid(frame)
        assert len(kept) == 1 and rejected.empty


def test_rows_come_out_ascending_whatever_the_wire_order() -> None:
    raw = load_payload(DOC)[0]
    rows = [{**raw, "time": raw["time"] + 300 * i, "lsr_account": 0.5 + i} for i in (2, 0, 1)]
    frame = gate.parse("global_account", rows, instrument="BTC_USDT", period="5m")
    assert frame["ts"].is_monotonic_increasing
    by_time = {r["time"] * 1000: r["lsr_account"] for r in rows}
    assert [by_time[_ms(t)] for t in frame["ts"]] == frame["source_ratio"].tolist()


def test_newer_count_fields_are_ignored_and_agree_with_the_ratio() -> None:
    raw = {**load_payload(DOC)[0], "long_users": 1, "short_users": 2, "last_funding_rate": 1e-4}
    frame = gate.parse("global_account", [raw], instrument="BTC_USDT", period="5m")
    assert frame["long_share"].iloc[0] == pytest.approx(raw["long_users"] / 3)


def test_open_interest_value_and_contracts_times_quanto_multiplier() -> None:
    raw = load_payload(DOC)[0]
    bare = gate.parse_open_interest([raw], instrument="BTC_USDT", period="5m")
    assert bare["open_interest_value"].iloc[0] == raw["open_interest_usd"]
    assert math.isnan(bare["open_interest"].iloc[0])  # contracts are not coins: not guessed
    enriched = gate.parse_open_interest(
        [{**raw, "quanto_multiplier": "0.0001"}], instrument="BTC_USDT", period="5m"
    )
    assert enriched["open_interest"].iloc[0] == pytest.approx(raw["open_interest"] * 0.0001)
    assert _ms(enriched["ts"].iloc[0]) == raw["time"] * 1000


def test_candlestick_doc_row() -> None:
    row = {**DOC_CANDLE, "sum": "3580"}
    frame = gate.parse_klines([row], instrument="BTC_USDT", period="1m")
    first = frame.iloc[0]
    assert _ms(first["ts"]) == row["t"] * 1000
    assert [first[k] for k in ("open", "high", "low", "close")] == [
        float(row[k]) for k in ("o", "h", "l", "c")
    ]
    assert first["quote_volume"] == float(row["sum"]) and math.isnan(first["volume"])
    with_quanto = gate.parse_klines(
        [{**row, "quanto_multiplier": "10"}], instrument="DOGE_USDT", period="1m"
    )
    assert with_quanto["volume"].iloc[0] == row["v"] * 10
    assert with_quanto["coin"].iloc[0] == "DOGE"


def test_error_envelope_names_exchange_endpoint_symbol_and_label() -> None:
    body = load_payload(NOT_FOUND)
    for parse, endpoint in (
        (lambda b: gate.parse("global_account", b, instrument="NOTACOIN_USDT", period="1h"), ""),
        (lambda b: gate.parse_open_interest(b, instrument="NOTACOIN_USDT", period="1h"), ""),
        (lambda b: gate.parse_klines(b, instrument="NOTACOIN_USDT", period="1h"), "candle"),
    ):
        with pytest.raises(PayloadError) as caught:
            parse(body)
        message = str(caught.value)
        for part in ("gate", "NOTACOIN_USDT", body["label"], endpoint or "contract_stats"):
            assert part in message
    with pytest.raises(PayloadError, match="CONTRACT_NOT_FOUND"):
        gate.parse_instruments(body)


def test_unknown_shapes_and_renamed_fields_are_clear_errors() -> None:
    with pytest.raises(PayloadError, match="expected a list"):
        gate.parse("global_account", {"data": []}, instrument="BTC_USDT", period="1h")
    drifted = [
        {("lsr_acct" if k == "lsr_account" else k): v for k, v in load_payload(DOC)[0].items()}
    ]
    with pytest.raises(PayloadError, match="lsr_account"):
        gate.parse("global_account", drifted, instrument="BTC_USDT", period="1h")
    # The other kinds in the same body still parse.
    assert len(gate.parse("top_account", drifted, instrument="BTC_USDT", period="1h")) == 1
    with pytest.raises(ValueError, match="does not publish"):
        gate.parse("elite_account", [], instrument="BTC_USDT", period="1h")


def test_error_kinds_and_reach() -> None:
    busy = gate.VENUE.error_of(429, {"label": "TOO_MANY_REQUESTS", "message": "x"})
    assert busy is not None and busy.kind == "rate_limit"
    old = {"label": "INVALID_PARAM_VALUE", "message": "Candlestick too long ago. Maximum 10000"}
    too_old = gate.VENUE.error_of(400, old)
    assert too_old is not None and too_old.kind == "unavailable"
    found = gate.VENUE.error_of(400, load_payload(NOT_FOUND))
    assert found is not None and (found.code, found.message, found.kind) == (
        "CONTRACT_NOT_FOUND",
        "CONTRACT_NOT_FOUND",
        "error",
    )
    assert gate.VENUE.error_of(200, load_payload(DOC)) is None
    assert gate.reach("klines", "1h") == timedelta(hours=10_000)
    assert all(gate.reach(m, "1h") is None for m in (*gate.METRICS, "open_interest"))


# ---------------------------------------------------------------------------------------------
# Cassettes through the real HTTP layer

DOC_WINDOW = Window(1_603_865_400_000, 1_603_865_400_000 + 5 * MIN)


async def test_one_request_serves_all_four_kinds(cassette) -> None:
    with cassette("gate_contract_stats"):
        async with ExchangeAccess().client() as client:
            pages = {
                m: await gate.fetch_ls(client, "BTC_USDT", m, "5m", DOC_WINDOW)
                for m in gate.METRICS
            }
            stats = client.stats()["gate"]
    assert stats["requests"] == 1
    raw = load_payload(DOC)
    for metric, field in gate.FIELDS.items():
        assert pages[metric] == [raw]
        frame = gate.parse(metric, pages[metric][0], instrument="BTC_USDT", period="5m")
        assert frame["source_ratio"].tolist() == [raw[0][field]]


async def test_unknown_contract_is_an_api_error_with_label(cassette) -> None:
    with cassette("gate_contract_not_found"):
        async with ExchangeAccess().client() as client:
            with pytest.raises(ExchangeApiError) as caught:
                await gate.fetch_ls(client, "NOTACOIN_USDT", "global_account", "5m", DOC_WINDOW)
    error = caught.value
    assert (error.exchange, error.symbol, error.status, error.code) == (
        "gate",
        "NOTACOIN_USDT",
        400,
        "CONTRACT_NOT_FOUND",
    )
    assert "contract_stats" in str(error)


async def test_too_many_requests_is_retried(cassette) -> None:
    with cassette("gate_rate_limited_then_served"):
        async with ExchangeAccess().client() as client:
            pages = await gate.fetch_ls(client, "BTC_USDT", "top_position", "5m", DOC_WINDOW)
            stats = client.stats()["gate"]
    assert pages == [load_payload(DOC)]
    assert (stats["requests"], stats["retries"]) == (2, 1)


async def test_paging_forward_from_the_last_row_cut_to_the_window(
    cassette, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate, "STATS_LIMIT", 2)
    window = Window(DOC_WINDOW.start_ms, DOC_WINDOW.start_ms + 25 * MIN)
    with cassette("gate_paged"):
        async with ExchangeAccess().client() as client:
            pages = await gate.fetch_ls(client, "BTC_USDT", "global_account", "5m", window)
    assert [len(p) for p in pages] == [3, 2]  # limit + 1 rows, the last page cut at the window
    frame = pd.concat(
        gate.parse("global_account", p, instrument="BTC_USDT", period="5m") for p in pages
    )
    assert [_ms(t) for t in frame["ts"]] == [window.start_ms + i * 5 * MIN for i in range(5)]


# ---------------------------------------------------------------------------------------------
# The simulator


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(server.SPECS, "gate", gate_sim.SPEC)
    monkeypatch.setitem(CONNECTORS, "gate", gate)  # type: ignore[arg-type]


Make = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_sim(registered: None) -> AsyncIterator[Make]:
    clients: list[TestClient] = []

    async def make(**kwargs: Any) -> TestClient:
        kwargs.setdefault("clock", Clock())
        client = TestClient(TestServer(server.create_app(exchanges=("gate",), **kwargs)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def sim(make_sim: Make) -> TestClient:
    return await make_sim()


async def fetch(client: TestClient, path: str, **params: Any) -> tuple[int, Any, Any]:
    async with client.get(path, params={k: str(v) for k, v in params.items()}) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text), response.headers
        except json.JSONDecodeError:
            return response.status, text, response.headers


async def ok(client: TestClient, path: str, **params: Any) -> Any:
    status, body, _ = await fetch(client, path, **params)
    assert status == 200, body
    return body


async def test_sim_rows_have_the_doc_keys_and_json_types_plus_count_fields(
    sim: TestClient,
) -> None:
    doc = load_payload(DOC)[0]
    rows = await ok(sim, STATS, contract="BTC_USDT", interval="5m", limit=10)
    assert len(rows) == 10
    for row in rows:
        assert set(row) == set(doc) | COUNT_FIELDS
        assert isinstance(row["time"], int)  # seconds
        for key, value in row.items():
            # mark_price: a number in the real 2022 row, a string in the doc: numbers here.
            expected = "number" if key == "mark_price" else _kind(doc.get(key, 0))
            assert _kind(value) == expected, key
    stamps = [r["time"] for r in rows]
    assert stamps == sorted(stamps) and {b - a for a, b in itertools.pairwise(stamps)} == {300}
    assert stamps[-1] * 1000 == NOW_MS - NOW_MS % (5 * MIN)  # the open bucket is the newest


async def test_sim_each_ratio_is_its_count_quotient(sim: TestClient) -> None:
    rows = await ok(sim, STATS, contract="ETH_USDT", interval="1h", limit=24)
    for r in rows:
        assert r["lsr_account"] == pytest.approx(r["long_users"] / r["short_users"], rel=1e-12)
        assert r["lsr_taker"] == pytest.approx(r["long_taker_size"] / r["short_taker_size"])
        assert r["top_lsr_size"] == pytest.approx(r["top_long_size"] / r["top_short_size"])
        assert r["top_lsr_account"] > 0
        assert r["open_interest_usd"] == pytest.approx(
            r["open_interest"] * gate_sim.quanto("ETH") * r["mark_price"], rel=1e-9
        )


async def test_sim_thin_contract_publishes_zero_top_ratios(sim: TestClient) -> None:
    (thin,) = gate_sim.THIN
    rows = await ok(sim, STATS, contract=f"{thin}_USDT", interval="1h", limit=5)
    assert all(r["top_lsr_account"] == 0 and r["top_lsr_size"] == 0 for r in rows)
    assert all(r["lsr_account"] > 0 for r in rows)


async def test_sim_paging_rules(sim: TestClient) -> None:
    hour = NOW_MS - NOW_MS % HOUR
    start = (hour - 100 * HOUR) // 1000
    default = await ok(sim, STATS, contract="SOL_USDT")  # 5m, the latest 30 rows
    assert len(default) == 30 and default[-1]["time"] * 1000 == NOW_MS - NOW_MS % (5 * MIN)
    rows = await ok(sim, STATS, contract="SOL_USDT", interval="1h", **{"from": start}, limit=10)
    assert [r["time"] for r in rows] == [start + 3600 * i for i in range(11)]  # limit + 1
    off_grid = await ok(
        sim, STATS, contract="SOL_USDT", interval="1h", **{"from": start + 60}, limit=10
    )
    assert len(off_grid) == 12 and off_grid[0]["time"] == start  # limit + 2, from inside a bucket
    ignored_to = await ok(
        sim, STATS, contract="SOL_USDT", interval="1h", **{"from": start, "to": start}, limit=10
    )
    assert ignored_to == rows  # `to` is ignored once `from` is set
    far = (hour - 300 * HOUR) // 1000  # 3600 five-minute buckets back
    biggest = await ok(sim, STATS, contract="SOL_USDT", interval="5m", **{"from": far}, limit=2000)
    assert len(biggest) == 2001
    status, body, _ = await fetch(sim, STATS, contract="SOL_USDT", interval="5m", limit=2001)
    assert status == 400 and body["label"] == "INVALID_PARAM_VALUE"


async def test_sim_error_envelopes(sim: TestClient) -> None:
    status, body, _ = await fetch(sim, STATS, contract="NOTACOIN_USDT", interval="1h")
    assert (status, body) == (400, load_payload(NOT_FOUND))
    (unlisted,) = gate_sim.UNLISTED
    status, body, _ = await fetch(sim, CANDLES, contract=f"{unlisted}_USDT", interval="1h")
    assert (status, body) == (400, load_payload(NOT_FOUND))
    status, body, _ = await fetch(sim, STATS, interval="1h")
    assert status == 400 and body["label"] == "MISSING_REQUIRED_PARAM"
    status, body, _ = await fetch(sim, STATS, contract="BTC_USDT", interval="2h")
    assert (
        status == 400 and body["label"] == "INVALID_PARAM_VALUE" and "interval" in body["message"]
    )


async def test_sim_newest_bucket_is_rewritten_after_it_closes(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock)
    closed = NOW_MS - NOW_MS % HOUR  # this hour closes at closed + 1h
    params = {"contract": "BTC_USDT", "interval": "1h", "from": closed // 1000, "limit": 1}
    seen = []
    for after_close_s in (30, 90, 149, 151, 600, 3000):
        clock.now = (closed + HOUR) / 1000 + after_close_s
        seen.append((await ok(sim, STATS, **params))[0])
    assert len({json.dumps(r) for r in seen[:3]}) > 1  # still being rewritten
    assert seen[3] == seen[4] == seen[5]  # final ~2.5 minutes after the close


async def test_sim_hourly_and_daily_rows_agree_at_midnight(sim: TestClient) -> None:
    midnight = (NOW_MS - NOW_MS % DAY) // 1000
    start = midnight - 10 * 86_400
    daily = await ok(sim, STATS, contract="XRP_USDT", interval="1d", **{"from": start}, limit=9)
    hourly = await ok(sim, STATS, contract="XRP_USDT", interval="1h", **{"from": start}, limit=240)
    by_time = {r["time"]: r for r in hourly}
    assert len(daily) == 10
    for row in daily[:-1]:
        twin = by_time[row["time"]]
        for key in ("lsr_account", "top_lsr_account", "top_lsr_size", "open_interest"):
            assert row[key] == twin[key]


async def test_sim_history_depth(sim: TestClient) -> None:
    old = (NOW_MS - gate_sim.STATS_HISTORY_MS - 10 * DAY) // 1000
    assert await ok(sim, STATS, contract="BTC_USDT", interval="1h", **{"from": old}) == []
    recent = (NOW_MS - NOW_MS % HOUR - 60 * DAY) // 1000  # at least 60 days are served
    assert len(await ok(sim, STATS, contract="BTC_USDT", interval="1h", **{"from": recent})) == 31


async def test_sim_candlesticks(sim: TestClient) -> None:
    rows = await ok(sim, CANDLES, contract="BTC_USDT", interval="1h", limit=5)
    assert len(rows) == 5
    for row in rows:
        assert set(row) == set(DOC_CANDLE) | {"sum"}
        assert {k: _kind(v) for k, v in row.items()} == {
            **{k: _kind(v) for k, v in DOC_CANDLE.items()},
            "sum": "str",
        }
        assert float(row["h"]) >= max(float(row["o"]), float(row["c"]))
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows)
    assert all(a["c"] == b["o"] for a, b in itertools.pairwise(rows))
    assert len(await ok(sim, CANDLES, contract="BTC_USDT")) == 100  # 5m by default
    hour = (NOW_MS - NOW_MS % HOUR) // 1000
    ranged = await ok(
        sim, CANDLES, contract="BTC_USDT", interval="1h", **{"from": hour - 7200, "to": hour}
    )
    assert [r["t"] for r in ranged] == [hour - 7200, hour - 3600, hour]  # `to` inclusive
    for params, message in (
        ({"from": hour - 7200, "limit": 2}, "limit"),
        ({"from": hour - 2000 * 3600, "to": hour}, "2000"),
        ({"from": hour - 10_000 * 3600, "to": hour - 9_000 * 3600}, "too long ago"),
    ):
        status, body, _ = await fetch(sim, CANDLES, contract="BTC_USDT", interval="1h", **params)
        assert (status, body["label"]) == (400, "INVALID_PARAM_VALUE") and message in body[
            "message"
        ]


async def test_sim_contract_list_pages_and_names(sim: TestClient) -> None:
    whole = await ok(sim, CONTRACTS, limit=1000)
    names = [c["name"] for c in whole]
    assert names == sorted(names) and len(names) > 60
    pages = [await ok(sim, CONTRACTS, limit=7, offset=o) for o in range(0, len(names) + 7, 7)]
    assert [c["name"] for p in pages for c in p] == names
    assert len(await ok(sim, CONTRACTS)) == min(100, len(names))
    assert {"PEPE_USDT", "SHIB_USDT", "BONK_USDT"} <= set(names)  # coins under their own names
    by_name = {c["name"]: c for c in whole}
    assert by_name["BTC_USDT"]["quanto_multiplier"] == "0.0001"
    assert float(by_name["PEPE_USDT"]["quanto_multiplier"]) >= 1_000_000
    assert any(c["in_delisting"] for c in whole)
    listings = gate.parse_instruments(whole)
    assert all(not by_name[li.instrument]["in_delisting"] for li in listings)
    mapping = resolve("gate", listings, load_universe())
    assert set(load_universe().coins) - set(mapping) == set(gate_sim.UNLISTED)
    assert len(mapping) >= 47 and mapping["PEPE"] == "PEPE_USDT"
    assert all(split_multiplier(li.base_asset)[1] == 1 for li in listings)


async def test_sim_listing_gaps_can_be_switched_off(make_sim: Make) -> None:
    sim = await make_sim(listing_gaps=False)
    (unlisted,) = gate_sim.UNLISTED
    assert len(await ok(sim, STATS, contract=f"{unlisted}_USDT", limit=1)) == 1


async def test_sim_rate_limit_is_per_endpoint_and_never_bans(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock, rate_limit_scale=0.01)
    params = {"contract": "BTC_USDT", "interval": "1h", "limit": 1}
    for _ in range(200):
        await ok(sim, STATS, **params)
    for _ in range(20):  # Gate answers 429 every time; no ban stage
        status, body, headers = await fetch(sim, STATS, **params)
        assert status == 429 and body["label"] == "TOO_MANY_REQUESTS" and body["message"]
        assert headers["X-Gate-RateLimit-Limit"] == "200" and int(headers["Retry-After"]) >= 1
    await ok(sim, CANDLES, contract="BTC_USDT", interval="1h", limit=1)  # another endpoint
    clock.now += 0.11  # the (scaled) 10 s window has passed
    await ok(sim, STATS, **params)
    stats = server.get_stats(sim.server.app)  # type: ignore[attr-defined]
    assert stats.max_requests_in_window("gate", "/futures/usdt/contract_stats") == 200
    assert stats.allowed_in_window("gate", "/futures/usdt/contract_stats") == 200


async def test_sim_faults_use_gate_envelopes_and_drift_hits_a_ratio(make_sim: Make) -> None:
    throttled = await make_sim(faults=FaultConfig(rate=1.0, kinds=("429",)))
    status, body, _ = await fetch(throttled, STATS, contract="BTC_USDT")
    assert (status, body["label"]) == (429, "TOO_MANY_REQUESTS")
    drifted = await make_sim(faults=FaultConfig(rate=1.0, kinds=("drift",)))
    rows = await ok(drifted, STATS, contract="BTC_USDT", interval="1h", limit=2)
    assert all("lsr_account" not in r and "lsr_acct" in r for r in rows)
    with pytest.raises(PayloadError, match="lsr_account"):
        gate.parse("global_account", rows, instrument="BTC_USDT", period="1h")
    candles = await ok(drifted, CANDLES, contract="BTC_USDT", interval="1h", limit=2)
    with pytest.raises(PayloadError, match="sum"):
        gate.parse_klines(candles, instrument="BTC_USDT", period="1h")


# ---------------------------------------------------------------------------------------------
# fetch_* against the simulator


@pytest.fixture
async def sim_client(
    registered: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Any, HttpClient]]:
    async with server.run_simulator(port=0, exchanges=("gate",), clock=Clock()) as running:
        monkeypatch.setenv("LSR_GATE_BASE_URL", running.base_urls["gate"])
        async with ExchangeAccess().client() as client:
            yield running, client


def _day(days_back: int) -> Window:
    midnight = NOW_MS - NOW_MS % DAY
    return Window(midnight - days_back * DAY, midnight - (days_back - 1) * DAY)


async def test_fetch_five_datasets_with_one_request(sim_client: tuple[Any, HttpClient]) -> None:
    running, client = sim_client
    listings = await gate.fetch_instruments(client)
    assert any(li.instrument == "PEPE_USDT" for li in listings)
    frames = {
        m: pd.concat(
            gate.parse(m, p, instrument="PEPE_USDT", period="1h")
            for p in await gate.fetch_ls(client, "PEPE_USDT", m, "1h", _day(1))
        )
        for m in gate.METRICS
    }
    pages = await gate.fetch_open_interest(client, "PEPE_USDT", "1h", _day(1))
    requests = running.stats.requests
    assert requests[("gate", "/futures/usdt/contract_stats")] == 1
    assert requests[("gate", "/futures/usdt/contracts")] == 1  # shared with the quanto lookup
    assert all(len(f) == 24 for f in frames.values())
    oi = gate.parse_open_interest(pages[0], instrument="PEPE_USDT", period="1h")
    raw = pages[0][0]
    assert raw["quanto_multiplier"] == gate_sim._quanto_text("PEPE")
    assert oi["open_interest"].iloc[0] == pytest.approx(
        raw["open_interest"] * float(raw["quanto_multiplier"])
    )
    assert _ms(oi["ts"].iloc[0]) == _day(1).start_ms


async def test_fetch_pages_forward_past_2000_rows(sim_client: tuple[Any, HttpClient]) -> None:
    running, client = sim_client
    window = Window(_day(8).start_ms, _day(1).end_ms)  # 8 days of 5m = 2304 buckets
    pages = await gate.fetch_ls(client, "ETH_USDT", "top_account", "5m", window)
    frame = pd.concat(
        gate.parse("top_account", p, instrument="ETH_USDT", period="5m") for p in pages
    )
    stamps = [_ms(t) for t in frame["ts"]]
    assert stamps == list(range(window.start_ms, window.end_ms, 5 * MIN))
    assert running.stats.requests[("gate", "/futures/usdt/contract_stats")] == 2
    klines = await gate.fetch_klines(
        client, "ETH_USDT", "1h", Window(_day(100).start_ms, _day(1).end_ms)
    )
    candles = pd.concat(gate.parse_klines(p, instrument="ETH_USDT", period="1h") for p in klines)
    assert len(klines) == 2 and len(candles) == 2400 and candles["ts"].is_unique
    assert candles["volume"].gt(0).all()


async def test_windows_gate_no_longer_serves_are_reported_unavailable(
    sim_client: tuple[Any, HttpClient],
) -> None:
    _, client = sim_client
    old = _day(gate_sim.STATS_HISTORY_MS // DAY + 20)
    with pytest.raises(DataUnavailable, match="no rows inside"):
        await gate.fetch_ls(client, "BTC_USDT", "global_account", "1h", old)
    with pytest.raises(DataUnavailable, match="too long ago"):
        await gate.fetch_klines(client, "BTC_USDT", "5m", _day(40))


async def test_an_answer_with_only_rows_outside_the_window_is_unavailable() -> None:
    class Answers:
        """Stands in for HttpClient: Gate answering an old `from` with its oldest rows."""

        async def get_shared_json(self, *_args: Any, **_kwargs: Any) -> Any:
            return load_payload(DOC)  # 2020-10-28 06:10, far after the window asked for

    old = Window.of(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC))
    with pytest.raises(DataUnavailable, match="no rows inside this window"):
        await gate.fetch_ls(Answers(), "BTC_USDT", "global_account", "5m", old)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# End to end


@pytest.fixture
def gate_env(registered: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorThread]:
    with SimulatorThread(port=0, rate_limit_scale=0.05, exchanges=("gate",)) as sim:
        monkeypatch.setenv("LSR_GATE_BASE_URL", sim.base_urls["gate"])
        yield sim


def test_partition_fetch_brings_every_kind_for_45_plus_coins(gate_env: SimulatorThread) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    fetched = asyncio.run(
        fetch_partition(
            "gate",
            yesterday,
            universe=load_universe(),
            periods=("1h",),
            client=ExchangeAccess(rate_limit_scale=0.05).client(),
        )
    )
    served = gate_env.stats_snapshot()
    assert fetched.failures == [] and fetched.banned is None
    ls = fetched.ls
    for metric in gate.METRICS:
        rows = ls[ls["metric"] == metric]
        per_coin = rows.groupby("coin").size()
        assert len(per_coin) >= 45 and (per_coin == 24).all(), metric
        assert rows.loc[rows["ratio"].notna(), "coin"].nunique() >= 45
    assert ls["ts"].dt.date.eq(yesterday).all()
    kept, rejected = split_valid(ls)
    assert rejected.empty and len(kept) == len(ls)
    assert (fetched.open_interest.groupby("coin").size() == 24).all()
    assert fetched.open_interest["open_interest"].gt(0).all()
    assert (fetched.klines.groupby("coin").size() == 24).all()
    # One contract_stats request per coin serves four kinds and open interest.
    assert served["requests"]["gate /futures/usdt/contract_stats"] == len(fetched.mapping)
    assert served["statuses"] == {"gate 200": served["statuses"]["gate 200"]}
