"""The OKX simulator, as a client sees it: the real response shapes, windows, paging,
errors and rate limits.

The clock is frozen and moved by hand: no test sleeps to observe timing.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pipelines.errors import PayloadError
from pipelines.exchanges import okx
from pipelines.simulator import (
    FaultConfig,
    get_stats,
    series,
)
from pipelines.simulator import okx as okx_sim
from pipelines.universe import load_universe, resolve
from tests.clock import NOW, Clock
from tests.conftest import load_payload
from tests.simulator.conftest import Make

NOW_MS = int(NOW * 1000)
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
RUBIK = "/okx/api/v5/rubik/stat"
ACCOUNT = f"{RUBIK}/contracts/long-short-account-ratio-contract"
TOP_ACCOUNT = f"{RUBIK}/contracts/long-short-account-ratio-contract-top-trader"
TOP_POSITION = f"{RUBIK}/contracts/long-short-position-ratio-contract-top-trader"
TAKER = f"{RUBIK}/taker-volume-contract"
OI = f"{RUBIK}/contracts/open-interest-history"
CANDLES = "/okx/api/v5/market/candles"
HISTORY = "/okx/api/v5/market/history-candles"
INSTRUMENTS = "/okx/api/v5/public/instruments"
BTC = "BTC-USDT-SWAP"
RATIO_DOC = "okx/long_short_account_ratio_ccy_doc_example.json"
TAKER_DOC = "okx/taker_volume_ccy_doc_example.json"
UNKNOWN = "okx/error_unknown_instrument.json"
CURRENT_OI = "okx/open_interest_current_ccxt_static.json"


def _shares(ratio: float) -> tuple[float, float]:
    return ratio / (1 + ratio), 1 / (1 + ratio)


async def fetch(client: TestClient, path: str, **params: Any) -> tuple[int, Any]:
    async with client.get(path, params={k: str(v) for k, v in params.items()}) as response:
        return response.status, await response.json(content_type=None)


async def data(client: TestClient, path: str, **params: Any) -> list[Any]:
    status, body = await fetch(client, path, **params)
    assert status == 200 and body["code"] == "0", body
    return body["data"]


def _types(rows: list[list[Any]]) -> set[tuple[type, ...]]:
    return {tuple(type(v) for v in row) for row in rows}


@pytest.mark.parametrize("path", [ACCOUNT, TOP_ACCOUNT, TOP_POSITION])
async def test_ratio_rows_have_the_documented_shape(sim: TestClient, path: str) -> None:
    real = load_payload(RATIO_DOC)
    status, body = await fetch(sim, path, instId=BTC, period="1H")
    assert status == 200 and set(body) == set(real) and (body["code"], body["msg"]) == ("0", "")
    rows = body["data"]
    assert len(rows) == 100  # default limit
    assert _types(rows) == _types(real["data"])  # [str, str]
    stamps = [int(r[0]) for r in rows]
    assert stamps == list(range(stamps[0], stamps[0] - 100 * HOUR, -HOUR))  # newest first
    for _, ratio in rows:
        long, _short = _shares(float(ratio))
        assert 0.3 <= long <= 0.75 and len(ratio) > 10  # full float precision


async def test_taker_rows_are_sell_first_in_the_unit_asked(sim: TestClient) -> None:
    real = load_payload(TAKER_DOC)
    day = NOW_MS - NOW_MS % DAY - DAY
    rows = {
        unit: await data(sim, TAKER, instId=BTC, period="1H", end=day + HOUR, unit=unit, limit=1)
        for unit in ("0", "1", "2")
    }
    assert _types(rows["1"]) == _types(real["data"])
    buy, sell = series.taker_volumes("okx", "BTC", day, day + HOUR, NOW_MS)
    ((ts, sell_coins, buy_coins),) = rows["0"]
    assert int(ts) == day
    assert float(sell_coins) == pytest.approx(sell, abs=0.01)  # printed to 2 decimals
    assert float(buy_coins) == pytest.approx(buy, abs=0.01)
    contracts = float(rows["1"][0][1])
    assert contracts == pytest.approx(sell / okx_sim.ct_val("BTC"), abs=0.01)
    assert float(rows["2"][0][1]) > 1000 * float(sell_coins)  # USDT: BTC costs far more than 1k


async def test_open_interest_rows_relate_like_the_real_answer(sim: TestClient) -> None:
    real = load_payload(CURRENT_OI)["data"][0]
    rows = await data(sim, OI, instId=BTC, period="1H", limit=3)
    assert len(rows) == 3 and _types(rows) == {(str, str, str, str)}
    for _, oi, oi_ccy, oi_usd in rows:
        # Contracts per coin as in the real BTC answer (ctVal 0.01), and a BTC-like USD price.
        assert float(oi) / float(oi_ccy) == pytest.approx(float(real["oi"]) / float(real["oiCcy"]))
        assert 40_000 < float(oi_usd) / float(oi_ccy) < 200_000
    assert {type(real[k]) for k in ("oi", "oiCcy", "oiUsd", "ts")} == {str}


async def test_error_envelopes(sim: TestClient) -> None:
    real = load_payload(UNKNOWN)
    for path in (ACCOUNT, TAKER, OI, CANDLES):
        assert await fetch(sim, path, instId="NOTACOIN-USDT-SWAP", period="1H") == (200, real)
    assert await fetch(sim, INSTRUMENTS, instType="SWAP", instId="NOTACOIN-USDT-SWAP") == (
        200,
        real,
    )
    status, body = await fetch(sim, ACCOUNT, instId=BTC, period="1h")  # ccxt's old mistake
    assert (status, body["code"], body["msg"]) == (400, "51000", "Parameter period error")
    status, body = await fetch(sim, ACCOUNT, period="1H")
    assert (status, body["code"]) == (400, "50014")
    status, body = await fetch(sim, ACCOUNT, instId=BTC, period="1H", limit=0)
    assert (status, body["code"]) == (400, "51000")


async def test_limits_are_capped_silently(sim: TestClient) -> None:
    assert len(await data(sim, ACCOUNT, instId=BTC, period="5m", limit=500)) == 100
    assert len(await data(sim, CANDLES, instId=BTC, bar="1m")) == 100
    assert len(await data(sim, CANDLES, instId=BTC, bar="1m", limit=1000)) == 300
    assert len(await data(sim, HISTORY, instId=BTC, bar="1m", limit=1000)) == 100


async def test_begin_and_end_are_exclusive_and_rows_publish_late(make_sim: Make) -> None:
    hour = NOW_MS - NOW_MS % HOUR
    clock = Clock(hour / 1000 + 3 * 60)  # three minutes into the hour
    sim = await make_sim(clock=clock)
    newest = await data(sim, ACCOUNT, instId=BTC, period="1H", limit=1)
    assert int(newest[0][0]) == hour - HOUR  # the open hour is not published yet
    clock.now += 3 * 60
    newest = await data(sim, ACCOUNT, instId=BTC, period="1H", limit=1)
    assert int(newest[0][0]) == hour  # now it is, stamped at the period start
    t = hour - 10 * HOUR
    rows = await data(sim, ACCOUNT, instId=BTC, period="1H", begin=t - 3 * HOUR, end=t)
    assert [int(r[0]) for r in rows] == [t - HOUR, t - 2 * HOUR]


async def test_only_the_latest_1440_rows_are_served(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock)
    stamps: list[int] = []
    end = None
    for _ in range(20):
        query = {"instId": "ETH-USDT-SWAP", "period": "4H"} | ({"end": end} if end else {})
        page = await data(sim, OI, **query)
        clock.now += 0.2  # 10 requests per 2 s on one instrument
        if not page:
            break
        stamps += [int(r[0]) for r in page]
        end = stamps[-1]
    assert len(stamps) == 1440 and len(set(stamps)) == 1440
    assert stamps == sorted(stamps, reverse=True)
    assert await data(sim, OI, instId="ETH-USDT-SWAP", period="4H", end=stamps[-1]) == []


async def test_history_starts_where_the_docs_say(sim: TestClient) -> None:
    early_2024 = 1_704_499_200_000  # 2024-01-06
    daily = await data(sim, ACCOUNT, instId=BTC, period="1Dutc", end=early_2024)
    assert [int(r[0]) for r in daily] == [early_2024 - i * DAY for i in range(1, 6)]
    assert await data(sim, TOP_ACCOUNT, instId=BTC, period="1Dutc", end=early_2024) == []
    top = await data(sim, TOP_POSITION, instId=BTC, period="1Dutc", end=1_711_238_400_000)
    assert [int(r[0]) for r in top] == [1_711_152_000_000, 1_711_065_600_000]  # from 03-22


async def test_utc_and_utc8_days_and_hours_agree(sim: TestClient) -> None:
    midnight = NOW_MS - NOW_MS % DAY
    utc = await data(sim, ACCOUNT, instId="SOL-USDT-SWAP", period="1Dutc", end=midnight, limit=5)
    utc8 = await data(sim, ACCOUNT, instId="SOL-USDT-SWAP", period="1D", limit=5)
    assert {int(r[0]) % DAY for r in utc} == {0} and {int(r[0]) % DAY for r in utc8} == {16 * HOUR}
    hourly = await data(sim, ACCOUNT, instId="SOL-USDT-SWAP", period="1H", end=midnight, limit=100)
    by_ts = dict(hourly)  # 100 hours back from midnight: the last four days
    closed_days = utc[:4] + utc8[1:4]
    assert all(by_ts[ts] == ratio for ts, ratio in closed_days)  # one snapshot per instant


async def test_the_newest_bucket_is_provisional(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock)
    first = await data(sim, TOP_POSITION, instId=BTC, period="1H", limit=5)
    clock.now += 10 * 60
    later = await data(sim, TOP_POSITION, instId=BTC, period="1H", limit=5)
    assert later[0][0] == first[0][0] and later[0][1] != first[0][1]
    assert later[1:] == first[1:]  # closed hours never change


async def test_rate_limit_is_per_instrument_and_endpoint_without_a_ban(make_sim: Make) -> None:
    clock = Clock()
    sim = await make_sim(clock=clock, rate_limit_scale=0.01)
    for _ in range(5):
        await data(sim, ACCOUNT, instId=BTC, period="1H", limit=1)
    for _ in range(20):
        assert await fetch(sim, ACCOUNT, instId=BTC, period="1H", limit=1) == (
            429,
            {"msg": "Too Many Requests", "code": "50011"},
        )
    await data(sim, ACCOUNT, instId="ETH-USDT-SWAP", period="1H", limit=1)  # another instrument
    await data(sim, TOP_ACCOUNT, instId=BTC, period="1H", limit=1)  # another endpoint
    clock.now += 0.021  # the 2 s window x 0.01 has passed: no ban followed the 429s
    await data(sim, ACCOUNT, instId=BTC, period="1H", limit=1)
    stats = get_stats(sim.server.app)
    bucket = f"rubik_account:{BTC}"
    assert stats.max_requests_in_window("okx", bucket) == stats.allowed_in_window("okx", bucket)
    assert stats.allowed_in_window("okx", bucket) == 5
    assert stats.allowed_in_window("okx", f"rubik_oi:{BTC}") == 10
    assert stats.statuses[("okx", 429)] == 20


async def test_candles_newest_first_confirm_and_history(sim: TestClient) -> None:
    rows = await data(sim, CANDLES, instId=BTC, bar="1H", limit=3)
    assert _types(rows) == {(str,) * 9}
    assert [int(r[0]) for r in rows] == [NOW_MS - NOW_MS % HOUR - i * HOUR for i in range(3)]
    assert [r[8] for r in rows] == ["0", "1", "1"]  # only the open candle is unconfirmed
    assert rows[1][1] == rows[2][4]  # an hour opens at the previous close
    for row in rows:
        assert float(row[5]) * okx_sim.ct_val("BTC") == pytest.approx(float(row[6]), rel=1e-4)
    old = NOW_MS - 70 * DAY  # older than 1,440 hours
    assert await data(sim, CANDLES, instId=BTC, bar="1H", after=old) == []
    history = await data(sim, HISTORY, instId=BTC, bar="1H", after=old, limit=5)
    assert [int(r[0]) for r in history] == [old - old % HOUR - i * HOUR for i in range(5)]


async def test_listing_has_plain_names_gaps_and_entries_to_filter(make_sim: Make) -> None:
    sim = await make_sim()
    entries = await data(sim, INSTRUMENTS, instType="SWAP")
    assert all(set(e) == set(entries[0]) for e in entries)
    assert all(isinstance(v, str) for e in entries for v in e.values())
    by_id = {e["instId"]: e for e in entries}
    assert {"PEPE-USDT-SWAP", "SHIB-USDT-SWAP", "BONK-USDT-SWAP"} <= set(by_id)
    assert float(by_id["PEPE-USDT-SWAP"]["ctVal"]) > 1000  # size, not name, carries the scale
    assert {e["settleCcy"] for e in entries} > {"USDT"} and {e["state"] for e in entries} > {"live"}
    listings = okx.parse_instruments({"code": "0", "msg": "", "data": entries})
    assert all(lst.instrument.endswith("-USDT-SWAP") for lst in listings)
    assert "LINEA-USDT-SWAP" not in {lst.instrument for lst in listings}  # pre-open
    mapping = resolve("okx", listings, load_universe())
    assert set(load_universe().coins) - set(mapping) == {"TAO", "GALA"}  # unlisted, suspended
    assert len(mapping) >= 47 and mapping["PEPE"] == "PEPE-USDT-SWAP"
    full = await make_sim(listing_gaps=False)
    entries = await data(full, INSTRUMENTS, instType="SWAP")
    everything = resolve(
        "okx", okx.parse_instruments({"code": "0", "data": entries}), load_universe()
    )
    assert len(everything) == len(load_universe().coins)


async def test_faults_speak_okx(make_sim: Make) -> None:
    drift = await make_sim(faults=FaultConfig(rate=1.0, kinds=("drift",)))
    status, body = await fetch(drift, ACCOUNT, instId=BTC, period="1H", limit=2)
    assert status == 200 and "data" not in body and len(body["result"]) == 2
    with pytest.raises(PayloadError, match="expected key 'data'"):
        okx.parse("global_account", body, instrument=BTC, period="1h")
    _, listing = await fetch(drift, INSTRUMENTS, instType="SWAP")
    assert len(okx.parse_instruments(listing)) >= 47  # the instrument list still reads
    throttled = await make_sim(faults=FaultConfig(rate=1.0, kinds=("429",)))
    status, body = await fetch(throttled, ACCOUNT, instId=BTC, period="1H")
    error = okx.VENUE.error_of(status, body)
    assert status == 200 and error is not None and error.kind == "rate_limit"
