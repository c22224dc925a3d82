"""Cassette definitions, one module per exchange, each exporting `CASSETTES`.

Each cassette pairs a request our connector makes with a real recorded response body, verbatim
(tests/payloads/PROVENANCE.md says where each body came from). `tests/build_cassettes.py` writes
them to tests/cassettes/<name>.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

PAYLOADS = Path(__file__).parents[1] / "payloads"

Interaction = dict[str, Any]


def interaction(url: str, params: dict[str, str], body: str, status: int = 200) -> Interaction:
    """One recorded GET: the request as our connector sends it, the response as recorded."""
    uri = f"{url}?{urlencode(sorted(params.items()))}"
    return {
        "request": {"body": None, "headers": {}, "method": "GET", "uri": uri},
        "response": {
            "body": {"string": body},
            "headers": {"Content-Type": ["application/json"]},
            "status": {"code": status, "message": "OK" if status == 200 else "Error"},
            "url": uri,
        },
    }


def payload(name: str) -> str:
    """A payload file's text exactly as stored (values are never altered)."""
    return (PAYLOADS / name).read_text()
