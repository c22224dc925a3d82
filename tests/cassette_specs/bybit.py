"""Bybit cassettes from the recordings in tests/payloads/bybit."""

from __future__ import annotations

from tests.cassette_specs import Interaction, interaction, payload

BYBIT = "https://api.bybit.com"
ETH_5MIN = {"category": "linear", "symbol": "ETHUSDT", "period": "5min"}

# A terminal page constructed for the paging test: the real recorded page carries a cursor,
# and the exchange answers the last page with an empty list and an empty cursor.
LAST_PAGE = (
    '{"retCode":0,"retMsg":"OK","result":{"list":[],"nextPageCursor":""},'
    '"retExtInfo":{},"time":1789460661500}'
)

CASSETTES: dict[str, list[Interaction]] = {
    "bybit_account_ratio_paged": [
        interaction(
            f"{BYBIT}/v5/market/account-ratio",
            ETH_5MIN,
            payload("bybit/account_ratio_5min_live_2026-09-15.json"),
        ),
        interaction(
            f"{BYBIT}/v5/market/account-ratio",
            ETH_5MIN | {"cursor": "lastid%3D0%26lasttime%3D1789459800"},
            LAST_PAGE,
        ),
    ],
    "bybit_unknown_symbol": [
        interaction(
            f"{BYBIT}/v5/market/instruments-info",
            {"category": "linear"},
            payload("bybit/error_unknown_symbol_instruments_info.json"),
        ),
    ],
    "bybit_open_interest": [
        interaction(
            f"{BYBIT}/v5/market/open-interest",
            {"category": "linear", "symbol": "BTCUSDT", "intervalTime": "5min"},
            payload("bybit/open_interest_doc_example.json"),
        ),
    ],
}
