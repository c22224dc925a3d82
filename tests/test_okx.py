"""OKX: parsers on the real payloads, cassettes through the HTTP layer, the simulator, end to end.

The exchange is registered with monkeypatch for these tests only (the lead registers it for good).
Simulator clocks are frozen and moved by hand; no test sleeps to observe timing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest
import vcr
from aiohttp.test_utils import TestClient, TestServer

from pipelines import http
from pipelines.errors import ExchangeApiError, PayloadError
from pipelines.exchanges import CONNECTORS, okx
from pipelines.exchanges.base import LS_COLUMNS, Window
from pipelines.ingest import fetch_partition
from pipelines.resources import ExchangeAccess
from pipelines.simulator import (
    FaultConfig,
    SimulatorThread,
    create_app,
    get_stats,
    run_simulator,
    series,
    server,
)
from pipelines.simulator import okx as okx_sim
from pipelines.universe import load_universe, resolve, split_multiplier
from schemas.ls_ratio import split_valid
from tests.cassette_specs import okx as okx_cassettes
from tests.conftest import CASSETTES, load_payload

NOW = 1_789_460_661.467  # 2026-09-15 08:24:21.467 UTC
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
RATIO_METRICS = ("global_account", "top_account", "top_position")
BTC = "BTC-USDT-SWAP"

RATIO_DOC = "okx/long_short_account_ratio_ccy_doc_example.json"
TAKER_DOC = "okx/taker_volume_ccy_doc_example.json"
UNKNOWN = "okx/error_unknown_instrument.json"
CURRENT_OI = "okx/open_interest_current_ccxt_static.json"


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """OKX in the connector and simulator registries, for this module's tests only."""
    monkeypatch.setitem(server.SPECS, "okx", okx_sim.SPEC)
    monkeypatch.setitem(CONNECTORS, "okx", okx)


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _shares(ratio: float) -> tuple[float, float]:
    return ratio / (1 + ratio), 1 / (1 + ratio)


# ---------------------------------------------------------------------------------------------
# Parsers on the real payloads


@pytest.mark.parametrize("metric", RATIO_METRICS)
def test_published_ratio_becomes_long_and_short_shares(metric: str) -> None:
    body = load_payload(RATIO_DOC)
    frame = okx.parse(metric, body, instrument=BTC, period="5m")
    assert list(frame.columns) == LS_COLUMNS and len(frame) == len(body["data"])
    for row, (ts, ratio_text) in zip(frame.itertuples(), body["data"], strict=True):
        ratio = float(ratio_text)
        assert _ms(row.ts) == int(ts) == row.source_ts
        assert row.long_share == pytest.approx(ratio / (1 + ratio))
        assert row.short_share == pytest.approx(1 / (1 + ratio))
        assert row.ratio == pytest.approx(ratio) and row.source_ratio == ratio
        assert (row.exchange, row.coin, row.instrument, row.metric) == ("okx", "BTC", BTC, metric)


