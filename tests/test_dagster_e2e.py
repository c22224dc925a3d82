"""The path a data engineer takes: `dagster dev` (webserver + daemon) against the simulator.

Backfills are launched through GraphQL exactly as the UI's "Materialize" over a partition range
launches them (asset backfills: one run per day x exchange partition, queued by the daemon under
the instance's run limits). The test then reads runs, partitions and checks back through
GraphQL, waits for the refresh sensor to bring the derived tables and images up to date, and
asks the simulator whether any exchange saw a request over its limit.

It walks twice: on the embedded instance (SQLite, each ingestion run stores its own fetch), and
scaled out (Postgres instance, LSR_FETCH_ONLY: ingestion runs only land, the
`load_after_landing` sensor starts `load_landed`, the one writer, before the refresh).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pytest

from pipelines.exchanges import EXCHANGES
from pipelines.landing import LandingZone
from pipelines.simulator import SimulatorProcess

REPO = Path(__file__).resolve().parents[1]
SCALE = 0.05  # every rate-limit window 20x shorter, in the simulator and the client alike
TODAY = datetime.now(UTC).date()
ALL_EXCHANGE_DAYS = [TODAY - timedelta(days=1), TODAY]
ONE_EXCHANGE = "bitget"  # one request per second per endpoint: the easiest limit to break
ONE_EXCHANGE_DAYS = [TODAY - timedelta(days=n) for n in (4, 3, 2)]
INGESTED = ["ls_ratio", "klines", "open_interest"]
DERIVED = ["heatmap_matrix", "btc_ls", "alt_average", "signal_zones", "divergence"]
DERIVED += ["cross_exchange", "candle_flow", "whale_crowd_now"]
DEADLINE = 600.0  # seconds for the whole walk; it takes a few minutes on 2 cores
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """Poll until `probe` returns something truthy (a condition, not a timed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Dagster:
    url: str
    process: subprocess.Popen[bytes]
    warehouse: Path
    simulator: SimulatorProcess
    log: Path
    landing: Path | None = None  # scaled out: the zone the workers land in

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert "errors" not in answer, answer["errors"]
        return dict(answer["data"])

    def simulator_stats(self) -> dict[str, Any]:
        base = next(iter(self.simulator.base_urls.values())).rsplit("/", 1)[0]
        with urllib.request.urlopen(f"{base}/_sim/stats", timeout=30) as response:
            return dict(json.loads(response.read()))


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module", params=["sqlite", "postgres, scaled out"])
def dagster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dagster]:
    root = tmp_path_factory.mktemp("e2e")
    home = root / "dagster_home"
    home.mkdir()
    warehouse = root / "warehouse" / "lsr.duckdb"
    landing: Path | None = None
    if request.param == "sqlite":
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        storage: dict[str, str] = {}
    else:
        shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
        landing = root / "shared-landing"
        storage = {
            "LSR_DAGSTER_POSTGRES_URL": request.getfixturevalue("postgres_server").new_database(),
            "LSR_FETCH_ONLY": "1",
            "LSR_LANDING": str(landing),
        }
    port, gallery_port = _free_port(), _free_port()
    with SimulatorProcess(rate_limit_scale=SCALE) as simulator:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "LSR_WAREHOUSE": str(warehouse),
            "LSR_GALLERY_URL": f"http://127.0.0.1:{gallery_port}",
            "LSR_RATE_LIMIT_SCALE": str(SCALE),
            "LSR_PERIODS": "1h",
            **simulator.environment,
            **storage,
        }
        log = root / "dagster-dev.log"
        bin_dir = Path(sys.executable).parent
        dagster_cli = bin_dir / "dagster"
        gallery = subprocess.Popen(  # as `make dev` starts it beside the UI
            [str(bin_dir / "lsr"), "gallery", "--port", str(gallery_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(dagster_cli),
                    "dev",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-w",
                    "workspace.yaml",
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole below
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for("the Dagster webserver", lambda: _ready(url), timeout=180)
            running = Dagster(url, process, warehouse, simulator, log, landing)
            _stop_hourly_poll(running)
            yield running
        finally:
            gallery.terminate()
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


SCHEDULE = """
query Schedule {
  scheduleOrError(scheduleSelector: {repositoryLocationName: "lsr",
                  repositoryName: "__repository__", scheduleName: "hourly_poll"}) {
    ... on Schedule { id scheduleState { status } }
  }
}
"""

STOP_SCHEDULE = """
mutation Stop($id: String) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""


def _stop_hourly_poll(dagster: Dagster) -> None:
    """The poll is on by default; it must not fire into the walk if the clock passes :07."""
    schedule = dagster.graphql(SCHEDULE)["scheduleOrError"]
    assert schedule["scheduleState"]["status"] == "RUNNING"  # on from the start, as shipped
    stopped = dagster.graphql(STOP_SCHEDULE, {"id": schedule["id"]})["stopRunningSchedule"]
    assert stopped.get("scheduleState", {}).get("status") == "STOPPED", stopped


LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numCancelable }
  }
}
"""

RUNS = """
query Runs {
  runsOrError(filter: {}) {
    ... on Runs {
      results { runId jobName status startTime endTime tags { key value } }
    }
  }
}
"""

ASSET = """
query Asset($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      partitionStats { numMaterialized numFailed numMaterializing }
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label
          ... on MarkdownMetadataEntry { mdStr }
          ... on UrlMetadataEntry { url }
        }
      }
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            executionForLatestMaterialization { status evaluation { success } }
          }
        }
      }
    }
  }
}
"""


def _launch(dagster: Dagster, days: list[Any], exchanges: list[str], title: str) -> str:
    params = {
        "partitionNames": [f"{day}|{exchange}" for day in days for exchange in exchanges],
        "assetSelection": [{"path": [key]} for key in INGESTED],
        "title": title,
    }
    answer = dagster.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    return str(answer["backfillId"])


RUN_ENDED = ("SUCCESS", "FAILURE", "CANCELED")


def _runs(dagster: Dagster) -> list[dict[str, Any]]:
    runs = dagster.graphql(RUNS)["runsOrError"]["results"]
    for run in runs:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return list(runs)


def _asset(dagster: Dagster, key: str) -> dict[str, Any]:
    return dict(dagster.graphql(ASSET, {"key": {"path": [key]}})["assetNodeOrError"])


@dataclass
class Walk:
    backfills: dict[str, str]  # backfill id -> final status
    runs: list[dict[str, Any]]
    refresh: dict[str, Any]


@pytest.fixture(scope="module")
def walk(dagster: Dagster) -> Walk:
    ids = [
        _launch(dagster, ALL_EXCHANGE_DAYS, list(EXCHANGES), "all exchanges"),
        _launch(dagster, ONE_EXCHANGE_DAYS, [ONE_EXCHANGE], f"{ONE_EXCHANGE} only"),
    ]

    def finished() -> dict[str, str] | None:
        statuses = {
            i: dagster.graphql(BACKFILL, {"id": i})["partitionBackfillOrError"]["status"]
            for i in ids
        }
        return statuses if all(s != "REQUESTED" for s in statuses.values()) else None

    backfills = _wait_for("both backfills to finish", finished)
    if dagster.landing is not None:
        _wait_for(
            "the loader to store every landed fetch",
            lambda: _all_loaded(dagster) and not _loading(dagster),
        )
    ingested_at = max(
        float(r["endTime"])
        for r in _runs(dagster)
        if "dagster/backfill" in r["tags"] or r["jobName"] == "load_landed"
    )

    def refreshed() -> dict[str, Any] | None:
        done = [
            r
            for r in _runs(dagster)
            if r["jobName"] == "refresh_outputs"
            and r["status"] in ("SUCCESS", "FAILURE")
            and float(r["startTime"]) >= ingested_at
        ]
        return done[0] if done else None

    refresh = _wait_for("the sensor's refresh after the backfills", refreshed)

    # The sensor may have queued one more refresh meanwhile (a change noted by the last load
    # after that refresh started): the walk ends when every run it launched has ended.
    def all_ended() -> list[dict[str, Any]] | None:
        runs = _runs(dagster)
        return runs if all(r["status"] in RUN_ENDED for r in runs) else None

    return Walk(backfills, _wait_for("every run to end", all_ended), refresh)


def _loading(dagster: Dagster) -> bool:
    return any(
        r["jobName"] == "load_landed" and r["status"] not in RUN_ENDED for r in _runs(dagster)
    )


def _all_loaded(dagster: Dagster) -> bool:
    """Every landed file noted loaded in the warehouse (None while the loader holds it)."""
    assert dagster.landing is not None
    landed = {f.path for f in LandingZone(str(dagster.landing)).files()}
    try:
        with duckdb.connect(str(dagster.warehouse), read_only=True) as conn:
            rows = conn.execute("SELECT path FROM landed_files WHERE status = 'loaded'").fetchall()
    except (duckdb.IOException, duckdb.CatalogException):  # held by the loader; not made yet
        return False
    return bool(landed) and landed == {path for (path,) in rows}


def test_every_backfill_run_succeeds_and_the_backfills_say_so(walk: Walk) -> None:
    assert set(walk.backfills.values()) == {"COMPLETED_SUCCESS"}
    backfill_runs = [r for r in walk.runs if "dagster/backfill" in r["tags"]]
    # one run per day x exchange partition, as the UI launches them
    assert len(backfill_runs) == len(ALL_EXCHANGE_DAYS) * len(EXCHANGES) + len(ONE_EXCHANGE_DAYS)
    assert {r["status"] for r in walk.runs} == {"SUCCESS"}


def test_one_ingestion_run_per_exchange_at_a_time(walk: Walk) -> None:
    by_exchange: dict[str, list[tuple[float, float]]] = {}
    for run in walk.runs:
        exchange = run["tags"].get("dagster/partition/exchange")
        if exchange:
            by_exchange.setdefault(exchange, []).append((run["startTime"], run["endTime"]))
    assert set(by_exchange) == set(EXCHANGES)
    for exchange, spans in by_exchange.items():
        spans.sort()
        overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
        assert not overlaps, f"{exchange} ran {len(overlaps)} ingestion runs at once"


def test_no_exchange_saw_a_request_over_its_limit(dagster: Dagster, walk: Walk) -> None:
    stats = dagster.simulator_stats()
    refused = {k: n for k, n in stats["statuses"].items() if k.split()[-1] in ("403", "418", "429")}
    assert refused == {}
    over = {k: w for k, w in stats["windows"].items() if w["max_used"] > w["allowed"]}
    assert over == {}
    assert sum(stats["requests"].values()) > 1000  # the walk did fetch


def test_partitions_show_materialized_none_failed(dagster: Dagster, walk: Walk) -> None:
    partitions = len(ALL_EXCHANGE_DAYS) * len(EXCHANGES) + len(ONE_EXCHANGE_DAYS)
    stats = _asset(dagster, "ls_ratio")["partitionStats"]
    assert stats == {"numMaterialized": partitions, "numFailed": 0, "numMaterializing": 0}


def test_every_check_passes_in_the_ui(dagster: Dagster, walk: Walk) -> None:
    results = {}
    for key in ["ls_ratio", "coverage", *DERIVED]:
        for check in _asset(dagster, key)["assetChecksOrError"]["checks"]:
            execution = check["executionForLatestMaterialization"]
            results[f"{key}.{check['name']}"] = execution and (
                execution["status"],
                execution["evaluation"]["success"],
            )
    # rows_valid on each ls_ratio partition, 4 warehouse-wide on coverage, 8 on derived tables
    assert len(results) == 13
    assert results == dict.fromkeys(results, ("SUCCEEDED", True))


def test_the_sensor_refreshed_tables_and_images_after_ingestion(
    dagster: Dagster, walk: Walk
) -> None:
    assert walk.refresh["status"] == "SUCCESS"
    assert walk.refresh["tags"].get("dagster/sensor_name") == "refresh_after_ingestion"
    images = _asset(dagster, "heatmap_images")["assetMaterializations"]
    assert images and images[0]["runId"] == walk.refresh["runId"]
    with duckdb.connect(str(dagster.warehouse), read_only=True) as conn:
        images = conn.execute("SELECT exchange, path FROM heatmap_images").fetchall()
        newest = conn.execute("SELECT max(ts) FROM alt_average").fetchall()[0][0]
    assert {exchange for exchange, _ in images} == {*EXCHANGES, "cross"}
    assert newest.date() >= TODAY  # (a walk that crosses midnight ends on the next day)
    for _, path in images:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_sensor_refresh_keeps_the_parquet_lake(dagster: Dagster, walk: Walk) -> None:
    lake = _asset(dagster, "parquet_lake")["assetMaterializations"]
    assert lake and lake[0]["runId"] == walk.refresh["runId"]
    root = dagster.warehouse.parent / "lake"
    glob = f"{root}/ls_ratio/**/*.parquet"
    with duckdb.connect() as reader:
        read = reader.sql(
            f"SELECT exchange, count(*) FROM read_parquet('{glob}', hive_partitioning = true) "
            "GROUP BY exchange"
        ).fetchall()
    with duckdb.connect(str(dagster.warehouse), read_only=True) as conn:
        stored = conn.execute(
            "SELECT exchange, count(*) FROM ls_ratio GROUP BY exchange"
        ).fetchall()
    assert dict(read) == dict(stored) and set(dict(read)) == set(EXCHANGES)


def test_the_image_preview_shows_inline_and_links_the_gallery(dagster: Dagster, walk: Walk) -> None:
    latest = _asset(dagster, "heatmap_images")["assetMaterializations"][0]
    entries = {e["label"]: e for e in latest["metadataEntries"]}
    preview = entries["preview"]["mdStr"]
    assert len(preview) < 1000  # the UI shows shorter markdown inline, longer behind a link
    image_link = preview[preview.index("(") + 1 : preview.rindex(")")]
    with urllib.request.urlopen(image_link, timeout=30) as response:
        assert response.read()[:8] == b"\x89PNG\r\n\x1a\n"
    with urllib.request.urlopen(entries["gallery"]["url"], timeout=30) as response:
        assert b"<img" in response.read()


def test_scaled_out_the_loader_stored_what_the_workers_landed(dagster: Dagster, walk: Walk) -> None:
    if dagster.landing is None:
        pytest.skip("the embedded walk stores in each ingestion run")
    loads = [r for r in walk.runs if r["jobName"] == "load_landed"]
    assert loads and {r["tags"].get("dagster/sensor_name") for r in loads} == {"load_after_landing"}
    with duckdb.connect(str(dagster.warehouse), read_only=True) as conn:
        per_exchange = dict(
            conn.execute("SELECT exchange, count(*) FROM ls_ratio GROUP BY ALL").fetchall()
        )
    assert set(per_exchange) == set(EXCHANGES) and min(per_exchange.values()) > 0
