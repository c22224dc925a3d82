"""Binance cassettes from the real recordings in tests/payloads/binance."""

from __future__ import annotations

from tests.cassette_specs import Interaction, interaction, payload

BINANCE = "https://fapi.binance.com"
BTC_5M = {"symbol": "BTCUSDT", "period": "5m"}

CASSETTES: dict[str, list[Interaction]] = {
    "binance_global_account": [
        interaction(
            f"{BINANCE}/futures/data/globalLongShortAccountRatio",
            BTC_5M,
            payload("binance/global_long_short_account_ratio_5m.json"),
        ),
    ],
    "binance_top_position": [
        interaction(
            f"{BINANCE}/futures/data/topLongShortPositionRatio",
            BTC_5M,
            payload("binance/top_long_short_position_ratio_5m.json"),
        ),
    ],
    "binance_taker_volume": [
        interaction(
            f"{BINANCE}/futures/data/takerlongshortRatio",
            BTC_5M,
            payload("binance/taker_long_short_ratio_5m.json"),
        ),
    ],
    # The recorded request asked for January 2020 and got October 2020 rows back.
    "binance_out_of_window": [
        interaction(
            f"{BINANCE}/futures/data/globalLongShortAccountRatio",
            BTC_5M | {"startTime": "1577836800000", "endTime": "1580515199999"},
            payload("binance/global_long_short_account_ratio_out_of_window_request.json"),
        ),
    ],
    "binance_invalid_symbol": [
        interaction(
            f"{BINANCE}/futures/data/globalLongShortAccountRatio",
            {"symbol": "BTCUSD_201225", "period": "5m"},
            payload("binance/error_invalid_symbol_ticker24hr.json"),
            status=400,
        ),
    ],
    "binance_klines": [
        interaction(
            f"{BINANCE}/fapi/v1/klines",
            {"symbol": "BTCUSDT", "interval": "1d"},
            payload("binance/klines_1d_limit5.json"),
        ),
    ],
    "binance_open_interest": [
        interaction(
            f"{BINANCE}/futures/data/openInterestHist",
            BTC_5M,
            payload("binance/open_interest_hist_5m.json"),
        ),
    ],
}
