"""Every parser on real exchange responses: the values a user reads come out right."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from pipelines.errors import PayloadError
from pipelines.exchanges import binance, bybit
from pipelines.exchanges.base import LS_COLUMNS
from tests.conftest import load_payload


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _by_ts(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["timestamp"]): r for r in rows}


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


@pytest.mark.parametrize(
    "fixture",
    ["bybit/account_ratio_5min_live_2026-09-15.json", "bybit/account_ratio_doc_example.json"],
)
def test_bybit_newest_first_shares_become_ascending_rows_with_ratio(fixture: str) -> None:
    body = load_payload(fixture)
    rows = body["result"]["list"]
    assert int(rows[0]["timestamp"]) > int(rows[-1]["timestamp"])  # newest first on the wire
    frame = bybit.parse("global_account", body, instrument="ETHUSDT", period="5m")

    assert frame["ts"].is_monotonic_increasing
    published = _by_ts(rows)
    for row in frame.itertuples():
        raw = published[_ms(row.ts)]
        assert row.long_share == float(raw["buyRatio"])
        assert row.ratio == pytest.approx(float(raw["buyRatio"]) / float(raw["sellRatio"]))
        assert math.isnan(row.source_ratio)  # Bybit publishes shares only


def test_bybit_error_envelope_is_a_clear_error() -> None:
    body = load_payload("bybit/error_unknown_symbol_instruments_info.json")
    with pytest.raises(PayloadError, match="10001"):
        bybit.parse("global_account", body, instrument="NOTACOINUSDT", period="1h")
    with pytest.raises(PayloadError, match="symbol invalid"):
        bybit.parse_instruments(body)


def test_bybit_second_timestamps_are_read_by_magnitude() -> None:
    body = load_payload("bybit/account_ratio_5min_live_2026-09-15.json")
    in_seconds = {
        **body,
        "result": {
            **body["result"],
            "list": [
                {**r, "timestamp": str(int(r["timestamp"]) // 1000)} for r in body["result"]["list"]
            ],
        },
    }
    as_ms = bybit.parse("global_account", body, instrument="ETHUSDT", period="5m")
    as_s = bybit.parse("global_account", in_seconds, instrument="ETHUSDT", period="5m")
    assert as_s["ts"].tolist() == as_ms["ts"].tolist()


def test_bybit_open_interest_doc_example() -> None:
    body = load_payload("bybit/open_interest_doc_example.json")
    frame = bybit.parse_open_interest(body, instrument="BTCUSDT", period="5m")
    assert sorted(frame["open_interest"]) == sorted(
        float(r["openInterest"]) for r in body["result"]["list"]
    )
    assert frame["ts"].is_monotonic_increasing


def test_a_body_of_unknown_shape_is_rejected_by_every_parser() -> None:
    with pytest.raises(PayloadError):
        bybit.parse("global_account", {"unexpected": True}, instrument="BTCUSDT", period="1h")
    with pytest.raises(PayloadError):
        binance.parse("global_account", {"data": []}, instrument="BTCUSDT", period="1h")
    with pytest.raises(PayloadError):
        binance.parse_klines([{"open": 1}], instrument="BTCUSDT", period="1h")
