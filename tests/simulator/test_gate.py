"""The Gate simulator, as a client sees it: the real response shapes, windows, paging,
errors and rate limits.

The clock is frozen and moved by hand: no test sleeps to observe timing.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pipelines.errors import PayloadError
from pipelines.exchanges import gate
from pipelines.simulator import FaultConfig, server
from pipelines.simulator import gate as gate_sim
from pipelines.universe import load_universe, resolve, split_multiplier
from tests.clock import NOW, Clock
from tests.conftest import load_payload
from tests.simulator.conftest import Make, fetch, ok

DOC = "gate/contract_stats_doc_example.json"
NOT_FOUND = "gate/error_contract_not_found.json"
STATS = "/gate/futures/usdt/contract_stats"
CANDLES = "/gate/futures/usdt/candlesticks"
CONTRACTS = "/gate/futures/usdt/contracts"
COUNT_FIELDS = {
    "long_users",
    "short_users",
    "long_taker_size",
    "short_taker_size",
    "top_long_size",
    "top_short_size",
}
DOC_CANDLE: dict[str, Any] = load_payload("gate/candlesticks_doc_example.json")[0]
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW_MS = int(NOW * 1000)


def _kind(value: Any) -> str:
    """JSON type: int and float are both numbers (Gate prints integral floats without a point)."""
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


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
