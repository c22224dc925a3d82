"""The landing zone: every fetch's raw responses, append-only, on a local disk or a bucket.

A fetch worker writes one Parquet file per fetch and nothing else; the loader
(pipelines/loader.py) normalises landed files into the warehouse, one writer for any number of
workers. Each file carries, in its Parquet metadata, what the fetch was asked to do (the
manifest): exchange, partition day, the fetch's clock, its plan of days and series, its periods
and universe. Parsing the responses again under that manifest gives the rows the fetch gave, so
a partition can be normalised again, after a parser fix, without asking the exchange again.

Layout (Hive-style, so any Parquet reader can scan it):
    <root>/exchange=<name>/date=<partition day>/<stamp>-<first day>-<last day>-<id>.fetch.parquet

The root is a folder or any fsspec URL (`s3://bucket/landing`, `memory://landing` in tests).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from pipelines.backfill import FetchPlan, SeriesKey
from pipelines.errors import RetryableError
from pipelines.http import ExchangeProfile, HttpClient, Interpreter, RawResponse
from pipelines.ingest import PartitionFetch, fetch_partition
from pipelines.universe import Universe

MANIFEST_KEY = b"lsr.fetch"
MANIFEST_VERSION = 1
SUFFIX = ".fetch.parquet"
STAMP = "%Y%m%dT%H%M%S%f"  # a file's name begins with its landing time (UTC)
_NAME = re.compile(
    r"^(?P<stamp>\d{8}T\d{6}\d{6})-(?P<first>\d{4}-\d{2}-\d{2})-(?P<last>\d{4}-\d{2}-\d{2})"
    r"-(?P<id>[0-9a-f]{12})" + re.escape(SUFFIX) + "$"
)
_COMPONENT = re.compile(r"^[a-z0-9]+$")
T = TypeVar("T")


class UnreadableLanding(ValueError):
    """A landed file this version cannot replay (no manifest, an unknown version)."""


@dataclass(frozen=True)
class Manifest:
    """What a fetch was asked to do: enough to replay its responses into the same rows."""

    exchange: str
    day: date
    now: datetime
    plan: FetchPlan
    periods: tuple[str, ...]
    universe: Universe
    # The fetch's run told Dagster its partition was materialized (a fetch-only worker's run);
    # otherwise the loader does, when it stores the file (a run that met a busy warehouse).
    reported: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": MANIFEST_VERSION,
                "exchange": self.exchange,
                "day": self.day.isoformat(),
                "now": self.now.isoformat(),
                "periods": list(self.periods),
                "reported": self.reported,
                "plan": {
                    "day": self.plan.day.isoformat(),
                    "first": self.plan.first.isoformat(),
                    "last": self.plan.last.isoformat(),
                    "starts": [
                        [k.dataset, k.coin, k.period, d.isoformat()]
                        for k, d in self.plan.starts.items()
                    ],
                },
                "universe": {
                    "coins": list(self.universe.coins),
                    "alt_exclusions": list(self.universe.alt_exclusions),
                    "overrides": self.universe.overrides,
                },
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if raw.get("version") != MANIFEST_VERSION:
            raise UnreadableLanding(
                f"manifest version {raw.get('version')!r}; this version reads {MANIFEST_VERSION}"
            )
        plan = raw["plan"]
        universe = raw["universe"]
        return cls(
            exchange=raw["exchange"],
            day=date.fromisoformat(raw["day"]),
            now=datetime.fromisoformat(raw["now"]),
            periods=tuple(raw["periods"]),
            reported=bool(raw.get("reported", False)),
            plan=FetchPlan(
                day=date.fromisoformat(plan["day"]),
                first=date.fromisoformat(plan["first"]),
                last=date.fromisoformat(plan["last"]),
                starts={
                    SeriesKey(dataset, coin, period): date.fromisoformat(start)
                    for dataset, coin, period, start in plan["starts"]
                },
            ),
            universe=Universe(
                coins=tuple(universe["coins"]),
                alt_exclusions=tuple(universe["alt_exclusions"]),
                overrides=universe["overrides"],
            ),
        )

    @classmethod
    def of(
        cls,
        fetched: PartitionFetch,
        periods: tuple[str, ...],
        universe: Universe,
        *,
        reported: bool = False,
    ) -> Manifest:
        assert fetched.plan is not None, "a fetch made by fetch_partition carries its plan"
        return cls(
            fetched.exchange, fetched.day, fetched.now, fetched.plan, periods, universe, reported
        )


@dataclass(frozen=True)
class LandedFile:
    """A landed file's place in the zone, read from its path alone (no download)."""

    path: str  # relative to the zone's root: exchange=<x>/date=<d>/<name>
    exchange: str
    day: date  # the partition the fetch ran for
    first: date  # the days its rows may fall on
    last: date

    @classmethod
    def parse(cls, relative: str) -> LandedFile | None:
        """None for anything that is not a landed fetch (a .tmp, a file of an older layout)."""
        parts = relative.split("/")
        if (
            len(parts) != 3
            or not parts[0].startswith("exchange=")
            or not parts[1].startswith("date=")
        ):
            return None
        match = _NAME.match(parts[2])
        if match is None:
            return None
        try:
            return cls(
                path=relative,
                exchange=parts[0].removeprefix("exchange="),
                day=date.fromisoformat(parts[1].removeprefix("date=")),
                first=date.fromisoformat(match["first"]),
                last=date.fromisoformat(match["last"]),
            )
        except ValueError:
            return None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def landed_at(self) -> datetime:
        return datetime.strptime(self.name[:21], STAMP).replace(tzinfo=UTC)

    def covers(self, day: date) -> bool:
        return self.first <= day <= self.last


