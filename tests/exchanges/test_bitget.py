"""Bitget connector: its parsers on real payloads, the HTTP layer replaying recorded
responses (cassettes), and its fetches against the simulator.

The simulator clock is frozen, or shifted to a chosen instant, wherever time matters: no test
sleeps to observe timing.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pandas as pd
import pytest

from pipelines.errors import DataUnavailable, ExchangeApiError, PayloadError
from pipelines.exchanges import bitget
from pipelines.exchanges.base import LS_COLUMNS, Window
from pipelines.ingest import fetch_partition
from pipelines.resources import ExchangeAccess
from pipelines.simulator import SimulatorThread
from pipelines.simulator import bitget as sim_bitget
from pipelines.universe import load_universe
from schemas.ls_ratio import split_valid
from tests.cassette_specs.bitget import CANDLES_DOC, CONTRACTS_DOC, OPEN_INTEREST_DOC
from tests.clock import shifted_clock
from tests.conftest import load_payload

LONG_SHORT = "bitget/long_short_5m_gct_fixture.json"
POSITION_DOC = "bitget/position_long_short_doc_example.json"
TAKER_DOC = "bitget/taker_buy_sell_doc_example.json"
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


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


SEP_2025 = Window.of(datetime(2025, 9, 23, tzinfo=UTC), datetime(2025, 9, 24, tzinfo=UTC))


# ---------------------------------------------------------------------------------------------
# Cassettes through the real HTTP layer


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
# A whole partition from the simulator


async def test_yesterday_fetched_from_the_simulator_loads_every_published_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    # 01:30: the 30-row hourly window (to 00:00) still holds every hour of yesterday.
    now = datetime(today.year, today.month, today.day, 1, 30, tzinfo=UTC)
    with SimulatorThread(
        port=0, rate_limit_scale=0.05, exchanges=("bitget",), clock=shifted_clock(now)
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
    hourly = fetched.klines[fetched.klines["period"] == "1h"]
    assert (hourly.groupby("coin").size() == 24).all()
    # and candle flow's lower timeframe: its candles carry no taker buys
    five = fetched.klines[fetched.klines["period"] == "5m"]
    assert (five.groupby("coin").size() == 288).all() and set(five["coin"]) == set(hourly["coin"])
    assert set(fetched.klines["coin"]) == listed
    # No open-interest history exists: yesterday is reported, without spending requests on it.
    oi = [o for o in fetched.outcomes if o.task.dataset == "open_interest"]
    assert {o.status for o in oi} == {"unavailable"} and fetched.open_interest.empty
    stats = fetched.http_stats
    assert "/api/v2/mix/market/open-interest" not in stats["per_bucket"]
    first_tries = stats["requests"] - stats["retries"]
    # L/S, 1h and 5m klines (candle flow's lower timeframe), contracts
    assert first_tries == 4 * len(listed) + 2 * len(listed) + 1


async def test_the_hourly_poll_of_today_costs_what_the_report_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = datetime.now(UTC).date()
    now = datetime(today.year, today.month, today.day, 13, 12, tzinfo=UTC)
    with SimulatorThread(
        port=0, rate_limit_scale=0.05, exchanges=("bitget",), clock=shifted_clock(now)
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
    # one call per coin and period, and one for candle flow's 5m candles
    assert 4 * n <= per_bucket["/api/v2/mix/market/candles"] <= 4 * n + retries
    assert n <= per_bucket["/api/v2/mix/market/open-interest"] <= n + retries  # 1 for 3 periods
    assert stats["requests"] - retries == 4 * 3 * n + 4 * n + n + 1
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
