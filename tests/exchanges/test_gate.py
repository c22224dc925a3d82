"""Gate connector: its parsers on real payloads, the HTTP layer replaying recorded
responses (cassettes), and its fetches against the simulator.

The simulator clock is frozen, or shifted to a chosen instant, wherever time matters: no test
sleeps to observe timing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from pipelines.errors import DataUnavailable, ExchangeApiError, PayloadError
from pipelines.exchanges import gate
from pipelines.exchanges.base import LS_COLUMNS, Window
from pipelines.http import HttpClient
from pipelines.ingest import fetch_partition
from pipelines.resources import ExchangeAccess
from pipelines.simulator import SimulatorThread, server
from pipelines.simulator import gate as gate_sim
from pipelines.universe import load_universe
from schemas.ls_ratio import split_valid
from tests.clock import NOW, Clock
from tests.conftest import load_payload

DOC = "gate/contract_stats_doc_example.json"
NOT_FOUND = "gate/error_contract_not_found.json"
# A real 2022 row, as a third-party recording quotes it (fields it elides left out).
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
DOC_CANDLE: dict[str, Any] = load_payload("gate/candlesticks_doc_example.json")[0]
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW_MS = int(NOW * 1000)


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


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
# fetch_* against the simulator


@pytest.fixture
async def sim_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Any, HttpClient]]:
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
def gate_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorThread]:
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
    hourly = fetched.klines[fetched.klines["period"] == "1h"]
    assert (hourly.groupby("coin").size() == 24).all()
    # and candle flow's lower timeframe: its candles carry no taker buys
    five = fetched.klines[fetched.klines["period"] == "5m"]
    assert (five.groupby("coin").size() == 288).all() and set(five["coin"]) == set(hourly["coin"])
    # One contract_stats request per coin serves four kinds and open interest.
    assert served["requests"]["gate /futures/usdt/contract_stats"] == len(fetched.mapping)
    assert served["statuses"] == {"gate 200": served["statuses"]["gate 200"]}