class LandingZone:
    """A folder or bucket of landed fetches, written only by appending new files."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.fs, self._base = fsspec.core.url_to_fs(self.root)
        self._local = isinstance(self.fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"LandingZone({self.root!r})"

    def land(self, fetched: PartitionFetch, manifest: Manifest) -> LandedFile:
        """Write the fetch's responses, with its manifest, as one new file."""
        stamp = datetime.now(UTC).strftime(STAMP)
        days = fetched.covered_days
        name = f"{stamp}-{days[0]}-{days[-1]}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        relative = f"exchange={_safe(fetched.exchange)}/date={fetched.day.isoformat()}/{name}"
        table = _responses_table(fetched.responses).replace_schema_metadata(
            {MANIFEST_KEY: manifest.to_json().encode()}
        )
        self._write(relative, table)
        landed = LandedFile.parse(relative)
        assert landed is not None, relative  # built to the pattern above
        return landed

    def _write(self, relative: str, table: pa.Table) -> None:
        target = f"{self._base}/{relative}"
        if not self._local:  # an object store's upload appears whole or not at all
            with self.fs.open(target, "wb") as out:
                pq.write_table(table, out, compression="zstd")
            return
        # On a disk: written aside, then renamed, so a kill mid-write leaves a stray .tmp
        # (which no reader takes for a fetch), never a torn file under a fetch's name.
        folder, name = target.rsplit("/", 1)
        self.fs.makedirs(folder, exist_ok=True)
        temporary = f"{folder}/.{name}.tmp"
        pq.write_table(table, temporary, compression="zstd")
        self.fs.mv(temporary, target)

    def files(self, exchange: str | None = None) -> list[LandedFile]:
        """Every landed fetch (of one exchange), in landing order."""
        pattern = f"exchange={_safe(exchange)}" if exchange else "exchange=*"
        found = self.fs.glob(f"{self._base}/{pattern}/date=*/*{SUFFIX}")
        landed = (LandedFile.parse(self._relative(path)) for path in found)
        return sorted((f for f in landed if f is not None), key=lambda f: (f.name, f.path))

    def _relative(self, path: str) -> str:
        base = self.fs._strip_protocol(self._base)
        return str(path)[len(base) :].lstrip("/")

    def read(self, landed: LandedFile) -> tuple[Manifest, list[RawResponse]]:
        with self.fs.open(f"{self._base}/{landed.path}", "rb") as source:
            table = pq.read_table(source)
        metadata = table.schema.metadata or {}
        if MANIFEST_KEY not in metadata:
            raise UnreadableLanding("no fetch manifest in the file's metadata")
        manifest = Manifest.from_json(metadata[MANIFEST_KEY].decode())
        return manifest, [RawResponse(**row) for row in table.to_pylist()]


