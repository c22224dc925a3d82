"""The Dagster instance: SQLite files by default, Postgres with one environment variable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg2
import pytest
import yaml

from pipelines.config import REPO_ROOT
from pipelines.definitions import defs
from pipelines.runner import POSTGRES_HOME, instance
from tests.partition_runs import QUIET
from tests.postgres import PostgresServer

EMBEDDED = REPO_ROOT / "dagster_home" / "dagster.yaml"
POSTGRES = REPO_ROOT / "deploy" / "postgres" / "dagster.yaml"


def test_without_the_variable_runs_are_not_sent_to_postgres(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("LSR_DAGSTER_POSTGRES_URL", raising=False)
    with instance() as embedded:
        assert "Postgres" not in type(embedded.run_storage).__name__


def test_with_the_variable_runs_events_and_schedules_live_in_postgres(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_server.new_database()
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("LSR_DAGSTER_POSTGRES_URL", url)
    monkeypatch.setenv("LSR_WAREHOUSE", str(tmp_path / "w.duckdb"))
    with instance() as shared:
        storages = (shared.run_storage, shared.event_log_storage, shared.schedule_storage)
        assert [type(s).__name__ for s in storages] == [
            "PostgresRunStorage",
            "PostgresEventLogStorage",
            "PostgresScheduleStorage",
        ]
        result = defs.resolve_job_def("load_landed").execute_in_process(
            instance=shared, run_config=QUIET
        )
        assert result.success
    # Read back by another client, as a second host would see it.
    with (
        psycopg2.connect(url.replace("+psycopg2", "")) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (result.run_id,))
        assert cursor.fetchone()[0] > 5  # type: ignore[index]


def test_the_postgres_instance_keeps_every_other_rule_of_the_embedded_one() -> None:
    embedded, postgres = yaml.safe_load(EMBEDDED.read_text()), yaml.safe_load(POSTGRES.read_text())
    storage_keys = {"storage", "event_log_storage", "run_storage", "schedule_storage"}
    assert {k: v for k, v in embedded.items() if k not in storage_keys} == {
        k: v for k, v in postgres.items() if k not in storage_keys
    }
    assert postgres["storage"]["postgres"]["postgres_url"] == {"env": "LSR_DAGSTER_POSTGRES_URL"}
    assert (POSTGRES_HOME / "dagster.yaml").resolve() == POSTGRES.resolve()


@pytest.mark.parametrize(
    ("variable", "home"), [("", "dagster_home"), ("postgresql://x", "postgres")]
)
def test_make_points_dagster_home_at_the_instance_the_variable_chooses(
    variable: str, home: str
) -> None:
    database = subprocess.run(
        ["make", "-pn", "lint", f"LSR_DAGSTER_POSTGRES_URL={variable}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    chosen = next(line for line in database.splitlines() if line.startswith("DAGSTER_HOME :="))
    assert Path(chosen.split(":=", 1)[1].strip()).name == home


def test_a_url_for_the_wrong_driver_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("LSR_DAGSTER_POSTGRES_URL", "postgresql://u@127.0.0.1/dagster")
    with pytest.raises(ValueError, match=r"must begin with postgresql\+psycopg2://"):
        instance()
    made = subprocess.run(
        ["make", "-n", "lint", "LSR_DAGSTER_POSTGRES_URL=postgresql://u@127.0.0.1/dagster"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode != 0 and "must begin with postgresql+psycopg2://" in made.stderr
