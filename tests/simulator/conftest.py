"""What the simulator tests share: a test client on a fresh simulator, and requests to it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipelines.simulator import create_app
from tests.clock import Clock

Json = Any
Make = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_sim() -> AsyncIterator[Make]:
    """`await make_sim(**create_app_kwargs)` -> a test client; the clock defaults to NOW."""
    clients: list[TestClient] = []

    async def make(**kwargs: Any) -> TestClient:
        kwargs.setdefault("clock", Clock())
        client = TestClient(TestServer(create_app(**kwargs)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def sim(make_sim: Make) -> TestClient:
    return await make_sim()


async def fetch(client: TestClient, path: str, **params: Any) -> tuple[int, Json, Any]:
    """(status, parsed JSON or text, headers) of GET path?params."""
    query = {k: str(v) for k, v in params.items()}
    async with client.get(path, params=query) as response:
        text = await response.text()
        try:
            body: Json = json.loads(text)
        except json.JSONDecodeError:
            body = text
        return response.status, body, response.headers


async def ok(client: TestClient, path: str, **params: Any) -> Json:
    status, body, _ = await fetch(client, path, **params)
    assert status == 200, body
    return body