def _safe(name: str) -> str:
    """A path component built from data: exchange names are lower-case letters and digits."""
    if not _COMPONENT.match(name):
        raise ValueError(f"refusing a landing-zone path component built from {name!r}")
    return name


_RESPONSE_SCHEMA = pa.schema(
    [
        ("exchange", pa.string()),
        ("endpoint", pa.string()),
        ("params", pa.string()),
        ("symbol", pa.string()),
        ("status", pa.int32()),
        ("body", pa.string()),
        ("fetched_at", pa.timestamp("us")),
        ("simulated", pa.bool_()),
    ]
)


def _responses_table(responses: list[RawResponse]) -> pa.Table:
    return pa.Table.from_pylist([r.__dict__ for r in responses], schema=_RESPONSE_SCHEMA)


class ReplayClient(HttpClient):
    """An HttpClient that answers from landed responses and never opens a connection.

    Requests are matched on (exchange, endpoint, parameters); where a fetch asked the same
    thing twice (a retry after a 429), the last answer is the one the fetch kept. A request
    the fetch never made fails as a transient error would, so its task is reported failed,
    not silently empty.
    """

    def __init__(self, responses: list[RawResponse]) -> None:
        super().__init__(max_attempts=1, rate_limit_scale=0.0)
        self.answers = {(r.exchange, r.endpoint, r.params): r for r in responses}
        self.misses = 0

    async def __aenter__(self) -> ReplayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def _with_retries(
        self,
        profile: ExchangeProfile,
        endpoint: str,
        params: Mapping[str, str | int],
        buckets: Mapping[str, int],
        symbol: str | None,
        interpret: Interpreter,
    ) -> Any:
        key = (profile.name, endpoint, json.dumps(dict(params), sort_keys=True))
        answer = self.answers.get(key)
        if answer is None:
            self.misses += 1
            raise RetryableError(
                profile.name, endpoint, "not in the landed responses", symbol=symbol
            )
        self.responses.append(answer)
        headers = {"X-LSR-Simulated": "1"} if answer.simulated else {}
        return interpret(profile, endpoint, symbol, answer.status, _body(answer.body), headers)


def _body(text: str) -> bytes:
    """The bytes a response arrived as (binary files are kept as base64 text)."""
    if text.startswith("base64:"):
        return base64.b64decode(text.removeprefix("base64:"))
    return text.encode()


def replay(manifest: Manifest, responses: list[RawResponse]) -> PartitionFetch:
    """The fetch the responses came from, parsed again by today's parsers."""
    plan = manifest.plan

    async def fetch() -> PartitionFetch:
        return await fetch_partition(
            manifest.exchange,
            manifest.day,
            universe=manifest.universe,
            periods=manifest.periods,
            client=ReplayClient(responses),
            now=manifest.now,
            planner=lambda _tasks, _listed: plan,
        )

    return _complete(fetch())


def _complete(work: Awaitable[T]) -> T:
    """Run a coroutine to its end from synchronous code, inside a running loop or not (the
    ingestion step is async: its earlier waiting fetches are replayed from within it)."""

    async def main() -> T:
        return await work

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(main()))
        except BaseException as error:  # handed to the caller's thread below
            errors.append(error)

    worker = threading.Thread(target=run, name="lsr-replay")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return result[0]
