"""HTX connector: its parsers on real payloads, the HTTP layer replaying recorded
responses (cassettes), and its fetches against the simulator.

The simulator clock is frozen, or shifted to a chosen instant, wherever time matters: no test
sleeps to observe timing.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from pipelines.errors import DataUnavailable, ExchangeApiError, PayloadError
from pipelines.exchanges import htx
from pipelines.exchanges.base import KLINE_COLUMNS, LS_COLUMNS, OI_COLUMNS, Window
from pipelines.ingest import fetch_partition
from pipelines.resources import ExchangeAccess
from pipelines.simulator import SimulatorThread
from pipelines.simulator import htx as sim_htx
from pipelines.universe import Listing, load_universe
from schemas.ls_ratio import split_valid
from tests.cassette_specs import htx as docs
from tests.clock import shifted_clock
from tests.conftest import load_payload

HOUR = 3_600_000
DAY = 24 * HOUR
ANY_DAY = Window.of(datetime(2021, 11, 1, tzinfo=UTC), datetime(2021, 12, 31, tzinfo=UTC))


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


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
# A whole partition fetched from the simulator


def _holes(coin: str, start: int, end: int) -> set[int]:
    return {t for t in range(start, end, HOUR) if sim_htx.is_hole(coin, "60min", t)}


async def _fetch(
    monkeypatch: pytest.MonkeyPatch, day: date, now: datetime, periods: tuple[str, ...]
) -> tuple[Any, int]:
    with SimulatorThread(
        port=0, rate_limit_scale=0.05, exchanges=("htx",), clock=shifted_clock(now)
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
    monkeypatch: pytest.MonkeyPatch,
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
    hourly = fetched.klines[fetched.klines["period"] == "1h"]
    assert (hourly.groupby("coin").size() == 24).all()
    # and candle flow's lower timeframe: its candles carry no taker buys
    five = fetched.klines[fetched.klines["period"] == "5m"]
    assert (five.groupby("coin").size() == 288).all() and set(five["coin"]) == set(hourly["coin"])
    assert (fetched.open_interest.groupby("coin").size() == 24).all()
    assert fetched.open_interest["open_interest"].gt(0).all()


async def test_the_hourly_poll_costs_what_the_report_says(monkeypatch: pytest.MonkeyPatch) -> None:
    today = datetime.now(UTC).date()
    now = datetime(today.year, today.month, today.day, 13, 12, tzinfo=UTC)
    fetched, served = await _fetch(monkeypatch, today, now, ("1h", "4h", "1d"))
    n = len(fetched.mapping)
    assert fetched.failures == []
    # 4h and 1d ask the same 4hour questions: one call each per coin, shared by both periods.
    per_bucket = fetched.http_stats["per_bucket"]
    # candles: 1h, 4hour (shared) and candle flow's 5m, one call per coin each
    assert per_bucket == {"public": 1 + n * (2 * 2 + 2), "market": n * 3}
    assert fetched.http_stats["requests"] == served == 1 + 9 * n
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
