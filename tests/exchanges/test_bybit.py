"""Bybit connector: its parsers on real payloads, and the HTTP layer replaying recorded
responses (cassettes).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from pipelines.errors import ExchangeApiError, PayloadError
from pipelines.exchanges import bybit
from pipelines.exchanges.base import Window
from pipelines.http import HttpClient
from tests.conftest import load_payload


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _by_ts(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["timestamp"]): r for r in rows}


# ---------------------------------------------------------------------------------------------
# Parsers on the real payloads


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


def test_a_body_of_unknown_shape_is_rejected() -> None:
    with pytest.raises(PayloadError):
        bybit.parse("global_account", {"unexpected": True}, instrument="BTCUSDT", period="1h")


# ---------------------------------------------------------------------------------------------
# Cassettes through the real HTTP layer


async def test_bybit_cursor_paging_follows_next_page_cursor_to_the_end(cassette) -> None:
    window = Window.of(datetime(2026, 9, 15, tzinfo=UTC), datetime(2026, 9, 16, tzinfo=UTC))
    with cassette("bybit_account_ratio_paged"):
        async with HttpClient() as client:
            pages = await bybit.fetch_ls(client, "ETHUSDT", "global_account", "5m", window)
    assert len(pages) == 2
    frames = [bybit.parse("global_account", p, instrument="ETHUSDT", period="5m") for p in pages]
    assert sum(len(f) for f in frames) == 3


async def test_bybit_error_envelope_on_http_200_is_an_api_error(cassette) -> None:
    with cassette("bybit_unknown_symbol"):
        async with HttpClient() as client:
            with pytest.raises(ExchangeApiError, match="10001"):
                await bybit.fetch_instruments(client)


async def test_open_interest_replays(cassette) -> None:
    days = Window.of(datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    with cassette("bybit_open_interest"):
        async with HttpClient() as client:
            pages = await bybit.fetch_open_interest(client, "BTCUSDT", "5m", days)
    assert len(bybit.parse_open_interest(pages[0], instrument="BTCUSDT", period="5m")) == 2
