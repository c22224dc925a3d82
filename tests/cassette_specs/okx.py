"""OKX cassettes: the recordings in tests/payloads/okx, plus pages built from the documented shape.

No real contract-level rubik page was found (PROVENANCE.md): the currency-level doc examples have
the same `[ts, value]` rows and serve as single pages; the paging and rate-limit cassettes are
constructed from the documented shape and error table and say so. Every request is written as the
connector sends it (instId, period, begin/end exclusive, limit 100), so `end` moving back to the
oldest row is part of what a replay checks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.cassette_specs import Interaction, interaction, payload

OKX = "https://www.okx.com"
RUBIK = f"{OKX}/api/v5/rubik/stat"
ACCOUNT = f"{RUBIK}/contracts/long-short-account-ratio-contract"
TAKER = f"{RUBIK}/taker-volume-contract"
BTC = "BTC-USDT-SWAP"
FIVE_MIN = 300_000


def _ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


# Windows the tests fetch; each holds the rows of the body it is paired with.
DOC_RATIO_WINDOW = (_ms(2021, 9, 1), _ms(2021, 9, 2))  # row at 2021-09-01 13:15 UTC
DOC_TAKER_WINDOW = (_ms(2021, 8, 30), _ms(2021, 9, 1))  # rows at 16:00 UTC (UTC+8 days)
PAGED_WINDOW = (_ms(2024, 5, 1), _ms(2024, 5, 1, 12))  # 144 five-minute rows
PAGE_ONE_OLDEST = PAGED_WINDOW[1] - 100 * FIVE_MIN


def _query(window: tuple[int, int], end: int | None = None, **extra: str) -> dict[str, str]:
    return {
        "instId": BTC,
        "begin": str(window[0] - 1),
        "end": str(window[1] if end is None else end),
        "limit": "100",
        **extra,
    }


def _constructed_page(newest: int, count: int) -> str:
    """A documented-shape page: `[ts, ratio]` strings, newest first, ratio at full precision."""
    rows = [
        [str(newest - i * FIVE_MIN), repr(1.1 + 0.37 * ((newest // FIVE_MIN - i) % 17) / 17)]
        for i in range(count)
    ]
    return json.dumps({"code": "0", "msg": "", "data": rows}, separators=(",", ":"))


# HTTP 429 body of 50011 as the error table gives it (no recording found).
TOO_MANY = '{"msg":"Too Many Requests","code":"50011"}'

CASSETTES: dict[str, list[Interaction]] = {
    "okx_global_account_doc": [
        interaction(
            ACCOUNT,
            _query(DOC_RATIO_WINDOW, period="5m"),
            payload("okx/long_short_account_ratio_ccy_doc_example.json"),
        ),
    ],
    "okx_taker_volume_doc": [
        interaction(
            TAKER,
            _query(DOC_TAKER_WINDOW, period="1Dutc", unit="0"),
            payload("okx/taker_volume_ccy_doc_example.json"),
        ),
    ],
    "okx_unknown_instrument": [
        interaction(
            ACCOUNT,
            _query(DOC_RATIO_WINDOW, period="5m") | {"instId": "NOTACOIN-USDT-SWAP"},
            payload("okx/error_unknown_instrument.json"),
        ),
    ],
    "okx_account_ratio_paged": [
        interaction(
            ACCOUNT,
            _query(PAGED_WINDOW, period="5m"),
            _constructed_page(PAGED_WINDOW[1] - FIVE_MIN, 100),
        ),
        interaction(
            ACCOUNT,
            _query(PAGED_WINDOW, end=PAGE_ONE_OLDEST, period="5m"),
            _constructed_page(PAGE_ONE_OLDEST - FIVE_MIN, 44),
        ),
    ],
    "okx_rate_limited_then_served": [
        interaction(ACCOUNT, _query(DOC_RATIO_WINDOW, period="5m"), TOO_MANY, status=429),
        interaction(
            ACCOUNT,
            _query(DOC_RATIO_WINDOW, period="5m"),
            payload("okx/long_short_account_ratio_ccy_doc_example.json"),
        ),
    ],
}
