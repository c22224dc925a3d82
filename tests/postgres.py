"""A real PostgreSQL server for the tests, started from Debian's server binaries.

`make test` installs the `postgresql` package where it is missing; the server runs from a
temporary data folder on a free loopback port, with trust authentication, for one test session,
and each test that asks gets a database of its own. As root (CI), the server runs as the
`postgres` system user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2


def server_binaries() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


@dataclass(frozen=True)
class PostgresServer:
    port: int

    def url(self, database: str = "postgres") -> str:
        """As LSR_DAGSTER_POSTGRES_URL takes it (psycopg2 reads the plain form too)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"lsr_{uuid.uuid4().hex[:12]}"
        connection = psycopg2.connect(self.dsn())
        try:
            connection.autocommit = True  # CREATE DATABASE refuses a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')  # a name made above, not data
        finally:
            connection.close()
        return self.url(name)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: `make test` installs "
            "them (apt-get install postgresql)"
        )
    folder = Path(tempfile.mkdtemp(prefix="lsr-postgres-"))
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (folder, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    port = _free_port()
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data)]
    _run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"])
    # fsync off: a test server's data need not survive a power cut.
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run([*pg_ctl, "-o", options, "-w", "-l", str(folder / "server.log"), "start"])
    try:
        yield PostgresServer(port)
    finally:
        _run([*pg_ctl, "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _run(command: list[str], *, check: bool = True) -> None:
    subprocess.run(
        _as_server_user(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=check
    )
