# The front door: README and CI use these same targets.
# Each target installs what it needs into .venv/ on first use (from the pinned requirements.lock).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
UV_VERSION := 0.13.9
# The Dagster instance: SQLite files in dagster_home/, or Postgres when LSR_DAGSTER_POSTGRES_URL
# is set (dagster_home/postgres/dagster.yaml is deploy/postgres/dagster.yaml).
export DAGSTER_HOME := $(CURDIR)/dagster_home$(if $(LSR_DAGSTER_POSTGRES_URL),/postgres)
# SQLAlchemy 2.1 opens a plain postgresql:// URL with psycopg 3, which dagster-postgres's SQL
# does not run on: the URL names the psycopg2 driver dagster-postgres installs.
ifneq ($(filter-out postgresql+psycopg2://%,$(LSR_DAGSTER_POSTGRES_URL)),)
$(error LSR_DAGSTER_POSTGRES_URL must begin with postgresql+psycopg2:// (user:password@host:port/database))
endif

.PHONY: install run demo test lint format dev bench lock clean postgres-server

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	# Bytecode now: where PYTHONDONTWRITEBYTECODE is set (it is on our build machine) Python would compile
	# every imported module again in every process, which doubles the start of each Dagster run.
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

run: install  ## fetch the last 7 days from the six exchanges, derive, render
	$(BIN)/lsr run

demo: install  ## the same against the built-in exchange simulator (no internet)
	$(BIN)/lsr demo

test: install lint postgres-server  ## lint, type-check, then the test suite (network blocked but loopback)
	$(BIN)/python -m pytest

# The tests start their own PostgreSQL server (tests/postgres.py) from Debian's binaries.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
	  echo "installing Debian's postgresql package (server binaries for the tests)"; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

dev: install  ## the Dagster UI on http://127.0.0.1:3000 (with the daemon), images on :3001
	$(BIN)/lsr gallery --port 3001 & gallery=$$!; trap 'kill $$gallery 2>/dev/null' EXIT INT TERM; \
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

bench: install  ## benchmarks against the simulator; figures printed, never asserted
	$(BIN)/python -m bench

lock:  ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra k8s --python-version 3.11 -o requirements.lock

clean:
	rm -rf warehouse/*.duckdb warehouse/*.wal warehouse/*.lock warehouse/landing warehouse/images warehouse/lake warehouse/.rate-limits
