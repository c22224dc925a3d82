"""Binance connector: its parsers on real payloads, and the HTTP layer replaying recorded
responses (cassettes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from pipelines.errors import ExchangeApiError, PayloadError
from pipelines.exchanges import binance
from pipelines.exchanges.base import LS_COLUMNS, Window, keep_inside
from pipelines.http import HttpClient
from tests.conftest import load_payload


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _by_ts(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["timestamp"]): r for r in rows}


# ---------------------------------------------------------------------------------------------
# Parsers on the real payloads


@pytest.mark.parametrize(
    ("fixture", "metric"),
    [
        ("binance/global_long_short_account_ratio_5m.json", "global_account"),
        ("binance/top_long_short_position_ratio_5m.json", "top_position"),
        ("binance/global_long_short_account_ratio_doc_example.json", "global_account"),
    ],
)
def test_binance_ratio_rows_keep_published_shares(fixture: str, metric: str) -> None:
    rows = load_payload(fixture)
    frame = binance.parse(metric, rows, instrument="BTCUSDT", period="5m")

    assert list(frame.columns) == LS_COLUMNS
    assert len(frame) == len(rows)
    assert frame["ts"].is_monotonic_increasing
    published = _by_ts(rows)
    for row in frame.itertuples():
        raw = published[_ms(row.ts)]
        assert row.long_share == float(raw["longAccount"])
        assert row.short_share == float(raw["shortAccount"])
        assert row.ratio == pytest.approx(float(raw["longAccount"]) / float(raw["shortAccount"]))
        assert row.source_ratio == float(raw["longShortRatio"])
        assert row.coin == "BTC" and row.metric == metric and row.exchange == "binance"


def test_binance_position_ratio_on_coin_m_uses_position_field_names() -> None:
    rows = load_payload("binance/top_long_short_position_ratio_coinm_BTCUSD_5m.json")
    frame = binance.parse("top_position", rows, instrument="BTCUSDT", period="5m")
    first = _by_ts(rows)[_ms(frame["ts"].iloc[0])]
    assert frame["long_share"].iloc[0] == float(first["longPosition"])


def test_binance_taker_volumes_become_buy_and_sell_shares() -> None:
    rows = load_payload("binance/taker_long_short_ratio_5m.json")
    frame = binance.parse("taker_volume", rows, instrument="BTCUSDT", period="5m")
    published = _by_ts(rows)
    for row in frame.itertuples():
        raw = published[_ms(row.ts)]
        buy, sell = float(raw["buyVol"]), float(raw["sellVol"])
        assert row.long_share == pytest.approx(buy / (buy + sell))
        assert row.long_share + row.short_share == pytest.approx(1.0)
        assert row.ratio == pytest.approx(buy / sell)
        assert row.source_ratio == float(raw["buySellRatio"])


def test_binance_string_timestamps_of_the_docs_parse_like_numbers() -> None:
    rows = load_payload("binance/global_long_short_account_ratio_doc_example.json")
    assert isinstance(rows[0]["timestamp"], str)
    frame = binance.parse("global_account", rows, instrument="BTCUSDT", period="5m")
    assert {_ms(t) for t in frame["ts"]} == {int(r["timestamp"]) for r in rows}


def test_binance_klines_and_open_interest() -> None:
    rows = load_payload("binance/klines_1d_limit5.json")
    klines = binance.parse_klines(rows, instrument="BTCUSDT", period="1d")
    assert [_ms(t) for t in klines["ts"]] == [r[0] for r in rows]
    assert klines["close"].tolist() == [float(r[4]) for r in rows]
    assert klines["taker_buy_volume"].tolist() == [float(r[9]) for r in rows]
    oi_rows = load_payload("binance/open_interest_hist_5m.json")
    oi = binance.parse_open_interest(oi_rows, instrument="BTCUSDT", period="5m")
    assert oi["open_interest"].tolist() == [float(r["sumOpenInterest"]) for r in oi_rows]


def test_binance_error_envelope_names_exchange_endpoint_symbol_and_code() -> None:
    body = load_payload("binance/error_invalid_symbol_ticker24hr.json")
    with pytest.raises(PayloadError) as caught:
        binance.parse("global_account", body, instrument="BTCUSD_201225", period="5m")
    message = str(caught.value)
    for part in (
        "binance",
        "globalLongShortAccountRatio",
        "BTCUSD_201225",
        "-1121",
        "Invalid symbol",
    ):
        assert part in message


def test_binance_renamed_field_is_a_clear_error_not_silent_loss() -> None:
    rows = load_payload("binance/global_long_short_account_ratio_5m.json")
    drifted = [{("longAcct" if k == "longAccount" else k): v for k, v in r.items()} for r in rows]
    with pytest.raises(PayloadError, match="longAccount"):
        binance.parse("global_account", drifted, instrument="BTCUSDT", period="5m")


def test_binance_refuses_a_metric_it_does_not_publish_under_another_name() -> None:
    with pytest.raises(ValueError, match="does not publish"):
        binance.parse("elite_account", [], instrument="BTCUSDT", period="5m")


def test_a_body_of_unknown_shape_is_rejected() -> None:
    with pytest.raises(PayloadError):
        binance.parse("global_account", {"data": []}, instrument="BTCUSDT", period="1h")
    with pytest.raises(PayloadError):
        binance.parse_klines([{"open": 1}], instrument="BTCUSDT", period="1h")


# ---------------------------------------------------------------------------------------------
# Cassettes through the real HTTP layer


# Recorded in 2020, when the REST API still served these windows (it refuses them since): the
# tests ask the REST API alone, as a fetch of a recent window would.
GLOBAL = binance.LS_ENDPOINTS["global_account"][0]
OCT_2020 = Window.of(datetime(2020, 10, 18, tzinfo=UTC), datetime(2020, 10, 19, tzinfo=UTC))


async def test_binance_page_replays_through_the_http_layer(cassette) -> None:
    with cassette("binance_global_account"):
        async with HttpClient() as client:
            pages = await binance.fetch_rest(client, GLOBAL, "BTCUSDT", "5m", OCT_2020)
            stats = client.stats()["binance"]
    assert pages == [load_payload("binance/global_long_short_account_ratio_5m.json")]
    assert stats["requests"] == 1  # fewer rows than the page limit: no second page


async def test_binance_out_of_window_answer_is_filtered_to_the_request(cassette) -> None:
    january = Window.of(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC))
    with cassette("binance_out_of_window"):
        async with HttpClient() as client:
            pages = await binance.fetch_rest(client, GLOBAL, "BTCUSDT", "5m", january)
    frame = binance.parse("global_account", pages[0], instrument="BTCUSDT", period="5m")
    assert len(frame) == 10 and frame["ts"].min() > pd.Timestamp("2020-10-01")  # latest rows
    inside, dropped = keep_inside(frame, january)
    assert inside.empty and dropped == 10


async def test_binance_error_envelope_raises_with_exchange_endpoint_symbol_code(cassette) -> None:
    with cassette("binance_invalid_symbol"):
        async with HttpClient() as client:
            with pytest.raises(ExchangeApiError) as caught:
                await binance.fetch_rest(client, GLOBAL, "BTCUSD_201225", "5m", OCT_2020)
    error = caught.value
    assert (error.exchange, error.symbol, error.status, error.code) == (
        "binance",
        "BTCUSD_201225",
        400,
        "-1121",
    )
    assert "globalLongShortAccountRatio" in str(error) and "Invalid symbol." in str(error)


async def test_binance_position_and_taker_endpoints_replay(cassette) -> None:
    for name, metric in (
        ("binance_top_position", "top_position"),
        ("binance_taker_volume", "taker_volume"),
    ):
        with cassette(name):
            async with HttpClient() as client:
                pages = await binance.fetch_rest(
                    client, binance.LS_ENDPOINTS[metric][0], "BTCUSDT", "5m", OCT_2020
                )
        frame = binance.parse(metric, pages[0], instrument="BTCUSDT", period="5m")
        assert not frame.empty and frame["ratio"].gt(0).all()


async def test_klines_replay(cassette) -> None:
    days = Window.of(datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    with cassette("binance_klines"):
        async with HttpClient() as client:
            pages = await binance.fetch_klines(client, "BTCUSDT", "1d", days)
    assert len(binance.parse_klines(pages[0], instrument="BTCUSDT", period="1d")) == 5
