"""Runs left behind by a killed process: found by their worker's pid, failed, slots freed.

A run worker killed with SIGKILL (or a host that lost power) never reports its end: the run
stays STARTED in the Dagster instance and keeps the concurrency slot of pool `duckdb`, so every
later run waits for that slot forever. Both the daemon (through `LocalRunLauncher`'s health
check and Dagster's run monitoring) and `lsr run` (before it starts) use `release_dead_runs`.
"""

from __future__ import annotations

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

from pipelines.processes import process_alive

# Statuses of a run that a live worker process would still move on.
UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that executes the run's steps, from its engine events."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT, ascending=False, limit=50
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            return int(str(pid.value))
    return None


def worker_health(instance: DagsterInstance, run: DagsterRun) -> CheckRunHealthResult:
    pid = worker_pid(instance, run.run_id)
    if pid is None:
        return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no worker pid recorded yet")
    if process_alive(pid):
        return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
    return CheckRunHealthResult(
        WorkerStatus.FAILED, f"run worker pid {pid} is gone (killed?)", run_worker_id=str(pid)
    )


def release_dead_runs(instance: DagsterInstance) -> list[str]:
    """Fail every unfinished run whose worker process died, and free its concurrency slots.

    A pid is judged on this host, which is where the default launcher and `lsr` start their
    workers; an instance shared by several hosts needs its launcher's own health check instead.
    Runs that have not recorded a worker yet are left to Dagster's start timeout."""
    released = []
    for record in instance.get_run_records(RunsFilter(statuses=UNFINISHED)):
        run = record.dagster_run
        health = worker_health(instance, run)
        if health.status != WorkerStatus.FAILED:
            continue
        instance.report_run_failed(run, f"Marked failed by lsr: {health.msg}")
        released.append(run.run_id)
    for run_id in instance.event_log_storage.get_concurrency_run_ids():
        finished = instance.get_run_by_id(run_id)
        if finished is None or finished.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return released


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher (a run worker process beside the code server), plus the
    health check that lets run monitoring fail a run whose worker was killed."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        return worker_health(self._instance, run)
