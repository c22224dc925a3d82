"""HTX cassettes: the documented elite-ratio example (tests/payloads/htx) and bodies quoted by
HTX's documentation or measured by a third party, written out below with their source.

No real recorded elite-ratio, kline, OI-history or contract-info response exists; the bodies
below are HTX's own documentation examples, verbatim (values illustrative), and error bodies as
the HTX docs' error examples (https://huobiapi.github.io/docs/usdt_swap/v1/en/#error-code)
show them (their elided `ts` filled with a plausible instant).
"""

from __future__ import annotations

from tests.cassette_specs import Interaction, interaction, payload

HTX = "https://api.hbdm.com"
ACCOUNT = f"{HTX}/linear-swap-api/v1/swap_elite_account_ratio"
KLINES = f"{HTX}/linear-swap-ex/market/history/kline"
OI = f"{HTX}/linear-swap-api/v1/swap_his_open_interest"
CONTRACTS = f"{HTX}/linear-swap-api/v1/swap_contract_info"
BTC_60MIN = {"contract_code": "BTC-USDT", "period": "60min"}

# huobiapi.github.io/docs/usdt_swap/v1/en "[General] Query Top Trader Sentiment Index
# Function-Position" example (mirror: rosssaunders/coincise docs/htx/endpoints/private/
# get_general_query_top_trader_sentiment_index_function_position.md), asked with period=1day.
DOC_POSITION = (
    '{"status":"ok","data":{"list":[{"buy_ratio":0.5,"sell_ratio":0.5,"ts":1638460800000}],'
    '"symbol":"BTC","contract_code":"BTC-USDT-FUTURES","business_type":"futures",'
    '"pair":"BTC-USDT"},"ts":1638756121395}'
)
# Same docs, "[General] Get KLine Data" example (zh edition, /linear-swap-ex/market/history/kline).
DOC_KLINES = (
    '{"ch":"market.BTC-USDT.kline.1min","data":[{"amount":0.004,"close":13076.8,"count":1,'
    '"high":13076.8,"id":1603695060,"low":13076.8,"open":13076.8,"trade_turnover":52.3072,'
    '"vol":4}],"status":"ok","ts":1603695099234}'
)
# Same docs, "[General] Query information on open interest" example (amount_type=1: contracts).
DOC_OPEN_INTEREST = (
    '{"status":"ok","data":{"symbol":"BTC","tick":[{"volume":27112,"amount_type":1,'
    '"ts":1638720000000,"value":1321498.5264}],"contract_code":"BTC-USDT-211210",'
    '"business_type":"futures","pair":"BTC-USDT","contract_type":"this_week"},'
    '"ts":1638755582116}'
)
# Same docs, "[General] Query Swap Info" example (an older shape: no business_type, pair, ...).
DOC_CONTRACT_INFO = (
    '{"status":"ok","data":[{"symbol":"BTC","contract_code":"BTC-USDT","contract_size":0.001,'
    '"price_tick":0.1,"delivery_time":"","create_date":"20201110","contract_status":1,'
    '"settlement_date":"1609782000000","support_margin_mode":"all"}],"ts":1603694455082}'
)
# A third-party measurement (2026-09-23): the API and market error envelopes.
UNKNOWN_CONTRACT = (
    '{"status":"error","err_code":1014,"err_msg":"This contract doesnt exist.","ts":1790134722568}'
)
MARKET_ERROR = (
    '{"ts":1790134722568,"status":"error","err-code":"invalid-parameter",'
    '"err-msg":"contract_code data error or empty"}'
)
# Code and message of HTX's error table for the rate limit (answered with HTTP 200).
RATE_LIMITED = (
    '{"status":"error","err_code":1032,"err_msg":"The number of access exceeded the limit.",'
    '"ts":1790134722568}'
)
# The measured 404 of an unknown path, verbatim from the same measurement.
UNKNOWN_PATH = (
    '{"timestamp":"2026-09-23T03:38:42.568+00:00","status":404,"error":"Not Found",'
    '"path":"/linear-swap-api/v1/nope"}'
)

CASSETTES: dict[str, list[Interaction]] = {
    "htx_elite_account_ratio": [
        interaction(ACCOUNT, BTC_60MIN, payload("htx/elite_account_ratio_doc_example.json")),
    ],
    # The first answer is the over-limit body; the HTTP layer must wait and ask again.
    "htx_rate_limited_then_answered": [
        interaction(ACCOUNT, BTC_60MIN, RATE_LIMITED),
        interaction(ACCOUNT, BTC_60MIN, payload("htx/elite_account_ratio_doc_example.json")),
    ],
    "htx_unknown_contract": [
        interaction(ACCOUNT, {"contract_code": "NOPE-USDT", "period": "60min"}, UNKNOWN_CONTRACT),
    ],
    # An endpoint HTX no longer serves (the 2026 V5 migration moved other families).
    "htx_retired_endpoint": [
        interaction(ACCOUNT, BTC_60MIN, UNKNOWN_PATH, status=404),
    ],
    "htx_klines": [
        interaction(KLINES, BTC_60MIN, DOC_KLINES),
    ],
    "htx_klines_unknown_contract": [
        interaction(KLINES, {"contract_code": "NOPE-USDT", "period": "60min"}, MARKET_ERROR),
    ],
    "htx_open_interest": [
        interaction(OI, BTC_60MIN | {"amount_type": "2", "size": "200"}, DOC_OPEN_INTEREST),
    ],
    "htx_contract_info": [
        interaction(CONTRACTS, {"business_type": "swap"}, DOC_CONTRACT_INFO),
    ],
}
