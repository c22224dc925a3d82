"""Bitget: parsers on the real payloads, cassettes through the HTTP layer, the simulator, and a
whole partition fetched from the simulator.

Bitget is registered with monkeypatch (the lead adds it to the registries). No test sleeps: the
simulator's clock is moved by hand, or shifted to a chosen moment while it runs.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pandas as pd
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipelines.errors import DataUnavailable, ExchangeApiError, PayloadError
from pipelines.exchanges import CONNECTORS, bitget
from pipelines.exchanges.base import LS_COLUMNS, Connector, Window
from pipelines.ingest import fetch_partition
from pipelines.resources import ExchangeAccess
from pipelines.simulator import FaultConfig, SimulatorThread, create_app, get_stats, server
from pipelines.simulator import bitget as sim_bitget
from pipelines.universe import load_universe, resolve
from schemas.ls_ratio import split_valid
from tests.cassette_specs.bitget import CANDLES_DOC, CONTRACTS_DOC, OPEN_INTEREST_DOC
from tests.conftest import load_payload

LONG_SHORT = "bitget/long_short_5m_gct_fixture.json"
POSITION_DOC = "bitget/position_long_short_doc_example.json"
TAKER_DOC = "bitget/taker_buy_sell_doc_example.json"
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW = 1_789_460_661.467  # 2026-09-15 08:24:21.467 UTC
NOW_MS = int(NOW * 1000)
FIXTURE_TIME = 1_758_611_911.133  # requestTime of the 2025 long-short fixture
MARKET = "/bitget/api/v2/mix/market"


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _data_rows(relative: str) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], load_payload(relative)["data"])


# ---------------------------------------------------------------------------------------------
# Parsers on the real payloads


def test_long_short_shares_are_kept_and_the_ratio_is_recomputed_not_read() -> None:
    body = load_payload(LONG_SHORT)
    frame = bitget.parse("global_account", body, instrument="BTCUSDT", period="5m")

    assert list(frame.columns) == LS_COLUMNS and len(frame) == len(body["data"])
    assert frame["ts"].is_monotonic_increasing
    published = {int(r["ts"]): r for r in body["data"]}
    for row in frame.itertuples():
        raw = published[_ms(row.ts)]
        long, short = float(raw["longRatio"]), float(raw["shortRatio"])
        assert (row.long_share, row.short_share) == (long, short)
        assert row.ratio == pytest.approx(long / short)  # 3.43, from the shares
        assert row.source_ratio == float(raw["longShortRatio"])  # "0.0343", verbatim
        # The quirk: the published field is the quotient divided by 100 (2025 samples).
        assert row.source_ratio == pytest.approx(row.ratio / 100, abs=6e-5)
        assert (row.coin, row.metric, row.exchange, row.period) == (
            "BTC",
            "global_account",
            "bitget",
            "5m",
        )
    kept, rejected = split_valid(frame)
    assert len(kept) == len(frame) and rejected.empty


def test_an_unscaled_combined_field_2026_changes_nothing_but_source_ratio() -> None:
    body = load_payload(LONG_SHORT)
    plain = {
        **body,
        "data": [
            {**r, "longShortRatio": f"{float(r['longRatio']) / float(r['shortRatio']):.4f}"}
            for r in body["data"]
        ],
    }
    scaled = bitget.parse("global_account", body, instrument="BTCUSDT", period="5m")
    unscaled = bitget.parse("global_account", plain, instrument="BTCUSDT", period="5m")
    assert unscaled["ratio"].tolist() == scaled["ratio"].tolist()
    assert unscaled["source_ratio"].tolist() == [float(r["longShortRatio"]) for r in plain["data"]]


def test_position_doc_example_keeps_its_values_and_validation_rejects_them_loudly() -> None:
    body = load_payload(POSITION_DOC)
    frame = bitget.parse("top_position", body, instrument="BTCUSDT", period="5m")
    raw = body["data"][0]
    assert len(frame) == 2  # the doc repeats one row; the parser keeps what was sent
    assert frame["long_share"].tolist() == [float(raw["longPositionRatio"])] * 2
    assert frame["short_share"].tolist() == [float(raw["shortPositionRatio"])] * 2
    expected = float(raw["longPositionRatio"]) / float(raw["shortPositionRatio"])
    assert frame["ratio"].tolist() == pytest.approx([expected] * 2)  # 0.083, not the doc's 1.2
    assert frame["source_ratio"].tolist() == [float(raw["longShortPositionRatio"])] * 2
    # Illustrative doc values (0.01 + 0.12) are not shares of one whole: rejected with a reason.
    kept, rejected = split_valid(frame)
    assert kept.empty and len(rejected) == 1
    assert "long_share + short_share is not 1" in rejected["reason"].iloc[0]


def test_taker_doc_example_volumes_become_buy_and_sell_shares() -> None:
    body = load_payload(TAKER_DOC)
    frame = bitget.parse("taker_volume", body, instrument="BTCUSDT", period="5m")
    for row, raw in zip(frame.itertuples(), body["data"], strict=True):
        buy, sell = float(raw["buyVolume"]), float(raw["sellVolume"])
        assert row.long_share == pytest.approx(buy / (buy + sell))
        assert row.long_share + row.short_share == pytest.approx(1.0)
        assert row.ratio == pytest.approx(buy / sell)
        assert math.isnan(row.source_ratio)  # Bitget publishes no taker ratio
        assert _ms(row.ts) == int(raw["ts"])


def test_newest_first_or_second_timestamps_give_the_same_ascending_rows() -> None:
    body = load_payload(LONG_SHORT)
    as_sent = bitget.parse("global_account", body, instrument="BTCUSDT", period="5m")
    reordered = {
        **body,
        "data": [{**r, "ts": str(int(r["ts"]) // 1000)} for r in reversed(body["data"])],
    }
    assert int(reordered["data"][0]["ts"]) > int(reordered["data"][-1]["ts"])
    frame = bitget.parse("global_account", reordered, instrument="BTCUSDT", period="5m")
    pd.testing.assert_frame_equal(frame, as_sent)


def test_shares_that_add_up_to_nothing_are_not_published_never_a_zero_ratio() -> None:
    body = load_payload(LONG_SHORT)
    rows = body["data"]
    blanked = {
        **body,
        "data": [
            {**rows[0], "longRatio": "0", "shortRatio": "0"},
            {**rows[1], "longRatio": "", "shortRatio": ""},
            *rows[2:],
        ],
    }
    frame = bitget.parse("global_account", blanked, instrument="BTCUSDT", period="5m")
    assert frame["ratio"].iloc[:2].isna().all() and frame["long_share"].iloc[:2].isna().all()
    assert frame["ratio"].iloc[2:].notna().all()
    assert split_valid(frame)[1].empty  # missing is allowed; 0 or inf would not be


@pytest.mark.parametrize(
    ("body", "parts"),
    [
        (
            {"code": "40034", "msg": "Parameter NOTACOINUSDT does not exist", "data": None},
            ("40034", "does not exist"),
        ),
        ({"code": "429", "msg": "Too Many Requests"}, ("429", "Too Many Requests")),
    ],
)
def test_error_envelopes_name_exchange_endpoint_symbol_and_code(
    body: dict[str, Any], parts: tuple[str, ...]
) -> None:
    with pytest.raises(PayloadError) as caught:
        bitget.parse("top_account", body, instrument="NOTACOINUSDT", period="1h")
    message = str(caught.value)
    for part in ("bitget", "/api/v2/mix/market/account-long-short", "NOTACOINUSDT", *parts):
        assert part in message


def test_unknown_shapes_and_renamed_fields_are_clear_errors() -> None:
    rows = _data_rows(LONG_SHORT)
    for shape in (rows, {"data": {"rows": rows}}, {"code": "00000", "msg": "success"}):
        with pytest.raises(PayloadError):
            bitget.parse("global_account", shape, instrument="BTCUSDT", period="5m")
    drifted = {"code": "00000", "data": [{"longRate": r["longRatio"], **r} for r in rows]}
    for r in drifted["data"]:
        del r["longRatio"]
    with pytest.raises(PayloadError, match="longRatio"):
        bitget.parse("global_account", drifted, instrument="BTCUSDT", period="5m")
    with pytest.raises(ValueError, match="does not publish"):
        bitget.parse("elite_account", load_payload(LONG_SHORT), instrument="BTCUSDT", period="5m")


def test_klines_open_interest_and_contracts_doc_examples() -> None:
    candles = json.loads(CANDLES_DOC)
    frame = bitget.parse_klines(candles, instrument="BTCUSDT", period="5m")
    rows = candles["data"]
    assert [_ms(t) for t in frame["ts"]] == [int(r[0]) for r in rows]
    assert frame["close"].tolist() == [float(r[4]) for r in rows]
    assert frame["volume"].tolist() == [float(r[5]) for r in rows]
    assert frame["quote_volume"].tolist() == [float(r[6]) for r in rows]
    assert frame["taker_buy_volume"].isna().all()

    oi = json.loads(OPEN_INTEREST_DOC)
    taken = int(oi["data"]["ts"])
    for period, step in (("1h", HOUR), ("1d", DAY)):
        snapshot = bitget.parse_open_interest(oi, instrument="BTCUSDT", period=period)
        assert len(snapshot) == 1
        assert _ms(snapshot["ts"].iloc[0]) == taken - taken % step  # floored to the bucket
        assert snapshot["open_interest"].iloc[0] == float(oi["data"]["openInterestList"][0]["size"])

    contracts = json.loads(CONTRACTS_DOC)
    entry = contracts["data"][0]
    assert bitget.parse_instruments(contracts)[0].instrument == "BTCUSDT"
    assert bitget.parse_instruments(contracts)[0].onboard_ms is None  # launchTime ""
    variants = [
        {**entry, "symbol": "ETHUSDT250926", "symbolType": "delivery"},
        {**entry, "symbol": "LUNAUSDT", "symbolStatus": "off"},
        {**entry, "symbol": "BTCUSDC", "quoteCoin": "USDC"},
        {**entry, "symbol": "1000BONKUSDT", "baseCoin": "BONK", "launchTime": "1700611200000"},
    ]
    listings = bitget.parse_instruments({**contracts, "data": [entry, *variants]})
    assert [(x.instrument, x.coin, x.multiplier, x.onboard_ms) for x in listings] == [
        ("BTCUSDT", "BTC", 1, None),
        ("1000BONKUSDT", "BONK", 1000, 1_700_611_200_000),
    ]
    with pytest.raises(PayloadError, match="40034"):
        bitget.parse_instruments({"code": "40034", "msg": "Parameter X does not exist"})


def test_reach_says_what_a_latest_window_exchange_can_still_serve() -> None:
    assert bitget.reach("global_account", "1h") == timedelta(hours=30)
    assert bitget.reach("taker_volume", "1d") == timedelta(days=30)
    assert bitget.reach("open_interest", "4h") == timedelta(hours=4)  # the current bucket
    assert bitget.reach("klines", "1h") == timedelta(days=83)
    assert bitget.reach("klines", "4h") == timedelta(days=240)
    assert bitget.native_period("global_account", "1d") == "1Dutc"
    assert bitget.native_period("top_account", "1d") == "1d"


def test_error_kinds() -> None:
    kinds = {
        code: bitget.VENUE.error_of(400, {"code": code, "msg": "m"})
        for code in ("429", "40054", "40034", "40017")
    }
    assert {c: e.kind for c, e in kinds.items() if e} == {
        "429": "rate_limit",
        "40054": "unavailable",
        "40034": "error",
        "40017": "error",
    }
    assert bitget.VENUE.error_of(200, load_payload(LONG_SHORT)) is None


# ---------------------------------------------------------------------------------------------
# Cassettes through the real HTTP layer

SEP_2025 = Window.of(datetime(2025, 9, 23, tzinfo=UTC), datetime(2025, 9, 24, tzinfo=UTC))


async def test_one_call_returns_the_window_whatever_was_asked(cassette: Any) -> None:
    with cassette("bitget_long_short"):
        async with ExchangeAccess().client() as client:
            pages = await bitget.fetch_ls(client, "BTCUSDT", "global_account", "5m", SEP_2025)
            stats = client.stats()["bitget"]
    assert pages == [load_payload(LONG_SHORT)]
    assert stats["requests"] == 1 and stats["per_bucket"] == {
        "/api/v2/mix/market/long-short": 1,
        "ip": 1,
    }


async def test_a_429_is_retried_and_then_served(cassette: Any) -> None:
    with cassette("bitget_long_short_after_429"):
        async with ExchangeAccess().client() as client:
            pages = await bitget.fetch_ls(client, "BTCUSDT", "global_account", "5m", SEP_2025)
            stats = client.stats()["bitget"]
    assert pages == [load_payload(LONG_SHORT)]
    assert (stats["requests"], stats["retries"]) == (2, 1)


async def test_unknown_symbol_and_unpublished_taker_data(cassette: Any) -> None:
    with cassette("bitget_unknown_symbol"):
        async with ExchangeAccess().client() as client:
            with pytest.raises(ExchangeApiError) as caught:
                await bitget.fetch_ls(client, "NOTACOINUSDT", "top_account", "1h", SEP_2025)
    error = caught.value
    assert (error.exchange, error.symbol, error.status, error.code) == (
        "bitget",
        "NOTACOINUSDT",
        400,
        "40034",
    )
    assert "account-long-short" in str(error) and "does not exist" in str(error)
    with cassette("bitget_taker_not_published"):
        async with ExchangeAccess().client() as client:
            with pytest.raises(DataUnavailable, match="is empty"):
                await bitget.fetch_ls(client, "DOGEUSDT", "taker_volume", "1h", SEP_2025)
            assert client.stats()["bitget"]["retries"] == 0  # not published: not retried


async def test_position_taker_klines_oi_and_contracts_replay(cassette: Any) -> None:
    for name, metric, relative in (
        ("bitget_position", "top_position", POSITION_DOC),
        ("bitget_taker", "taker_volume", TAKER_DOC),
    ):
        with cassette(name):
            async with ExchangeAccess().client() as client:
                pages = await bitget.fetch_ls(client, "BTCUSDT", metric, "5m", SEP_2025)
        assert pages == [load_payload(relative)]
    sep_2023 = Window.of(datetime(2023, 9, 27, tzinfo=UTC), datetime(2023, 9, 28, tzinfo=UTC))
    with cassette("bitget_klines"):
        async with ExchangeAccess().client() as client:
            pages = await bitget.fetch_klines(client, "BTCUSDT", "5m", sep_2023)
    assert len(pages) == 1  # 288 candles: one chunk
    assert len(bitget.parse_klines(pages[0], instrument="BTCUSDT", period="5m")) == 2
    with cassette("bitget_open_interest"):
        async with ExchangeAccess().client() as client:
            first = await bitget.fetch_open_interest(client, "BTCUSDT", "1h", sep_2023)
            again = await bitget.fetch_open_interest(client, "BTCUSDT", "1d", sep_2023)
            assert client.stats()["bitget"]["requests"] == 1  # one snapshot for every period
    assert first == again == [json.loads(OPEN_INTEREST_DOC)]
    with cassette("bitget_contracts"):
        async with ExchangeAccess().client() as client:
            listings = await bitget.fetch_instruments(client)
    assert [x.instrument for x in listings] == ["BTCUSDT"]


async def test_klines_are_fetched_in_chunks_that_cannot_overflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[dict[str, Any]] = []

    async def get_json(_profile: Any, _endpoint: str, params: Any, **_kw: Any) -> Any:
        asked.append(dict(params))
        return {"code": "00000", "msg": "success", "requestTime": 0, "data": []}

    year = Window.of(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    async with ExchangeAccess().client() as client:
        monkeypatch.setattr(client, "get_json", get_json)
        await bitget.fetch_klines(client, "BTCUSDT", "1h", year)
        hourly = list(asked)
        asked.clear()
        await bitget.fetch_klines(client, "BTCUSDT", "4h", year)
    for calls, step in ((hourly, HOUR), (asked, 4 * HOUR)):
        spans = [c["endTime"] - c["startTime"] for c in calls]
        assert max(spans) <= min(999 * step, 90 * DAY)
        assert calls[0]["startTime"] == year.start_ms and calls[-1]["endTime"] == year.end_ms
        assert all(a["endTime"] == b["startTime"] for a, b in itertools.pairwise(calls))
    assert hourly[0]["granularity"] == "1H" and asked[0]["granularity"] == "4H"


# ---------------------------------------------------------------------------------------------
# The simulator


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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
async def make_sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeSim]:
    monkeypatch.setitem(server.SPECS, "bitget", sim_bitget.SPEC)
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


# ---------------------------------------------------------------------------------------------
# A whole partition from the simulator


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(server.SPECS, "bitget", sim_bitget.SPEC)
    monkeypatch.setitem(CONNECTORS, "bitget", cast(Connector, bitget))


def _shifted_clock(moment: datetime) -> Callable[[], float]:
    """Real time moved to `moment`: the data sees that hour, rate limits see real seconds."""
    offset = moment.timestamp() - time.time()
    return lambda: time.time() + offset


async def test_yesterday_fetched_from_the_simulator_loads_every_published_kind(
    registered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    # 01:30: the 30-row hourly window (to 00:00) still holds every hour of yesterday.
    now = datetime(today.year, today.month, today.day, 1, 30, tzinfo=UTC)
    with SimulatorThread(
        port=0, rate_limit_scale=0.05, exchanges=("bitget",), clock=_shifted_clock(now)
    ) as sim:
        monkeypatch.setenv("LSR_BITGET_BASE_URL", sim.base_urls["bitget"])
        fetched = await fetch_partition(
            "bitget",
            yesterday,
            universe=load_universe(),
            periods=("1h",),
            now=now,
            client=ExchangeAccess(rate_limit_scale=0.05).client(),
        )
        rate_limited = sim.stats.rate_limited("bitget")

    # A 429 can slip in when scaled 1-request windows meet scheduling jitter: it is retried.
    assert fetched.failures == [] and fetched.banned is None
    assert rate_limited == fetched.http_stats["retries"]
    listed = set(fetched.mapping)
    assert len(listed) >= 47
    rows = fetched.ls.groupby(["metric", "coin"]).size()
    for metric in ("global_account", "top_account", "top_position"):
        assert set(rows[metric].index) == listed and (rows[metric] == 24).all()
    # Taker data is not published for some coins (40054): reported unavailable, not failed.
    no_taker = {o.task.coin for o in fetched.unavailable if o.task.dataset == "taker_volume"}
    assert no_taker == sim_bitget.NO_TAKER & listed
    assert set(rows["taker_volume"].index) == listed - no_taker
    assert (rows["taker_volume"] == 24).all() and len(listed - no_taker) >= 42
    assert fetched.ls["ts"].dt.date.eq(yesterday).all()
    kept, rejected = split_valid(fetched.ls)
    assert rejected.empty and len(kept) == len(fetched.ls)
    assert (fetched.klines.groupby("coin").size() == 24).all()
    assert set(fetched.klines["coin"]) == listed
    # No open-interest history exists: yesterday is reported, without spending requests on it.
    oi = [o for o in fetched.outcomes if o.task.dataset == "open_interest"]
    assert {o.status for o in oi} == {"unavailable"} and fetched.open_interest.empty
    stats = fetched.http_stats
    assert "/api/v2/mix/market/open-interest" not in stats["per_bucket"]
    first_tries = stats["requests"] - stats["retries"]
    assert first_tries == 4 * len(listed) + len(listed) + 1  # L/S, klines, contracts


async def test_the_hourly_poll_of_today_costs_what_the_report_says(
    registered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(UTC).date()
    now = datetime(today.year, today.month, today.day, 13, 12, tzinfo=UTC)
    with SimulatorThread(
        port=0, rate_limit_scale=0.05, exchanges=("bitget",), clock=_shifted_clock(now)
    ) as sim:
        monkeypatch.setenv("LSR_BITGET_BASE_URL", sim.base_urls["bitget"])
        fetched = await fetch_partition(
            "bitget",
            today,
            universe=load_universe(),
            periods=("1h", "4h", "1d"),
            now=now,
            client=ExchangeAccess(rate_limit_scale=0.05).client(),
        )
    n = len(fetched.mapping)
    assert fetched.failures == []
    stats = fetched.http_stats
    per_bucket, retries = stats["per_bucket"], stats["retries"]  # attempts, retries included
    for path, *_ in bitget.LS_ENDPOINTS.values():
        assert 3 * n <= per_bucket[path] <= 3 * n + retries  # one call per coin and period
    assert 3 * n <= per_bucket["/api/v2/mix/market/candles"] <= 3 * n + retries
    assert n <= per_bucket["/api/v2/mix/market/open-interest"] <= n + retries  # 1 for 3 periods
    assert stats["requests"] - retries == 4 * 3 * n + 3 * n + n + 1
    # Today's buckets so far: 13 closed hours, 3 closed 4h buckets, no closed day yet.
    hours = fetched.ls[fetched.ls["metric"] == "top_account"].groupby("period")["coin"]
    assert hours.size().to_dict() == {"1h": 13 * n, "4h": 3 * n}
    oi = fetched.open_interest.groupby("period")["ts"].agg(["size", "min"])
    start = pd.Timestamp(today)
    assert oi["size"].to_dict() == {"1d": n, "1h": n, "4h": n}
    assert oi["min"].to_dict() == {
        "1d": start,
        "1h": start + pd.Timedelta(hours=13),
        "4h": start + pd.Timedelta(hours=12),
    }
    assert split_valid(fetched.ls)[1].empty
