"""Reliability figures: a whole `lsr run` under 0/10/30 % faults, and what a reader meets.

`faults`: wall time, requests and faults per fault rate, and whether the stored closed buckets
equal the fault-free run's. `readers`: a second process opens the DuckDB file read-only every
50 ms during a demo run; the seconds it was locked out are what an analyst's notebook sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.simulator import FaultConfig, SimulatorProcess

TRANSIENT = ("429", "5xx", "truncated", "busy", "reset", "timeout")
SCALE = 0.05
TABLES = ("ls_ratio", "klines", "open_interest")


@dataclass
class FaultRun:
    rate: float
    seconds: float
    exit_code: int
    requests: int
    faults: int
    rows: dict[str, int]
    identical: bool | None = None  # closed buckets equal the fault-free run's


def _lsr_run(env: dict[str, str], days: int) -> tuple[float, int]:
    lsr = Path(sys.executable).with_name("lsr")
    started = time.monotonic()
    done = subprocess.run(
        [str(lsr), "run", "--days", str(days)], env=env, capture_output=True, check=False
    )
    return time.monotonic() - started, done.returncode


def _fault_run(rate: float, days: int, folder: Path, seed: int) -> FaultRun:
    faults = FaultConfig(
        rate=rate, kinds=TRANSIENT, seed=seed, repeat=0.5, max_in_a_row=3, timeout_seconds=20
    )
    warehouse = folder / f"faults-{rate:g}" / "lsr.duckdb"
    with SimulatorProcess(rate_limit_scale=SCALE, faults=faults) as sim:
        env = {**os.environ, "LSR_WAREHOUSE": str(warehouse), "LSR_RATE_LIMIT_SCALE": str(SCALE)}
        env |= sim.environment
        env.pop("DAGSTER_HOME", None)
        seconds, code = _lsr_run(env, days)
        root = next(iter(sim.base_urls.values())).rsplit("/", 1)[0]
        with urllib.request.urlopen(f"{root}/_sim/stats") as answer:  # loopback
            stats = json.load(answer)
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
    return FaultRun(
        rate, seconds, code, sum(stats["requests"].values()), sum(stats["faults"].values()), rows
    )


def _same_closed_buckets(clean: Path, other: Path, before: str) -> bool:
    """Rows of buckets closed before `before` in both warehouses, compared without fetched_at."""
    with duckdb.connect(":memory:") as conn:
        conn.execute("ATTACH ? AS a (READ_ONLY)", [str(clean)])
        conn.execute("ATTACH ? AS b (READ_ONLY)", [str(other)])
        for table in TABLES:
            for left, right in (("a", "b"), ("b", "a")):
                extra = conn.execute(
                    f"SELECT count(*) FROM (SELECT * EXCLUDE (fetched_at) FROM {left}.{table} "
                    f"WHERE ts < ?::TIMESTAMP EXCEPT SELECT * EXCLUDE (fetched_at) FROM "
                    f"{right}.{table} WHERE ts < ?::TIMESTAMP)",
                    [before, before],
                ).fetchall()[0][0]
                if extra:
                    return False
    return True


def faults(days: int = 1, rates: tuple[float, ...] = (0.0, 0.1, 0.3)) -> list[FaultRun]:
    with tempfile.TemporaryDirectory(prefix="lsr-bench-") as tmp:
        folder = Path(tmp)
        # Buckets still open while the runs go on may differ between runs; compare the rest.
        hour = time.strftime("%Y-%m-%d %H:00:00", time.gmtime(time.time() - 3600))
        runs = [_fault_run(rate, days, folder, seed=17 + i) for i, rate in enumerate(rates)]
        clean = folder / f"faults-{rates[0]:g}" / "lsr.duckdb"
        for run in runs[1:]:
            other = folder / f"faults-{run.rate:g}" / "lsr.duckdb"
            run.identical = _same_closed_buckets(clean, other, hour)
    return runs


def faults_report(runs: list[FaultRun], days: int) -> str:
    lines = [
        f"lsr run --days {days}, six exchanges, simulator at {SCALE:g}x windows, faults "
        f"{'/'.join(TRANSIENT)} in bursts of up to 3",
        f"{'faults':>7} {'wall s':>8} {'exit':>5} {'requests':>9} {'faulted':>8}  identical",
    ]
    for run in runs:
        same = "-" if run.identical is None else ("yes" if run.identical else "NO")
        lines.append(
            f"{run.rate:>6.0%} {run.seconds:>8.1f} {run.exit_code:>5} {run.requests:>9,} "
            f"{run.faults:>8,}  {same}"
        )
    return "\n".join(lines)


@dataclass
class ReaderFigures:
    run_seconds: float
    exit_code: int
    attempts: int
    refused: int
    locked_out_seconds: float
    longest_seconds: float


def readers(days: int = 1) -> ReaderFigures:
    """Run `lsr demo` while this process opens the file read-only every 50 ms."""
    with tempfile.TemporaryDirectory(prefix="lsr-bench-") as tmp:
        warehouse = Path(tmp) / "lsr.duckdb"
        env = {**os.environ, "LSR_WAREHOUSE": str(warehouse)}
        env.pop("DAGSTER_HOME", None)
        lsr = Path(sys.executable).with_name("lsr")
        started = time.monotonic()
        demo = subprocess.Popen(
            [str(lsr), "demo", "--days", str(days)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        attempts = refused = 0
        locked = longest = 0.0
        refused_since: float | None = None
        while demo.poll() is None:
            now = time.monotonic()
            if warehouse.exists():
                attempts += 1
                try:
                    with duckdb.connect(str(warehouse), read_only=True) as conn:
                        conn.execute("SELECT 1").fetchall()
                    if refused_since is not None:
                        locked += now - refused_since
                        longest = max(longest, now - refused_since)
                        refused_since = None
                except duckdb.Error:
                    refused += 1
                    refused_since = refused_since if refused_since is not None else now
            time.sleep(0.05)
        return ReaderFigures(
            time.monotonic() - started, demo.returncode, attempts, refused, locked, longest
        )


def readers_report(figures: ReaderFigures, days: int) -> str:
    share = figures.refused / max(figures.attempts, 1)
    return (
        f"reader during `lsr demo --days {days}` ({figures.run_seconds:.0f} s, exit "
        f"{figures.exit_code}): {figures.refused}/{figures.attempts} read-only opens refused "
        f"({share:.0%}); locked out {figures.locked_out_seconds:.1f} s in all, longest "
        f"{figures.longest_seconds:.1f} s"
    )
