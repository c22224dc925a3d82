"""The reliability suite: faults, crashes, readers, bad input. Each compares with a clean run
or checks that the next run finishes; none sleeps for timing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from pipelines.cli import main
from pipelines.exchanges import EXCHANGES, connector
from pipelines.http import HttpClient
from pipelines.processes import process_alive
from pipelines.resources import PipelineSettings
from pipelines.simulator import FaultConfig, SimulatorThread
from pipelines.summary import ensure_warehouse_kind
from pipelines.warehouse import OriginConflict
from tests.partition_runs import SCALE, YESTERDAY, ingest
from tests.partition_runs import point_at as _point_at

REPO = Path(__file__).resolve().parents[1]
# Everything an exchange or the network does that means "ask again" (timeouts are left to
# tests/test_http.py: the client waits 15 s for each).
TRANSIENT = ("429", "5xx", "truncated", "busy", "reset")
STORED = {
    "ls_ratio": "SELECT * EXCLUDE (fetched_at) FROM ls_ratio ORDER BY ALL",
    "klines": "SELECT * EXCLUDE (fetched_at) FROM klines ORDER BY ALL",
    "open_interest": "SELECT * EXCLUDE (fetched_at) FROM open_interest ORDER BY ALL",
}


def _ingest(
    warehouse: Path, exchange: str, period: str = "4h", instance: DagsterInstance | None = None
) -> Any:
    """Yesterday's partition of one exchange, as Dagster runs it."""
    settings = PipelineSettings(warehouse=str(warehouse), periods=[period])
    return ingest(settings, exchange, instance=instance)


def _ingest_all(warehouse: Path) -> list[str]:
    """One 4h partition per exchange; the exchanges whose run failed."""
    return [exchange for exchange in EXCHANGES if not _ingest(warehouse, exchange).success]


def _stored(warehouse: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return {table: conn.sql(sql).df() for table, sql in STORED.items()}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, pd.DataFrame]]:
    warehouse = tmp_path_factory.mktemp("clean") / "clean.duckdb"
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        SimulatorThread(port=0, rate_limit_scale=SCALE) as sim,
    ):
        _point_at(monkeypatch, sim)
        assert _ingest_all(warehouse) == []
    yield _stored(warehouse)


