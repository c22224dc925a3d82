"""Gate cassettes from the recordings in tests/payloads/gate (a doc example and a real error).

Two bodies are constructed, and say so: Gate's 429 envelope (its message text varies between
sources), and a two-page answer made of the doc example row re-stamped five minutes apart (no
real multi-row contract_stats recording is stored), for the paging test.
"""

from __future__ import annotations

import json

from tests.cassette_specs import Interaction, interaction, payload

GATE = "https://api.gateio.ws/api/v4"
STATS = f"{GATE}/futures/usdt/contract_stats"
DOC_ROW_TIME = 1603865400  # 2020-10-28 06:10 UTC, the doc example's bucket
BTC_5M = {"contract": "BTC_USDT", "interval": "5m", "from": str(DOC_ROW_TIME), "limit": "1"}

TOO_MANY = '{"label":"TOO_MANY_REQUESTS","message":"Request Rate limit Exceeded"}'


def _restamped(*offsets_min: int) -> str:
    """The doc example row at DOC_ROW_TIME + each offset (constructed, for paging)."""
    row = json.loads(payload("gate/contract_stats_doc_example.json"))[0]
    return json.dumps([{**row, "time": DOC_ROW_TIME + 60 * m} for m in offsets_min])


CASSETTES: dict[str, list[Interaction]] = {
    "gate_contract_stats": [
        interaction(STATS, BTC_5M, payload("gate/contract_stats_doc_example.json")),
    ],
    "gate_contract_not_found": [
        interaction(
            STATS,
            BTC_5M | {"contract": "NOTACOIN_USDT"},
            payload("gate/error_contract_not_found.json"),
            status=400,
        ),
    ],
    "gate_rate_limited_then_served": [
        interaction(STATS, BTC_5M, TOO_MANY, status=429),
        interaction(STATS, BTC_5M, payload("gate/contract_stats_doc_example.json")),
    ],
    # With limit 2: a page holds limit + 1 rows; the second page starts one interval after the
    # first page's last row and runs past the window's end (06:35 is outside [06:10, 06:35)).
    "gate_paged": [
        interaction(STATS, BTC_5M | {"limit": "2"}, _restamped(0, 5, 10)),
        interaction(
            STATS, BTC_5M | {"limit": "2", "from": str(DOC_ROW_TIME + 900)}, _restamped(15, 20, 25)
        ),
    ],
}
