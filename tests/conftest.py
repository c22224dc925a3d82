"""Shared fixtures: the network is blocked (loopback allowed), cassettes replay only."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import vcr

from tests.postgres import PostgresServer, running_server

HERE = Path(__file__).parent
PAYLOADS = HERE / "payloads"
CASSETTES = HERE / "cassettes"

# Parameters that identify what a request asks for; time windows differ from the recordings.
IDENTIFYING = {
    "symbol",
    "period",
    "interval",
    "intervalTime",
    "category",
    "cursor",
    "contract",
    "contract_code",
    "amount_type",
    "business_type",
    "instId",
    "bar",
}

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else address
    if (
        isinstance(host, str)
        and host not in ("127.0.0.1", "::1", "localhost")
        and not (isinstance(address, str) or host.startswith("/"))
    ):
        raise RuntimeError(f"test tried to reach {address}: only loopback is allowed")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture(autouse=True)
def no_deployment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell may export the scaled-out settings; a test sets what it needs."""
    for name in ("LSR_DAGSTER_POSTGRES_URL", "LSR_FETCH_ONLY", "LSR_LANDING"):
        monkeypatch.delenv(name, raising=False)


def _identifying(request: Any) -> dict[str, str]:
    query = dict(parse_qsl(urlsplit(request.uri).query))
    return {k: v for k, v in query.items() if k in IDENTIFYING}


def _same_identity(r1: Any, r2: Any) -> None:
    assert _identifying(r1) == _identifying(r2)


@pytest.fixture
def cassette() -> Iterator[Any]:
    """`with cassette("name"):` replays tests/cassettes/name.yaml and fails on any other call."""
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="none",
        match_on=["method", "scheme", "host", "path", "identity"],
    )
    recorder.register_matcher("identity", _same_identity)

    def use(name: str) -> Any:
        return recorder.use_cassette(f"{name}.yaml")

    yield use


def load_payload(relative: str) -> Any:
    return json.loads((PAYLOADS / relative).read_text())


@pytest.fixture
def payload() -> Any:
    return load_payload


@pytest.fixture
def warehouse_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh warehouse path for this test, also set as LSR_WAREHOUSE."""
    path = tmp_path / "lsr.duckdb"
    monkeypatch.setenv("LSR_WAREHOUSE", str(path))
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session, started on first use (tests/postgres.py)."""
    with running_server() as server:
        yield server
