"""OKX connector: its parsers on real payloads, the HTTP layer replaying recorded
responses (cassettes), and its fetches against the simulator.

The simulator clock is frozen, or shifted to a chosen instant, wherever time matters: no test
sleeps to observe timing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest
import vcr

from pipelines import http
from pipelines.errors import ExchangeApiError, PayloadError
from pipelines.exchanges import okx
from pipelines.exchanges.base import LS_COLUMNS, Window
from pipelines.ingest import fetch_partition
from pipelines.resources import ExchangeAccess
from pipelines.simulator import (
    SimulatorThread,
    run_simulator,
)
from pipelines.universe import load_universe, split_multiplier
from schemas.ls_ratio import split_valid
from tests.cassette_specs import okx as okx_cassettes
from tests.clock import NOW, Clock
from tests.conftest import CASSETTES, load_payload

NOW_MS = int(NOW * 1000)
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
RUBIK = "/okx/api/v5/rubik/stat"
OI = f"{RUBIK}/contracts/open-interest-history"
RATIO_METRICS = ("global_account", "top_account", "top_position")
BTC = "BTC-USDT-SWAP"
RATIO_DOC = "okx/long_short_account_ratio_ccy_doc_example.json"
TAKER_DOC = "okx/taker_volume_ccy_doc_example.json"
UNKNOWN = "okx/error_unknown_instrument.json"
CURRENT_OI = "okx/open_interest_current_ccxt_static.json"


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


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
    hourly = fetched.klines[fetched.klines["period"] == "1h"]
    assert (hourly.groupby("coin").size() == 24).all()
    # and candle flow's lower timeframe: its candles carry no taker buys
    five = fetched.klines[fetched.klines["period"] == "5m"]
    assert (five.groupby("coin").size() == 288).all() and set(five["coin"]) == set(hourly["coin"])
    assert fetched.open_interest.groupby("coin").size().eq(24).all()
    assert set(stats["statuses"]) == {"okx 200"}  # the client kept every limit: no 429
    assert all(w["max_used"] <= w["allowed"] for w in stats["windows"].values())