@pytest.mark.parametrize(("rate", "seed"), [(0.1, 11), (0.3, 29)])
def test_transient_faults_in_bursts_leave_the_warehouse_as_a_clean_run_does(
    clean_run: dict[str, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rate: float,
    seed: int,
) -> None:
    warehouse = tmp_path / "faulty.duckdb"
    faults = FaultConfig(rate=rate, kinds=TRANSIENT, seed=seed, repeat=0.7, max_in_a_row=3)
    with SimulatorThread(port=0, rate_limit_scale=SCALE, faults=faults) as sim:
        _point_at(monkeypatch, sim)
        assert _ingest_all(warehouse) == []  # no partition needs a person
        windows = sim.stats.as_dict()["windows"]
        injected = {kind for (_, kind) in sim.stats.faults}
    assert injected == set(TRANSIENT)
    # Retries stay inside every limit the exchange counts (the simulator would refuse, too).
    assert all(w["max_used"] <= w["allowed"] for w in windows.values()), windows
    stored = _stored(warehouse)
    for table, frame in clean_run.items():
        assert len(frame) > 0, table
        pd.testing.assert_frame_equal(stored[table], frame, obj=table)


async def test_every_request_on_the_wire_passed_the_rate_limiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp re-sends a request by itself after a connection reset; the limiter must see
    each one, or a 1-per-second endpoint gets two in a second."""
    faults = FaultConfig(rate=0.5, kinds=("reset",), seed=5)
    with SimulatorThread(port=0, rate_limit_scale=SCALE, faults=faults) as sim:
        async with HttpClient(rate_limit_scale=SCALE, base_urls=sim.base_urls) as client:
            for _ in range(8):
                await connector("bitget").fetch_instruments(client)
        received = sum(sim.stats.requests.values())
        resets = sum(sim.stats.faults.values())
    stats = client.stats()["bitget"]
    assert resets > 0 and stats["retries"] >= resets
    assert stats["sent"] == stats["requests"] == received


# ---------------------------------------------------------------------------------------------
# Simulated data never mixes with real data


def test_the_dagster_path_refuses_simulated_data_for_a_real_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "real.duckdb"
    ensure_warehouse_kind(warehouse, simulated=False)  # what `lsr run` claims before fetching
    with SimulatorThread(port=0, rate_limit_scale=SCALE, exchanges=("okx",)) as sim:
        _point_at(monkeypatch, sim)
        result = _ingest(warehouse, "okx", "1d")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_failure)
    reason = failure.step_failure_data.user_failure_data.description
    assert reason.startswith(f"okx {YESTERDAY}: refusing to write simulated data into ")
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM ls_ratio), (SELECT count(*) FROM partition_log), "
            "(SELECT origin FROM warehouse_origin)"
        ).fetchall()
    assert counts == [(0, 0, "exchanges")]


def test_the_first_writer_decides_what_a_new_warehouse_holds(tmp_path: Path) -> None:
    warehouse = tmp_path / "new.duckdb"
    ensure_warehouse_kind(warehouse, simulated=True)
    ensure_warehouse_kind(warehouse, simulated=True)  # the same kind again: fine
    with pytest.raises(OriginConflict, match="refusing to write exchanges data"):
        ensure_warehouse_kind(warehouse, simulated=False)


# ---------------------------------------------------------------------------------------------
# Bad input: refused before any fetch, in one line that says what is wrong and what is accepted


def _lsr(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusal
        code = int(exit_.code or 0)
    err = capsys.readouterr().err.strip()
    return code, err.splitlines()[-1] if err else ""


RENDER_OKX = ["render", "--exchange", "okx", "--metric", "global_account"]


@pytest.fixture
def unreachable_exchanges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any fetch would fail loudly: nothing listens on port 9."""
    for exchange in EXCHANGES:
        monkeypatch.setenv(f"LSR_{exchange.upper()}_BASE_URL", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--days", "-1"], "-1 is outside 0 .. "),
        (["run", "--days", "100000"], "100000 is outside 0 .. "),
        (["run", "--days", "week"], "'week' is not a whole number of days"),
        (["run", "--exchange", "kraken"], "invalid choice: 'kraken'"),
        ([*RENDER_OKX, "--period", "7m", "--range", "30d"], "invalid choice: '7m'"),
        ([*RENDER_OKX, "--period", "1h", "--range", "month"], "'month' is not a range such as 30d"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], warehouse_file: Path
) -> None:
    code, line = _lsr(argv, capsys)
    assert code == 2 and message in line
    assert not warehouse_file.exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LSR_PERIODS", "1h,7m", "LSR_PERIODS names unknown periods ['7m']; known: ['5m'"),
        ("LSR_UNIVERSE", "coins: [BTC, ETH, btc]", "coins listed twice: BTC"),
        ("LSR_UNIVERSE", "coins: []", "`coins:` is empty"),
        ("LSR_UNIVERSE", "coins: [BTC\n  - ETH", "cannot read it (line 2)"),
        ("LSR_UNIVERSE", "symbols: [BTC]", "expected a mapping with a `coins:` list"),
        ("LSR_UNIVERSE", "coins: [BTC, 'E TH']", "'E TH' is not a coin symbol"),
    ],
)
@pytest.mark.usefixtures("unreachable_exchanges")
def test_bad_settings_stop_the_run_before_the_first_request(
    variable: str,
    value: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    warehouse_file: Path,
) -> None:
    if variable == "LSR_UNIVERSE":
        value = str(_write(tmp_path / "universe.yaml", value))
    monkeypatch.setenv(variable, value)
    code, line = _lsr(["run", "--days", "0"], capsys)
    assert code == 1 and line.startswith("lsr: error: ") and message in line
    assert not warehouse_file.exists()


def _foreign_duckdb(path: Path) -> Path:
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE ls_ratio (id INTEGER, note VARCHAR)")
        conn.execute("COMMENT ON TABLE ls_ratio IS 'the team''s own table'")
    return path


