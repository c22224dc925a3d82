"""Bitget cassettes from the recordings in tests/payloads/bitget, plus documented bodies.

Only three Bitget bodies were found recorded (tests/payloads/PROVENANCE.md). The candles,
open-interest and contracts bodies below are Bitget's own documentation examples, verbatim
(rosssaunders/coincise `docs/bitget/endpoints/private/get_api_v2_mix_market_{candles,
open_interest,contracts}.md`, the official-doc mirror, version 030c215). The error bodies are
built from the Bitget docs (https://www.bitget.com/api-doc/common/apidata/Long-Short): the 40034
message was measured live ("Parameter NOTACOINUSDT does not
exist", HTTP 400), in the envelope of ccxt's recorded 40019 error; the 429 body is the one a
third-party mock quotes; the 40054 message is the one gocryptotrader's test comment quotes.
"""

from __future__ import annotations

from tests.cassette_specs import Interaction, interaction, payload

BITGET = "https://api.bitget.com/api/v2/mix/market"
BTC_5M = {"symbol": "BTCUSDT", "period": "5m"}
USDT = {"productType": "USDT-FUTURES"}

# Bitget doc example, GET /api/v2/mix/market/candles (Get-Candle-Data).
CANDLES_DOC = (
    '{"code":"00000","msg":"success","requestTime":1695865615662,"data":['
    '["1695835800000","26210.5","26210.5","26194.5","26194.5","26.26","687897.63"],'
    '["1695836100000","26194.5","26194.5","26171","26171","17.98","470618.72"]]}'
)
# Bitget doc example, GET /api/v2/mix/market/open-interest (Get-Open-Interest).
OPEN_INTEREST_DOC = (
    '{"code":"00000","msg":"success","requestTime":1695796780343,"data":{'
    '"openInterestList":[{"symbol":"BTCUSDT","size":"34278.06"}],"ts":"1695796781616"}}'
)
# Bitget doc example, GET /api/v2/mix/market/contracts (Get-All-Symbols-Contracts).
CONTRACTS_DOC = (
    '{"code":"00000","msg":"success","requestTime":1695793701269,"data":[{'
    '"symbol":"BTCUSDT","baseCoin":"BTC","quoteCoin":"USDT","buyLimitPriceRatio":"0.9",'
    '"sellLimitPriceRatio":"0.9","feeRateUpRatio":"0.1","makerFeeRate":"0.0004",'
    '"takerFeeRate":"0.0006","openCostUpRatio":"0.1","supportMarginCoins":["USDT"],'
    '"minTradeNum":"0.01","priceEndStep":"1","volumePlace":"2","pricePlace":"1",'
    '"sizeMultiplier":"0.01","symbolType":"perpetual","minTradeUSDT":"5",'
    '"maxSymbolOrderNum":"999999","maxProductOrderNum":"999999","maxPositionNum":"150",'
    '"symbolStatus":"normal","offTime":"-1","limitOpenTime":"-1","deliveryTime":"",'
    '"deliveryStartTime":"","launchTime":"","fundInterval":"8","minLever":"1","maxLever":"125",'
    '"posLimit":"0.05","maintainTime":"1680165535278","maxMarketOrderQty":"220",'
    '"maxOrderQty":"1200","isRwa":"YES"}]}'
)
UNKNOWN_SYMBOL = (
    '{"code":"40034","msg":"Parameter NOTACOINUSDT does not exist",'
    '"requestTime":1758611911133,"data":null}'
)
TOO_MANY = '{"code":"429","msg":"Too Many Requests"}'
TAKER_EMPTY = (
    '{"code":"40054","msg":"The data fetched by DOGEUSDT is empty",'
    '"requestTime":1758611911133,"data":null}'
)

CASSETTES: dict[str, list[Interaction]] = {
    "bitget_long_short": [
        interaction(
            f"{BITGET}/long-short", BTC_5M, payload("bitget/long_short_5m_gct_fixture.json")
        ),
    ],
    # The rate-limit answer first, then the recorded body: the HTTP layer retries the 429.
    "bitget_long_short_after_429": [
        interaction(f"{BITGET}/long-short", BTC_5M, TOO_MANY, status=429),
        interaction(
            f"{BITGET}/long-short", BTC_5M, payload("bitget/long_short_5m_gct_fixture.json")
        ),
    ],
    "bitget_position": [
        interaction(
            f"{BITGET}/position-long-short",
            BTC_5M,
            payload("bitget/position_long_short_doc_example.json"),
        ),
    ],
    "bitget_taker": [
        interaction(
            f"{BITGET}/taker-buy-sell", BTC_5M, payload("bitget/taker_buy_sell_doc_example.json")
        ),
    ],
    "bitget_taker_not_published": [
        interaction(
            f"{BITGET}/taker-buy-sell",
            {"symbol": "DOGEUSDT", "period": "1h"},
            TAKER_EMPTY,
            status=400,
        ),
    ],
    "bitget_unknown_symbol": [
        interaction(
            f"{BITGET}/account-long-short",
            {"symbol": "NOTACOINUSDT", "period": "1h"},
            UNKNOWN_SYMBOL,
            status=400,
        ),
    ],
    "bitget_klines": [
        interaction(
            f"{BITGET}/candles", USDT | {"symbol": "BTCUSDT", "granularity": "5m"}, CANDLES_DOC
        ),
    ],
    "bitget_open_interest": [
        interaction(f"{BITGET}/open-interest", USDT | {"symbol": "BTCUSDT"}, OPEN_INTEREST_DOC),
    ],
    "bitget_contracts": [
        interaction(f"{BITGET}/contracts", USDT, CONTRACTS_DOC),
    ],
}
