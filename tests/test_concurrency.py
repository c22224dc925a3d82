"""Writers in separate processes queue on the warehouse; none corrupts or locks out another."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.warehouse import connect, upsert
from schemas.ls_ratio import KEY


def _write(path: str, exchange: str, rows: int) -> None:
    frame = pd.DataFrame(
        {
            "exchange": exchange,
            "coin": "BTC",
            "instrument": "BTCUSDT",
            "metric": "global_account",
            "period": "1h",
            "ts": pd.date_range("2026-01-01", periods=rows, freq="h"),
            "long_share": 0.6,
            "short_share": 0.4,
            "ratio": 1.5,
            "fetched_at": pd.Timestamp("2026-01-02"),
        }
    )
    for start in range(0, rows, 50):  # many short transactions, interleaving with the others
        with connect(Path(path)) as conn:
            upsert(conn, "ls_ratio", frame.iloc[start : start + 50], KEY)


def test_parallel_writers_from_separate_processes_all_land(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    spawn = multiprocessing.get_context("spawn")
    writers = [
        spawn.Process(target=_write, args=(str(path), exchange, 500))
        for exchange in ("binance", "bybit", "okx", "gate")
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0, 0, 0]
    with duckdb.connect(str(path), read_only=True) as conn:
        counts = dict(conn.sql("SELECT exchange, count(*) FROM ls_ratio GROUP BY 1").fetchall())
    assert counts == {"binance": 500, "bybit": 500, "okx": 500, "gate": 500}
