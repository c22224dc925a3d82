"""Build the vcrpy cassettes in tests/cassettes/ from the real payloads in tests/payloads/.

Each cassette pairs a request our connectors make with a real recorded response body, verbatim
(see tests/payloads/PROVENANCE.md for where each body came from). Requests are matched on the
endpoint and the identifying parameters (symbol, period, cursor), not on time windows: the
recordings were made with other windows. Run `python tests/build_cassettes.py` after changing
this file; the cassettes are committed.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import yaml

HERE = Path(__file__).parent
PAYLOADS = HERE / "payloads"
CASSETTES = HERE / "cassettes"

BINANCE = "https://fapi.binance.com"
BYBIT = "https://api.bybit.com"

# A terminal page constructed for the Bybit paging test: the real recorded page carries a
# cursor, and the exchange answers the last page with an empty list and an empty cursor.
BYBIT_LAST_PAGE = (
    '{"retCode":0,"retMsg":"OK","result":{"list":[],"nextPageCursor":""},'
    '"retExtInfo":{},"time":1789460661500}'
)


def interaction(url: str, params: dict[str, str], body: str, status: int = 200) -> dict:
    uri = f"{url}?{urlencode(sorted(params.items()))}"
    return {
        "request": {"body": None, "headers": {}, "method": "GET", "uri": uri},
        "response": {
            "body": {"string": body},
            "headers": {"Content-Type": ["application/json"]},
            "status": {"code": status, "message": "OK" if status == 200 else "Bad Request"},
            "url": uri,
        },
    }


def payload(name: str) -> str:
    return (PAYLOADS / name).read_text()


def cassettes() -> dict[str, list[dict]]:
    btc_5m = {"symbol": "BTCUSDT", "period": "5m"}
    return {
        "binance_global_account": [
            interaction(
                f"{BINANCE}/futures/data/globalLongShortAccountRatio",
                btc_5m,
                payload("binance/global_long_short_account_ratio_5m.json"),
            ),
        ],
        "binance_top_position": [
            interaction(
                f"{BINANCE}/futures/data/topLongShortPositionRatio",
                btc_5m,
                payload("binance/top_long_short_position_ratio_5m.json"),
            ),
        ],
        "binance_taker_volume": [
            interaction(
                f"{BINANCE}/futures/data/takerlongshortRatio",
                btc_5m,
                payload("binance/taker_long_short_ratio_5m.json"),
            ),
        ],
        "binance_out_of_window": [
            interaction(
                f"{BINANCE}/futures/data/globalLongShortAccountRatio",
                btc_5m | {"startTime": "1577836800000", "endTime": "1580515199999"},
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
                btc_5m,
                payload("binance/open_interest_hist_5m.json"),
            ),
        ],
        "bybit_account_ratio_paged": [
            interaction(
                f"{BYBIT}/v5/market/account-ratio",
                {"category": "linear", "symbol": "ETHUSDT", "period": "5min"},
                payload("bybit/account_ratio_5min_live_2026-09-15.json"),
            ),
            interaction(
                f"{BYBIT}/v5/market/account-ratio",
                {
                    "category": "linear",
                    "symbol": "ETHUSDT",
                    "period": "5min",
                    "cursor": "lastid%3D0%26lasttime%3D1789459800",
                },
                BYBIT_LAST_PAGE,
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


def main() -> None:
    CASSETTES.mkdir(exist_ok=True)
    for name, interactions in cassettes().items():
        text = yaml.safe_dump({"interactions": interactions, "version": 1}, sort_keys=False)
        (CASSETTES / f"{name}.yaml").write_text(text)
        print(f"wrote {CASSETTES / name}.yaml")


if __name__ == "__main__":
    main()