def test_taker_rows_are_sell_first_and_come_out_ascending() -> None:
    body = load_payload(TAKER_DOC)
    stamps = [int(r[0]) for r in body["data"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first on the wire
    frame = okx.parse("taker_volume", body, instrument=BTC, period="1d")
    assert frame["ts"].is_monotonic_increasing
    by_ts = {int(r[0]): r for r in body["data"]}
    for row in frame.itertuples():
        _, sell, buy = (float(v) for v in by_ts[_ms(row.ts)])
        assert row.long_share == pytest.approx(buy / (buy + sell))
        assert row.short_share == pytest.approx(sell / (buy + sell))
        assert row.ratio == pytest.approx(buy / sell)
        assert math.isnan(row.source_ratio)  # OKX publishes volumes, not a ratio


def test_plain_daily_bars_are_utc8_which_is_why_1d_asks_for_1dutc() -> None:
    """The doc example's daily rows open at 16:00 UTC (midnight UTC+8): stored as `1d` they
    would not be UTC days, and validation refuses them."""
    body = load_payload(TAKER_DOC)
    assert {int(r[0]) % DAY for r in body["data"]} == {16 * HOUR}
    frame = okx.parse("taker_volume", body, instrument=BTC, period="1d")
    kept, rejected = split_valid(frame)
    assert kept.empty and rejected["reason"].str.contains("not aligned").all()
    assert okx.PERIODS["1d"] == "1Dutc" and okx.PERIODS["4h"] == "4H"


def test_error_envelope_names_exchange_endpoint_instrument_code_and_message() -> None:
    body = load_payload(UNKNOWN)
    parsers: list[tuple[str, Callable[[], object]]] = [
        *(
            (okx.LS_ENDPOINTS[m][0], lambda m=m: okx.parse(m, body, instrument="X", period="1h"))
            for m in okx.METRICS
        ),
        (okx.KLINES_ENDPOINT, lambda: okx.parse_klines(body, instrument="X", period="1h")),
        (okx.OI_ENDPOINT, lambda: okx.parse_open_interest(body, instrument="X", period="1h")),
        (okx.INSTRUMENTS_ENDPOINT, lambda: okx.parse_instruments(body)),
    ]
    for endpoint, parse in parsers:
        with pytest.raises(PayloadError) as caught:
            parse()
        message = str(caught.value)
        assert message.startswith(f"okx {endpoint}")
        assert f"code={body['code']}" in message and body["msg"] in message
        if endpoint != okx.INSTRUMENTS_ENDPOINT:
            assert "symbol=X" in message


def test_a_ratio_not_published_gives_no_shares_and_no_ratio() -> None:
    body = load_payload(RATIO_DOC)
    ((ts, _),) = body["data"]
    blanks = {
        **body,
        "data": [[ts, "0"], [str(int(ts) - 300_000), ""], [str(int(ts) - 600_000), "-1"]],
    }
    frame = okx.parse("global_account", blanks, instrument=BTC, period="5m")
    assert frame[["long_share", "short_share", "ratio"]].isna().all().all()
    oldest, blank, zero = frame["source_ratio"]  # ascending: -1, "", 0 as published
    assert (oldest, zero) == (-1.0, 0.0) and math.isnan(blank)
    kept, rejected = split_valid(frame)
    assert len(kept) == 3 and rejected.empty  # stored as "not published", never as ratio 0


def test_a_half_filled_taker_bucket_is_not_a_ratio_of_zero() -> None:
    body = load_payload(TAKER_DOC)
    (ts, sell, _), *_ = body["data"]
    frame = okx.parse(
        "taker_volume", {**body, "data": [[ts, sell, "0"]]}, instrument=BTC, period="1h"
    )
    assert frame[["long_share", "short_share", "ratio"]].isna().all().all()


def test_float_noise_and_second_timestamps_parse() -> None:
    body = load_payload(TAKER_DOC)
    in_seconds = {**body, "data": [[str(int(r[0]) // 1000), *r[1:]] for r in body["data"]]}
    as_ms = okx.parse("taker_volume", body, instrument=BTC, period="1d")
    as_s = okx.parse("taker_volume", in_seconds, instrument=BTC, period="1d")
    assert as_s["ts"].tolist() == as_ms["ts"].tolist()
    noisy = {**body, "data": [[body["data"][0][0], "6958471.10000000056", "6958471.10000000056"]]}
    assert okx.parse("taker_volume", noisy, instrument=BTC, period="1d")["long_share"][0] == 0.5


def test_bodies_of_another_shape_are_refused_not_misread() -> None:
    ratio = load_payload(RATIO_DOC)
    # The real current-OI answer (`/public/open-interest`) has object rows, not history arrays.
    with pytest.raises(PayloadError, match=r"open-interest-history.*expected \[ts"):
        okx.parse_open_interest(load_payload(CURRENT_OI), instrument=BTC, period="1h")
    with pytest.raises(PayloadError, match="at least 3 values"):
        okx.parse("taker_volume", ratio, instrument=BTC, period="5m")  # [ts, ratio] only
    with pytest.raises(PayloadError, match="expected key 'data'"):
        okx.parse("global_account", {"code": "0", "result": []}, instrument=BTC, period="5m")
    with pytest.raises(PayloadError, match="at least 8 values"):  # up to volCcyQuote
        okx.parse_klines(ratio, instrument=BTC, period="1h")
    with pytest.raises(ValueError, match="does not publish"):
        okx.parse("elite_account", ratio, instrument=BTC, period="5m")


def test_error_codes_are_classified() -> None:
    assert okx.VENUE.error_of(200, load_payload(RATIO_DOC)) is None
    unknown = okx.VENUE.error_of(200, load_payload(UNKNOWN))
    assert unknown is not None and (unknown.code, unknown.kind) == ("51001", "error")
    for status, code in ((429, "50011"), (200, "50011"), (429, "50013")):
        error = okx.VENUE.error_of(status, {"code": code, "msg": "busy", "data": []})
        assert error is not None and error.kind == "rate_limit"


def test_reach_is_1440_rows_of_the_period() -> None:
    assert okx.reach("global_account", "5m") == timedelta(days=5)
    assert okx.reach("top_position", "1h") == timedelta(days=60)
    assert okx.reach("open_interest", "4h") == timedelta(days=240)
    assert okx.reach("klines", "1h") is None  # history-candles go back years


def test_plain_instrument_names_map_to_coins() -> None:
    assert okx.coin_from_instrument("PEPE-USDT-SWAP") == "PEPE"
    assert split_multiplier("BONK") == ("BONK", 1)


# ---------------------------------------------------------------------------------------------
# Cassettes through the real HTTP layer

# The connector's identifying parameters, `end` included: a replay checks the paging cursor.
IDENTIFYING = {"instId", "period", "bar", "instType", "unit", "end", "after", "limit"}


def _identity(request: Any) -> dict[str, str]:
    query = dict(parse_qsl(urlsplit(request.uri).query))
    return {k: v for k, v in query.items() if k in IDENTIFYING}


@pytest.fixture
def okx_cassette() -> Iterator[Callable[[str], Any]]:
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="none",
        match_on=["method", "scheme", "host", "path", "okx_identity"],
    )
    recorder.register_matcher("okx_identity", _same_identity)
    yield lambda name: recorder.use_cassette(f"{name}.yaml")


def _same_identity(r1: Any, r2: Any) -> None:
    assert _identity(r1) == _identity(r2)  # vcrpy matchers fail by raising


def _window(bounds: tuple[int, int]) -> Window:
    return Window(*bounds)


async def test_doc_page_replays_with_the_per_instrument_bucket(okx_cassette: Any) -> None:
    with okx_cassette("okx_global_account_doc"):
        async with ExchangeAccess().client() as client:
            pages = await okx.fetch_ls(
                client, BTC, "global_account", "5m", _window(okx_cassettes.DOC_RATIO_WINDOW)
            )
            stats = client.stats()["okx"]
    assert pages == [load_payload(RATIO_DOC)]
    assert stats["per_bucket"] == {f"rubik_account:{BTC}": 1}  # one short page: done


async def test_taker_replay_asks_for_1dutc_in_coins(okx_cassette: Any) -> None:
    with okx_cassette("okx_taker_volume_doc"):
        async with ExchangeAccess().client() as client:
            pages = await okx.fetch_ls(
                client, BTC, "taker_volume", "1d", _window(okx_cassettes.DOC_TAKER_WINDOW)
            )
    frame = okx.parse("taker_volume", pages[0], instrument=BTC, period="1d")
    assert len(frame) == 2


async def test_paging_moves_end_back_to_the_oldest_row(okx_cassette: Any) -> None:
    window = _window(okx_cassettes.PAGED_WINDOW)
    with okx_cassette("okx_account_ratio_paged") as played:
        async with ExchangeAccess().client() as client:
            pages = await okx.fetch_ls(client, BTC, "global_account", "5m", window)
    assert played.all_played and len(pages) == 2
    frame = pd.concat(
        [okx.parse("global_account", p, instrument=BTC, period="5m") for p in pages]
    ).sort_values("ts")
    stamps = [_ms(t) for t in frame["ts"]]
    assert stamps == list(range(window.start_ms, window.end_ms, 5 * MIN))  # 144, no gap or twin


async def test_unknown_instrument_is_an_api_error_on_http_200(okx_cassette: Any) -> None:
    window = _window(okx_cassettes.DOC_RATIO_WINDOW)
    with okx_cassette("okx_unknown_instrument"):
        async with ExchangeAccess().client() as client:
            with pytest.raises(ExchangeApiError) as caught:
                await okx.fetch_ls(client, "NOTACOIN-USDT-SWAP", "global_account", "5m", window)
    error = caught.value
    assert (error.exchange, error.symbol, error.status, error.code) == (
        "okx",
        "NOTACOIN-USDT-SWAP",
        200,
        "51001",
    )
    assert "long-short-account-ratio-contract" in str(error) and "doesn't exist" in str(error)


async def test_a_429_is_retried_then_served(
    okx_cassette: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "_backoff", lambda _state: 0.0)
    with okx_cassette("okx_rate_limited_then_served"):
        async with ExchangeAccess().client() as client:
            pages = await okx.fetch_ls(
                client, BTC, "global_account", "5m", _window(okx_cassettes.DOC_RATIO_WINDOW)
            )
            stats = client.stats()["okx"]
    assert pages == [load_payload(RATIO_DOC)] and stats["retries"] == 1


# ---------------------------------------------------------------------------------------------
# The simulator, as a client sees it


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Make = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_sim() -> AsyncIterator[Make]:
    clients: list[TestClient] = []

    async def make(**kwargs: Any) -> TestClient:
        kwargs.setdefault("clock", Clock())
        kwargs.setdefault("exchanges", ("okx",))
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


# ---------------------------------------------------------------------------------------------
# fetch_* against the simulator


@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    async with run_simulator(port=0, clock=Clock(), exchanges=("okx",)) as running:
        monkeypatch.setenv("LSR_OKX_BASE_URL", running.base_urls["okx"])
        yield running


async def test_fetch_ls_pages_a_5m_day(served: Any) -> None:
    day = NOW_MS - NOW_MS % DAY - DAY
    async with ExchangeAccess().client() as client:
        pages = await okx.fetch_ls(client, BTC, "top_account", "5m", Window(day, day + DAY))
    assert len(pages) == 3
    frame = pd.concat([okx.parse("top_account", p, instrument=BTC, period="5m") for p in pages])
    assert sorted(_ms(t) for t in frame["ts"]) == list(range(day, day + DAY, 5 * MIN))


async def test_fetch_klines_falls_back_to_history_candles(served: Any) -> None:
    old = NOW_MS - NOW_MS % DAY - 70 * DAY  # beyond the 1,440 hours of `candles`
    async with ExchangeAccess().client() as client:
        recent = await okx.fetch_klines(client, BTC, "1h", Window(old + 69 * DAY, old + 70 * DAY))
        pages = await okx.fetch_klines(client, BTC, "1h", Window(old, old + DAY))
    assert len(recent) == 1
    assert len(pages) == 2 and pages[0]["data"] == []
    frame = okx.parse_klines(pages[1], instrument=BTC, period="1h")
    assert [_ms(t) for t in frame["ts"]] == list(range(old, old + DAY, HOUR))
    requests = served.stats.requests
    assert requests[("okx", "/api/v5/market/history-candles")] == 1


async def test_fetch_open_interest_and_instruments(served: Any) -> None:
    day = NOW_MS - NOW_MS % DAY - DAY
    async with ExchangeAccess().client() as client:
        pages = await okx.fetch_open_interest(client, "ETH-USDT-SWAP", "1h", Window(day, day + DAY))
        listings = await okx.fetch_instruments(client)
    frame = okx.parse_open_interest(pages[0], instrument="ETH-USDT-SWAP", period="1h")
    assert len(frame) == 24 and frame["ts"].is_monotonic_increasing
    assert (frame["open_interest_value"] > frame["open_interest"]).all()  # ETH costs > 1 USDT
    assert len(listings) >= 47 and all(lst.onboard_ms for lst in listings)


def test_a_day_partition_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with SimulatorThread(port=0, rate_limit_scale=0.05, exchanges=("okx",)) as sim:
        monkeypatch.setenv("LSR_OKX_BASE_URL", sim.base_urls["okx"])
        fetched = asyncio.run(
            fetch_partition(
                "okx",
                yesterday,
                universe=load_universe(),
                periods=("1h",),
                client=ExchangeAccess(rate_limit_scale=0.05).client(),
            )
        )
        stats = sim.stats_snapshot()
    assert fetched.failures == [] and fetched.unavailable == []
    ls = fetched.ls
    per_metric = ls.groupby("metric")["coin"].nunique()
    assert set(per_metric.index) == set(okx.METRICS) and per_metric.min() >= 45
    assert (ls.groupby(["coin", "metric"]).size() == 24).all()
    assert ls["ts"].dt.date.eq(yesterday).all()
    kept, rejected = split_valid(ls)
    assert rejected.empty and len(kept) == len(ls)
    assert fetched.klines.groupby("coin").size().eq(24).all()
    assert fetched.open_interest.groupby("coin").size().eq(24).all()
    assert set(stats["statuses"]) == {"okx 200"}  # the client kept every limit: no 429
    assert all(w["max_used"] <= w["allowed"] for w in stats["windows"].values())
