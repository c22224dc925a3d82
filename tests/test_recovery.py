"""A run whose worker was killed: Dagster's run monitoring (through our launcher's health
check) fails it, `release_dead_runs` frees its pool slot, and the next run is not blocked."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, asset, materialize
from dagster._core.launcher import WorkerStatus
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from pipelines.processes import process_alive
from pipelines.recovery import LocalRunLauncher, release_dead_runs

REPO = Path(__file__).resolve().parents[1]

# A run that takes the `duckdb` pool slot and then waits for its stdin to close.
HOLDER = """
import sys
import time
from dagster import DagsterInstance, asset, materialize

@asset(pool="duckdb")
def holds_the_slot() -> None:
    print("started", flush=True)
    sys.stdin.read()

materialize([holds_the_slot], instance=DagsterInstance.get())
"""


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """An instance configured as shipped (dagster_home/dagster.yaml) in a fresh folder."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as opened:
        yield opened


def _killed_run(instance: DagsterInstance) -> str:
    """Start a run in another process, wait until its step holds the slot, kill -9 it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "started"
    holder.kill()
    holder.wait()
    (run,) = instance.get_runs()
    return run.run_id


def test_run_monitoring_fails_a_run_whose_worker_was_killed(instance: DagsterInstance) -> None:
    run_id = _killed_run(instance)
    record = instance.get_run_record_by_id(run_id)
    assert record is not None and record.dagster_run.status == DagsterRunStatus.STARTED
    assert isinstance(instance.run_launcher, LocalRunLauncher)
    health = instance.run_launcher.check_run_worker_health(record.dagster_run)
    assert health.status == WorkerStatus.FAILED and "is gone" in (health.msg or "")

    # What the daemon's monitoring loop does with each STARTED run.
    monitor_started_run(instance, None, record, logging.getLogger("test"))  # type: ignore[arg-type]
    failed = instance.get_run_by_id(run_id)
    assert failed is not None and failed.status == DagsterRunStatus.FAILURE


def test_the_next_run_is_not_blocked_by_a_killed_runs_slot(instance: DagsterInstance) -> None:
    run_id = _killed_run(instance)
    claimed = instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
    assert [slot.run_id for slot in claimed] == [run_id]

    assert release_dead_runs(instance) == [run_id]
    assert instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots == []

    @asset(pool="duckdb")
    def writes() -> int:
        return 1

    assert materialize([writes], instance=instance).success  # would wait for ever otherwise
    assert release_dead_runs(instance) == []  # a finished run is never touched


def test_a_zombie_worker_counts_as_dead() -> None:
    """A killed worker whose parent has not reaped it yet still has a pid: it is dead all
    the same."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)  # polling until it has exited (unreaped), not waiting for time
    assert process_alive(os.getpid())
    assert not process_alive(child.pid)
    child.wait()
    assert not process_alive(child.pid)
