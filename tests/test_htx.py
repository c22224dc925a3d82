"""HTX: parsers on the documented and recorded payloads, cassettes through the real HTTP layer,
the simulator against the real shapes and limits, and a whole partition fetched from it.

The simulator clock is frozen (or shifted to a chosen instant) wherever time matters.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pandas as pd
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipelines.errors import DataUnavailable, ExchangeApiError, PayloadError
from pipelines.exchanges import CONNECTORS, htx
from pipelines.exchanges.base import KLINE_COLUMNS, LS_COLUMNS, OI_COLUMNS, Connector, Window
from pipelines.ingest import fetch_partition
from pipelines.resources import ExchangeAccess
from pipelines.simulator import FaultConfig, SimulatorThread, get_stats, server
from pipelines.simulator import htx as sim_htx
from pipelines.universe import Listing, load_universe, resolve
from schemas.ls_ratio import split_valid
from tests.cassette_specs import htx as docs
from tests.conftest import load_payload

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = 1_789_460_661.467  # 2026-09-15 08:24:21.467 UTC, as in the other simulator tests
NOW_MS = int(NOW * 1000)
ACCOUNT = "/linear-swap-api/v1/swap_elite_account_ratio"
POSITION = "/linear-swap-api/v1/swap_elite_position_ratio"
OI = "/linear-swap-api/v1/swap_his_open_interest"
KLINES = "/linear-swap-ex/market/history/kline"
CONTRACTS = "/linear-swap-api/v1/swap_contract_info"
ANY_DAY = Window.of(datetime(2021, 11, 1, tzinfo=UTC), datetime(2021, 12, 31, tzinfo=UTC))


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _types(row: dict[str, Any]) -> dict[str, type]:
    return {key: type(value) for key, value in row.items()}


def _with_rows(body: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {**body, "data": {**body["data"], "list": rows}}


# ---------------------------------------------------------------------------------------------
# Parsers on the documented example and the recording


def test_elite_account_example_keeps_shares_locked_share_and_ms_time() -> None:
    body = load_payload("htx/elite_account_ratio_doc_example.json")
    raw = body["data"]["list"][0]
    frame = htx.parse("top_account", body, instrument="BTC-USDT", period="1h")

    assert list(frame.columns) == LS_COLUMNS and len(frame) == 1
    row = frame.iloc[0]
    assert (row["exchange"], row["coin"], row["instrument"], row["metric"]) == (
        "htx",
        "BTC",
        "BTC-USDT",
        "top_account",
    )
    assert row["long_share"] == raw["buy_ratio"] and row["short_share"] == raw["sell_ratio"]
    assert row["locked_share"] == raw["locked_ratio"]
    assert row["ratio"] == pytest.approx(raw["buy_ratio"] / raw["sell_ratio"])
    assert math.isnan(row["source_ratio"])  # HTX publishes shares only
    assert row["source_ts"] == raw["ts"] and _ms(row["ts"]) == raw["ts"]
    kept, rejected = split_valid(frame)
    assert rejected.empty and len(kept) == 1


def test_a_locked_share_is_kept_as_published_never_renormalised() -> None:
    body = load_payload("htx/elite_account_ratio_doc_example.json")
    rows = [{**body["data"]["list"][0], "buy_ratio": 0.46, "sell_ratio": 0.44, "locked_ratio": 0.1}]
    frame = htx.parse("top_account", _with_rows(body, rows), instrument="BTC-USDT", period="1h")
    assert frame["long_share"].tolist() == [0.46] and frame["short_share"].tolist() == [0.44]
    assert frame["locked_share"].tolist() == [0.1]
    assert frame["ratio"].iloc[0] == pytest.approx(0.46 / 0.44)
    assert split_valid(frame)[1].empty  # long + short + locked = 1
    # Without a locked share, shares that miss 1 are not quietly fixed: they are rejected.
    position = [{"buy_ratio": 0.46, "sell_ratio": 0.44, "ts": rows[0]["ts"]}]
    frame = htx.parse(
        "top_position", _with_rows(body, position), instrument="BTC-USDT", period="1h"
    )
    assert math.isnan(frame["locked_share"].iloc[0])
    assert "is not 1" in split_valid(frame)[1]["reason"].iloc[0]


def test_position_example_is_stamped_at_a_singapore_midnight_not_a_utc_day() -> None:
    body = json.loads(docs.DOC_POSITION)
    raw = body["data"]["list"][0]
    hourly = htx.parse("top_position", body, instrument="BTC-USDT", period="1h")
    assert hourly["ts"].tolist() == [pd.Timestamp(raw["ts"], unit="ms")]
    assert hourly["ts"].iloc[0].hour == 16  # the doc example asked for period=1day
    assert hourly["long_share"].tolist() == [raw["buy_ratio"]]
    assert "locked_ratio" not in raw and hourly["locked_share"].isna().all()
    # A UTC day is the 4hour snapshot at 00:00 UTC: a 16:00 row is never labelled a day.
    assert htx.parse("top_position", body, instrument="BTC-USDT", period="1d").empty


def test_a_utc_day_is_the_4hour_snapshot_at_midnight() -> None:
    body = load_payload("htx/elite_account_ratio_doc_example.json")
    midnight = 1_638_144_000_000  # 2021-11-29 00:00 UTC
    rows = [
        {"buy_ratio": 0.5 + i / 100, "sell_ratio": 0.5 - i / 100, "locked_ratio": 0, "ts": t}
        for i, t in enumerate(range(midnight - DAY, midnight + DAY, 4 * HOUR))
    ]
    frame = htx.parse("top_account", _with_rows(body, rows), instrument="ETH-USDT", period="1d")
    assert [_ms(t) for t in frame["ts"]] == [midnight - DAY, midnight]
    assert frame["long_share"].tolist() == [rows[0]["buy_ratio"], rows[6]["buy_ratio"]]
    assert frame["derived_from"].eq("4h").all()  # the column says the day is not native
    four_hourly = htx.parse(
        "top_account", _with_rows(body, rows), instrument="ETH-USDT", period="4h"
    )
    assert len(four_hourly) == 12 and four_hourly["derived_from"].isna().all()


def test_wire_order_and_second_timestamps_do_not_change_the_rows() -> None:
    body = load_payload("htx/elite_account_ratio_doc_example.json")
    t0 = body["data"]["list"][0]["ts"]
    rows = [
        {"buy_ratio": 0.52, "sell_ratio": 0.47, "locked_ratio": 0.01, "ts": t0 + 2 * HOUR},
        {"buy_ratio": 0.51, "sell_ratio": 0.48, "locked_ratio": 0.01, "ts": t0 + HOUR},
        {"buy_ratio": 0.5, "sell_ratio": 0.5, "locked_ratio": 0, "ts": t0},
    ]
    newest_first = htx.parse(
        "top_account", _with_rows(body, rows), instrument="BTC-USDT", period="1h"
    )
    assert newest_first["ts"].is_monotonic_increasing
    assert newest_first["long_share"].tolist() == [0.5, 0.51, 0.52]
    in_seconds = [{**r, "ts": r["ts"] // 1000} for r in rows]
    again = htx.parse(
        "top_account", _with_rows(body, in_seconds), instrument="BTC-USDT", period="1h"
    )
    assert again["ts"].tolist() == newest_first["ts"].tolist()


def test_an_all_zero_row_is_not_published_rather_than_a_zero_ratio() -> None:
    body = load_payload("htx/elite_account_ratio_doc_example.json")
    zero = [{**body["data"]["list"][0], "buy_ratio": 0, "sell_ratio": 0, "locked_ratio": 0}]
    frame = htx.parse("top_account", _with_rows(body, zero), instrument="BTC-USDT", period="1h")
    assert frame[["long_share", "short_share", "ratio", "locked_share"]].isna().all(axis=None)
    assert split_valid(frame)[1].empty


def test_both_error_envelopes_are_clear_errors() -> None:
    api = json.loads(docs.UNKNOWN_CONTRACT)
    with pytest.raises(PayloadError) as caught:
        htx.parse("top_account", api, instrument="NOPE-USDT", period="1h")
    for part in ("htx", "swap_elite_account_ratio", "NOPE-USDT", "1014", "This contract doesnt"):
        assert part in str(caught.value)
    market = json.loads(docs.MARKET_ERROR)
    with pytest.raises(PayloadError, match=r"invalid-parameter: contract_code data error"):
        htx.parse_klines(market, instrument="NOPE-USDT", period="1h")
    with pytest.raises(PayloadError, match="1014"):
        htx.parse_open_interest(api, instrument="NOPE-USDT", period="1h")
    with pytest.raises(PayloadError, match="1014"):
        htx.parse_instruments(api)
    # The rate limit in either spelling is retried, never stored as an answer.
    limited = htx.VENUE.error_of(200, json.loads(docs.RATE_LIMITED))
    assert limited is not None and (limited.code, limited.kind) == ("1032", "rate_limit")
    hyphenated = htx.VENUE.error_of(200, {"status": "error", "err-code": 1032, "err-msg": "limit"})
    assert hyphenated is not None and hyphenated.kind == "rate_limit"
    spring = htx.VENUE.error_of(404, json.loads(docs.UNKNOWN_PATH))
    assert (
        spring is not None and spring.code == "404" and "/linear-swap-api/v1/nope" in spring.message
    )
    assert htx.VENUE.error_of(200, load_payload("htx/elite_account_ratio_doc_example.json")) is None


def test_unknown_shapes_and_renamed_fields_are_rejected() -> None:
    body = load_payload("htx/elite_account_ratio_doc_example.json")
    drifted = _with_rows(body, [{"buy_rate": 0.5, "sell_ratio": 0.5, "ts": 1638115200000}])
    with pytest.raises(PayloadError, match="buy_ratio"):
        htx.parse("top_account", drifted, instrument="BTC-USDT", period="1h")
    with pytest.raises(PayloadError, match="'list'"):
        htx.parse("top_account", {"status": "ok", "data": []}, instrument="BTC-USDT", period="1h")
    with pytest.raises(ValueError, match="publishes only"):
        htx.parse("global_account", body, instrument="BTC-USDT", period="1h")


def test_kline_example_reads_second_ids_and_coin_volume() -> None:
    body = json.loads(docs.DOC_KLINES)
    raw = body["data"][0]
    frame = htx.parse_klines(body, instrument="BTC-USDT", period="5m")
    assert list(frame.columns) == [*KLINE_COLUMNS, "derived_from"] and len(frame) == 1
    assert frame["derived_from"].isna().all()  # 5m is native on HTX
    row = frame.iloc[0]
    assert _ms(row["ts"]) == raw["id"] * 1000
    assert [row[k] for k in ("open", "high", "low", "close")] == [
        raw["open"],
        raw["high"],
        raw["low"],
        raw["close"],
    ]
    assert row["volume"] == raw["amount"]  # coins, not `vol` (contracts)
    assert row["quote_volume"] == raw["trade_turnover"] and math.isnan(row["taker_buy_volume"])


def test_a_utc_daily_candle_adds_up_six_4hour_candles() -> None:
    template = json.loads(docs.DOC_KLINES)
    midnight_s = 1_638_144_000
    candles = [
        {
            **template["data"][0],
            "id": midnight_s + i * 14_400,
            "open": 100.0 + i,
            "close": 101.0 + i,
        }
        | {"high": 110.0 + i, "low": 90.0 - i, "amount": 1.5, "trade_turnover": 150.0}
        for i in range(-1, 7)  # the 20:00 candle of the day before and the 00:00 of the next
    ]
    frame = htx.parse_klines(
        {**template, "data": candles}, instrument="BTC-USDT", period="1d"
    ).set_index("ts")
    day = frame.loc[pd.Timestamp(midnight_s, unit="s")]
    assert (day["open"], day["close"], day["high"], day["low"]) == (100.0, 106.0, 115.0, 85.0)
    assert (day["volume"], day["quote_volume"]) == (9.0, 900.0)
    assert len(frame) == 3 and frame.index.is_monotonic_increasing
    assert frame["derived_from"].eq("4h").all()


def test_oi_example_in_contracts_keeps_only_the_usdt_value() -> None:
    body = json.loads(docs.DOC_OPEN_INTEREST)
    raw = body["data"]["tick"][0]
    assert raw["amount_type"] == 1  # contracts: not a coin amount
    frame = htx.parse_open_interest(body, instrument="BTC-USDT", period="1h")
    assert list(frame.columns) == OI_COLUMNS
    assert math.isnan(frame["open_interest"].iloc[0])
    assert frame["open_interest_value"].tolist() == [raw["value"]]
    assert _ms(frame["ts"].iloc[0]) == raw["ts"]
    in_coins = [
        {**raw, "amount_type": 2, "volume": 27.112, "ts": raw["ts"]},
        {**raw, "amount_type": 2, "volume": 27.0, "ts": raw["ts"] - HOUR},
    ]  # newest first, as documented
    frame = htx.parse_open_interest(
        {**body, "data": {**body["data"], "tick": in_coins}}, instrument="BTC-USDT", period="1h"
    )
    assert frame["open_interest"].tolist() == [27.0, 27.112]
    assert frame["ts"].is_monotonic_increasing


def test_the_recorded_current_oi_snapshot_is_not_mistaken_for_history() -> None:
    body = load_payload("htx/swap_open_interest_recorded_2022.json")
    assert isinstance(body["data"], list)  # the snapshot endpoint: no `tick`, no row times
    with pytest.raises(PayloadError, match=r"swap_his_open_interest .*expected key 'tick'"):
        htx.parse_open_interest(body, instrument="MANA-USDT", period="1h")
    # Its 18-decimal numbers are plain JSON numbers; `volume` (contracts) x 10 = `amount` (coins).
    for row in body["data"]:
        assert isinstance(row["volume"], float) and isinstance(row["value"], float)
        assert row["amount"] == pytest.approx(row["volume"] * 10)


def test_contract_info_example_lists_btc_from_its_create_date() -> None:
    listings = htx.parse_instruments(json.loads(docs.DOC_CONTRACT_INFO))
    created = int(datetime(2020, 11, 10, tzinfo=UTC).timestamp() * 1000)
    assert listings == [Listing("BTC-USDT", "BTC", created)]
    assert listings[0].coin == "BTC" and htx.coin_from_instrument("PEPE-USDT") == "PEPE"


# ---------------------------------------------------------------------------------------------
# Cassettes through the real HTTP layer


async def test_elite_ratio_replays_through_the_http_layer(cassette: Any) -> None:
    with cassette("htx_elite_account_ratio"):
        async with ExchangeAccess().client() as client:
            pages = await htx.fetch_ls(client, "BTC-USDT", "top_account", "1h", ANY_DAY)
            stats = client.stats()["htx"]
    assert pages == [load_payload("htx/elite_account_ratio_doc_example.json")]
    assert stats["requests"] == 1 and stats["per_bucket"] == {"public": 1}


async def test_err_code_1032_on_http_200_is_retried_as_a_rate_limit(cassette: Any) -> None:
    with cassette("htx_rate_limited_then_answered"):
        async with ExchangeAccess().client() as client:
            pages = await htx.fetch_ls(client, "BTC-USDT", "top_account", "1h", ANY_DAY)
            stats = client.stats()["htx"]
    assert pages == [load_payload("htx/elite_account_ratio_doc_example.json")]
    assert (stats["requests"], stats["retries"]) == (2, 1)


async def test_api_and_market_error_envelopes_name_exchange_endpoint_symbol_code(
    cassette: Any,
) -> None:
    with cassette("htx_unknown_contract"):
        async with ExchangeAccess().client() as client:
            with pytest.raises(ExchangeApiError) as caught:
                await htx.fetch_ls(client, "NOPE-USDT", "top_account", "1h", ANY_DAY)
    error = caught.value
    assert (error.exchange, error.symbol, error.status, error.code) == (
        "htx",
        "NOPE-USDT",
        200,
        "1014",
    )
    assert "swap_elite_account_ratio" in str(error) and "This contract doesnt exist." in str(error)
    with cassette("htx_klines_unknown_contract"):
        async with ExchangeAccess().client() as client:
            with pytest.raises(ExchangeApiError) as caught:
                await htx.fetch_klines(client, "NOPE-USDT", "1h", ANY_DAY)
    assert caught.value.code == "invalid-parameter" and "data error or empty" in str(caught.value)


async def test_a_retired_endpoint_is_a_clear_404_error(cassette: Any) -> None:
    with cassette("htx_retired_endpoint"):
        async with ExchangeAccess().client() as client:
            with pytest.raises(ExchangeApiError) as caught:
                await htx.fetch_ls(client, "BTC-USDT", "top_account", "1h", ANY_DAY)
    assert caught.value.status == 404 and "Not Found" in str(caught.value)


async def test_klines_oi_and_contracts_replay(cassette: Any) -> None:
    window = Window.of(datetime(2020, 10, 26, tzinfo=UTC), datetime(2020, 10, 27, tzinfo=UTC))
    with cassette("htx_klines"):
        async with ExchangeAccess().client() as client:
            pages = await htx.fetch_klines(client, "BTC-USDT", "1h", window)
    assert pages == [json.loads(docs.DOC_KLINES)]  # one day of hours: one from/to call
    assert len(htx.parse_klines(pages[0], instrument="BTC-USDT", period="1h")) == 1
    with cassette("htx_open_interest"):
        async with ExchangeAccess().client() as client:
            pages = await htx.fetch_open_interest(client, "BTC-USDT", "1h", ANY_DAY)
            with pytest.raises(DataUnavailable, match="60min, 4hour, 12hour, 1day"):
                await htx.fetch_open_interest(client, "BTC-USDT", "5m", ANY_DAY)
            sent = client.stats()["htx"]["requests"]
    assert sent == 1  # the 5m question was never sent
    assert htx.parse_open_interest(pages[0], instrument="BTC-USDT", period="1h")[
        "open_interest_value"
    ].tolist() == [1321498.5264]
    with cassette("htx_contract_info"):
        async with ExchangeAccess().client() as client:
            listings = await htx.fetch_instruments(client)
    assert [listing.instrument for listing in listings] == ["BTC-USDT"]


# ---------------------------------------------------------------------------------------------
# The simulator


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(server.SPECS, "htx", sim_htx.SPEC)
    monkeypatch.setitem(CONNECTORS, "htx", cast(Connector, htx))


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
async def make_sim(registered: None) -> AsyncIterator[Callable[..., Any]]:
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


# ---------------------------------------------------------------------------------------------
# A whole partition fetched from the simulator


def _shifted_clock(moment: datetime) -> Callable[[], float]:
    """Real time moved to `moment`: the data sees that instant, rate limits see real seconds."""
    offset = moment.timestamp() - time.time()
    return lambda: time.time() + offset


async def _fetch(
    monkeypatch: pytest.MonkeyPatch, day: date, now: datetime, periods: tuple[str, ...]
) -> tuple[Any, int]:
    with SimulatorThread(
        port=0, rate_limit_scale=0.05, exchanges=("htx",), clock=_shifted_clock(now)
    ) as running:
        monkeypatch.setenv("LSR_HTX_BASE_URL", running.base_urls["htx"])
        fetched = await fetch_partition(
            "htx",
            day,
            universe=load_universe(),
            periods=periods,
            now=now,
            client=ExchangeAccess(rate_limit_scale=0.05).client(),
        )
        return fetched, running.stats.total_requests("htx")


async def test_yesterday_loads_both_elite_kinds_for_every_listed_coin(
    registered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    now = datetime(today.year, today.month, today.day, 1, 30, tzinfo=UTC)
    fetched, _ = await _fetch(monkeypatch, yesterday, now, ("1h",))

    assert fetched.failures == [] and fetched.banned is None
    listed = set(fetched.mapping)
    assert len(listed) >= 47 and not listed & sim_htx.UNLISTED
    start = int(datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=UTC).timestamp())
    start *= 1000
    rows = fetched.ls.groupby(["metric", "coin"]).size()
    for metric in htx.METRICS:
        assert set(rows[metric].index) == listed
        for coin in listed:  # every hour of yesterday the 48-row window holds, less HTX's holes
            assert rows[metric][coin] == 24 - len(_holes(coin, start, start + DAY))
    assert fetched.ls["ts"].dt.date.eq(yesterday).all()
    kept, rejected = split_valid(fetched.ls)
    assert rejected.empty and len(kept) == len(fetched.ls)
    accounts = fetched.ls[fetched.ls["metric"] == "top_account"]
    assert accounts["locked_share"].gt(0).any() and accounts["locked_share"].notna().all()
    assert fetched.ls.loc[fetched.ls["metric"] == "top_position", "locked_share"].isna().all()
    assert (fetched.klines.groupby("coin").size() == 24).all()
    assert (fetched.open_interest.groupby("coin").size() == 24).all()
    assert fetched.open_interest["open_interest"].gt(0).all()


async def test_the_hourly_poll_costs_what_the_report_says(
    registered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(UTC).date()
    now = datetime(today.year, today.month, today.day, 13, 12, tzinfo=UTC)
    fetched, served = await _fetch(monkeypatch, today, now, ("1h", "4h", "1d"))
    n = len(fetched.mapping)
    assert fetched.failures == []
    # 4h and 1d ask the same 4hour questions: one call each per coin, shared by both periods.
    per_bucket = fetched.http_stats["per_bucket"]
    assert per_bucket == {"public": 1 + n * (2 * 2 + 2), "market": n * 2}
    assert fetched.http_stats["requests"] == served == 1 + 8 * n
    midnight = pd.Timestamp(today)
    for table in (fetched.ls[fetched.ls["metric"] == "top_position"], fetched.open_interest):
        per_period = table.groupby("period")["ts"]
        assert per_period.size().get("4h") / n == 4  # 00, 04, 08 and the open 12:00 bucket
        assert per_period.size().get("1d") == n and set(per_period.min()) == {midnight}
    daily = fetched.klines[fetched.klines["period"] == "1d"]
    assert len(daily) == n and daily["ts"].eq(midnight).all()
    four = fetched.klines[fetched.klines["period"] == "4h"].groupby("coin")
    joined = daily.set_index("coin").join(four["volume"].sum().rename("four_hourly"))
    assert (joined["volume"] - joined["four_hourly"]).abs().max() < 1e-6
