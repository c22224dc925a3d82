"""The real HTTP layer replaying recorded responses (vcrpy): paging, windows, error envelopes.

If an aiohttp or vcrpy upgrade breaks recording/replay, these fail loudly.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from pipelines.errors import ExchangeApiError
from pipelines.exchanges import binance, bybit
from pipelines.exchanges.base import Window, keep_inside
from pipelines.http import HttpClient
from tests.conftest import load_payload

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


async def test_klines_and_open_interest_replay(cassette) -> None:
    days = Window.of(datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    with cassette("binance_klines"):
        async with HttpClient() as client:
            pages = await binance.fetch_klines(client, "BTCUSDT", "1d", days)
    assert len(binance.parse_klines(pages[0], instrument="BTCUSDT", period="1d")) == 5
    with cassette("bybit_open_interest"):
        async with HttpClient() as client:
            pages = await bybit.fetch_open_interest(client, "BTCUSDT", "5m", days)
    assert len(bybit.parse_open_interest(pages[0], instrument="BTCUSDT", period="5m")) == 2