def _sqlite(path: Path) -> Path:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir() or p, "is a directory"),
        (lambda p: p.write_bytes(bytes(range(256)) * 8) and p, "is not DuckDB"),
        (_sqlite, "is a SQLite database"),
        (_foreign_duckdb, "has a table ls_ratio that is not this pipeline's (it lacks coin,"),
    ],
)
@pytest.mark.usefixtures("unreachable_exchanges")
def test_a_warehouse_path_that_is_not_ours_is_refused_and_left_untouched(
    make: object,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    target = make(tmp_path / "w.duckdb")  # type: ignore[operator]
    monkeypatch.setenv("LSR_WAREHOUSE", str(target))
    before = _fingerprint(target)
    code, line = _lsr(["run", "--days", "0"], capsys)
    assert code == 1 and message in line, line
    assert _fingerprint(target) == before
    assert "held by another process" not in line


def _fingerprint(path: Path) -> object:
    if path.is_dir():
        return sorted(p.name for p in path.iterdir())
    return path.read_bytes()


def test_a_foreign_tables_comment_survives(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = _foreign_duckdb(tmp_path / "theirs.duckdb")
    monkeypatch.setenv("LSR_WAREHOUSE", str(target))
    assert _lsr(["run", "--days", "0"], capsys)[0] == 1
    with duckdb.connect(str(target), read_only=True) as conn:
        rows = conn.execute(
            "SELECT comment FROM duckdb_tables() WHERE table_name = 'ls_ratio'"
        ).fetchall()
    assert rows == [("the team's own table",)]


@pytest.mark.parametrize("out", ["../../elsewhere/x.png", "../x.png", "btc.jpg"])
def test_render_keeps_a_relative_out_path_inside_the_images_folder(
    out: str, capsys: pytest.CaptureFixture[str], warehouse_file: Path
) -> None:
    code, line = _lsr([*RENDER_OKX, "--period", "1h", "--range", "7d", "--out", out], capsys)
    assert code == 1 and f"--out {out}" in line
    assert not list(warehouse_file.parent.parent.rglob("x.png"))


# ---------------------------------------------------------------------------------------------
# kill -9 in every phase, then a run that must finish


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid`, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _gone(pids: set[int]) -> bool:
    return not any(process_alive(pid) for pid in pids)


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 240.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.05)  # polling a condition, not waiting for time to pass


class _Demo:
    """`lsr demo` for one exchange, yesterday and today, in its own process, output collected."""

    def __init__(self, env: dict[str, str]) -> None:
        lsr = Path(sys.executable).with_name("lsr")
        command = [str(lsr), "demo", "--exchange", "okx", "--days", "1"]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for chunk in iter(lambda: self.process.stdout.read(1), ""):  # type: ignore[union-attr]
            self.output.append(chunk)

    def said(self, text: str) -> bool:
        return text in "".join(self.output)

    def kill_when(self, condition: Callable[[], bool], phase: str) -> None:
        _wait_for(lambda: condition() or self.process.poll() is not None, phase)
        assert self.process.poll() is None, f"finished before {phase}: {''.join(self.output)}"
        family = _children(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        _wait_for(lambda: _gone(family), f"the children of a run killed during {phase} to die", 30)

    def finish(self) -> str:
        self.process.wait(timeout=600)
        self._reader.join(timeout=10)
        return "".join(self.output)


def test_a_run_killed_in_any_phase_blocks_nothing_and_the_next_run_finishes(
    tmp_path: Path,
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    warehouse = tmp_path / "w" / "lsr.duckdb"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LSR_WAREHOUSE": str(warehouse),
        "LSR_PERIODS": "1h",
    }
    landing = warehouse.parent / "landing"
    images = warehouse.parent / "images"
    phases: list[tuple[str, Callable[[_Demo], bool]]] = [
        ("fetch", lambda _: any(warehouse.parent.glob(".rate-limits/*.lock"))),
        ("write", lambda _: any(landing.rglob("*.parquet"))),
        ("derive", lambda demo: demo.said("ingest exchanges: 100%")),
        ("render", lambda _: any(images.rglob("*.png"))),
    ]
    for phase, reached in phases:
        demo = _Demo(env)
        demo.kill_when(lambda demo=demo, reached=reached: reached(demo), phase)
    last = _Demo(env)
    output = last.finish()
    assert last.process.returncode == 0, output
    assert "released" in output  # the killed runs were failed and their slots freed
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        statuses = conn.execute("SELECT DISTINCT status FROM partition_log").fetchall()
        images_made = conn.execute("SELECT count(*) FROM heatmap_images").fetchall()[0][0]
    assert {s for (s,) in statuses} <= {"ok", "empty", "unavailable"}
    assert images_made > 0


# ---------------------------------------------------------------------------------------------
# A reader holding the file: the pipeline waits, then keeps the data for later; nothing is lost


@contextmanager
def _reader_holding(warehouse: Path) -> Iterator[None]:
    """Another program (a notebook) with the DuckDB file open until the block ends."""
    hold = "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
    hold += "print('held', flush=True); sys.stdin.read()"
    reader = subprocess.Popen(
        [sys.executable, "-c", hold, str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdin is not None
    try:
        assert reader.stdout.readline().strip() == "held"
        yield
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)


@pytest.mark.parametrize("stored_by", ["the next run", "lsr reload"])
def test_a_fetch_that_met_a_held_file_waits_and_is_stored_later(
    stored_by: str,
    clean_run: dict[str, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    warehouse = tmp_path / "w.duckdb"
    monkeypatch.setenv("LSR_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("LSR_LOCK_WAIT_SECONDS", "1")
    ensure_warehouse_kind(warehouse, simulated=True)
    instance = DagsterInstance.ephemeral()
    with SimulatorThread(port=0, rate_limit_scale=SCALE) as sim:
        _point_at(monkeypatch, sim)
        with _reader_holding(warehouse):
            blocked = _ingest(warehouse, "okx", instance=instance)
        assert not blocked.success
        failure = next(e for e in blocked.all_events if e.is_failure)
        reason = failure.step_failure_data.user_failure_data.description
        assert "stayed busy" in reason or "held by another process" in reason
        assert "waits in" in reason and "lsr reload" in reason
        waiting = PipelineSettings(warehouse=str(warehouse)).landing_zone().files()
        assert len(waiting) == 1 and waiting[0].path in reason
        if stored_by == "the next run":  # of that exchange: one okx run at a time
            assert _ingest(warehouse, "okx", instance=instance).success
        else:
            assert main(["reload"]) == 0
            assert f"stored {waiting[0].path}" in capsys.readouterr().out
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        noted = dict(conn.execute("SELECT path, status FROM landed_files").fetchall())
    assert noted[waiting[0].path] == "loaded" and set(noted.values()) == {"loaded"}
    okx = clean_run["ls_ratio"].query("exchange == 'okx'").reset_index(drop=True)
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        stored = conn.sql(
            f"{STORED['ls_ratio'].split(' ORDER')[0]} WHERE exchange = 'okx' ORDER BY ALL"
        ).df()
    pd.testing.assert_frame_equal(stored, okx)
    if stored_by == "the next run":  # the partition grid shows where it came from
        events = instance.fetch_materializations(AssetKey("ls_ratio"), limit=10).records
        sources = [e.asset_materialization.metadata.get("stored_from") for e in events]
        assert any(s is not None and s.value == waiting[0].path for s in sources)


def test_a_partition_that_still_fails_is_run_again_by_dagster_before_anyone_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage longer than the client's six attempts: the step fails, Dagster's retry
    policy runs it again after its delay, and the partition ends materialized."""
    outage = FaultConfig(rate=1.0, kinds=("busy",), first_requests=6)  # the instrument list
    warehouse = tmp_path / "w.duckdb"
    with SimulatorThread(
        port=0, rate_limit_scale=SCALE, faults=outage, exchanges=("bitget",)
    ) as sim:
        _point_at(monkeypatch, sim)
        result = _ingest(warehouse, "bitget", "1d")
        busy_answers = sim.stats.faults[("bitget", "busy")]
    assert result.success
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retried) == 1 and busy_answers == 6
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM ls_ratio").fetchall()[0][0] > 0
