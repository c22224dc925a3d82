"""The Binance Vision `metrics` archive parser, on real rows of every number-format era.

The 2020-09-01 file head is real (tests/payloads/binance_archive/); the other eras' rows are
quoted from real files of those eras (surveyed by others in 2026) and are used unchanged:
where a quotation stops ("..."), the remaining fields are left blank, which is itself a shape
the archive has.
"""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.errors import PayloadError
from pipelines.exchanges.base import Window
from pipelines.exchanges.binance_archive import (
    HEADER,
    SLOT_STARTS_AT_LABEL,
    SNAPSHOT_AT_LABEL,
    ArchiveDay,
    ArchiveWindow,
    oi_rows,
    parse_metrics,
    read_metrics,
    settle,
)
from pipelines.exchanges.binance_archive import path as archive_path
from pipelines.resources import PipelineSettings
from pipelines.simulator import SimulatorThread, series
from pipelines.simulator.binance_archive import BAD_CHECKSUM
from pipelines.warehouse import LS_KEY, REST_WINS, connect, upsert
from tests.partition_runs import SCALE, ingest, point_at

PAYLOADS = Path(__file__).parents[1] / "payloads" / "binance_archive"
HEAD_2020 = (PAYLOADS / "um-BTCUSDT-metrics-2020-09-01-head.csv").read_text()


def csv_of(*lines: str) -> str:
    return ",".join(HEADER) + "\n" + "\n".join(lines) + "\n"


def value(frame: pd.DataFrame, metric: str, ts: str, column: str = "source_ratio") -> float:
    row = frame[(frame["metric"] == metric) & (frame["ts"] == pd.Timestamp(ts))]
    assert len(row) == 1, f"{metric} {ts}: {len(row)} rows"
    return float(row[column].iloc[0])


def test_the_2020_file_gives_each_kind_its_column_exactly() -> None:
    rows = parse_metrics(HEAD_2020, instrument="BTCUSDT")
    first = rows[rows["create_time"] == pd.Timestamp("2020-09-01 00:05")]
    by_kind = dict(zip(first["metric"], first["source_ratio"], strict=True))
    assert by_kind == {
        "top_account": 1.17905012,
        "top_position": 1.22928510,
        "global_account": 1.35924435,
        "taker_volume": 0.85063183,
    }
    assert set(rows["period"]) == {"5m"} and set(rows["exchange"]) == {"binance"}
    assert set(rows["coin"]) == {"BTC"}


def test_shares_follow_from_the_ratio_and_give_it_back() -> None:
    rows = parse_metrics(HEAD_2020, instrument="BTCUSDT")
    r = 1.35924435
    assert value(rows, "global_account", "2020-09-01 00:05", "long_share") == pytest.approx(
        r / (1 + r), rel=1e-15
    )
    assert value(rows, "global_account", "2020-09-01 00:05", "short_share") == pytest.approx(
        1 / (1 + r), rel=1e-15
    )
    assert value(rows, "global_account", "2020-09-01 00:05", "ratio") == pytest.approx(r, rel=1e-12)


def test_one_row_per_line_and_kind_twins_included() -> None:
    """The 2020 era published whole days twice; the parser keeps every line, `settle` collapses."""
    rows = parse_metrics(HEAD_2020, instrument="BTCUSDT")
    assert len(rows) == 3 * 4
    settled, conflicts = settle(rows, ["metric", "ts"])
    assert len(settled) == 2 * 4 and conflicts == 0


def test_before_the_switch_a_label_is_the_snapshot_and_the_end_of_the_taker_flow() -> None:
    rows = parse_metrics(HEAD_2020, instrument="BTCUSDT")
    assert set(rows["label_convention"]) == {SNAPSHOT_AT_LABEL}
    assert value(rows, "top_position", "2020-09-01 00:05") == 1.22928510
    # Taker flow of [23:55, 00:00) is stamped, like REST taker rows, with its start.
    assert value(rows, "taker_volume", "2020-09-01 00:00") == 0.85063183


def test_from_2026_06_25_a_label_is_the_start_of_the_slot() -> None:
    """binance-public-data #491: the 00:00 row of the 25th holds the 00:05 snapshot."""
    after = parse_metrics(
        csv_of(
            "2026-06-25 00:00:00,BTCUSDT,83624.198,8736988614.448706,1.23458273,1.56163700,1.1,0.9"
        ),
        instrument="BTCUSDT",
    )
    assert set(after["label_convention"]) == {SLOT_STARTS_AT_LABEL}
    assert value(after, "top_account", "2026-06-25 00:05") == 1.23458273
    assert value(after, "taker_volume", "2026-06-25 00:00") == 0.9


def test_the_duplicate_midnight_label_at_the_switch_is_two_different_snapshots() -> None:
    closing = parse_metrics(
        csv_of(
            "2026-06-24 23:55:00,BTCUSDT,1,1,1.30,1.30,1.30,1.30",
            "2026-06-25 00:00:00,BTCUSDT,1,1,1.40,1.40,1.40,1.40",
        ),
        instrument="BTCUSDT",
        file_day=date(2026, 6, 24),
    )
    opening = parse_metrics(
        csv_of("2026-06-25 00:00:00,BTCUSDT,1,1,1.50,1.50,1.50,1.50"),
        instrument="BTCUSDT",
        file_day=date(2026, 6, 25),
    )
    settled, conflicts = settle(pd.concat([closing, opening]), ["metric", "ts"])
    assert conflicts == 0
    assert value(settled, "global_account", "2026-06-25 00:00") == 1.40
    assert value(settled, "global_account", "2026-06-25 00:05") == 1.50


def test_the_file_day_is_read_from_most_labels_when_not_given() -> None:
    """An old-layout file runs 00:05 .. next 00:00: its closing label must not decide."""
    rows = parse_metrics(
        csv_of(
            "2026-06-24 00:05:00,BTCUSDT,1,1,1.1,1.1,1.1,1.1",
            "2026-06-24 00:10:00,BTCUSDT,1,1,1.1,1.1,1.1,1.1",
            "2026-06-25 00:00:00,BTCUSDT,1,1,1.4,1.4,1.4,1.4",
        ),
        instrument="BTCUSDT",
    )
    assert set(rows["label_convention"]) == {SNAPSHOT_AT_LABEL}
    assert value(rows, "global_account", "2026-06-25 00:00") == 1.4


def test_the_2024_closing_row_stamped_two_seconds_late_is_the_midnight_slot() -> None:
    rows = parse_metrics(
        csv_of(
            "2024-04-05 23:55:00,BTCUSDT,78432.716,5360432578.13101,1.42340146,1.20394800,,",
            "2024-04-06 00:00:02,BTCUSDT,78432.716,5360432578.13101,1.42340146,1.20394800,,",
            "2024-04-05 00:05:00,BTCUSDT,78432.716,5360432578.13101,1.42340146,1.20394800,,",
        ),
        instrument="BTCUSDT",
    )
    accounts = rows[rows["metric"] == "top_account"]
    assert list(accounts["ts"]) == [
        pd.Timestamp("2024-04-05 00:05"),
        pd.Timestamp("2024-04-05 23:55"),
        pd.Timestamp("2024-04-06 00:00"),
    ], "sorted by time, seconds floored"


def test_blank_ratios_give_no_row_never_zero() -> None:
    rows = parse_metrics(
        csv_of(
            "2024-04-05 23:55:00,BTCUSDT,78432.716,5360432578.13101,1.42340146,1.20394800,,",
            '2021-12-31 00:00:00,BTCUSDT,1,1,"",1.2,"",0.9',
        ),
        instrument="BTCUSDT",
    )
    assert (rows["source_ratio"] > 0).all() and rows["source_ratio"].notna().all()
    assert set(rows[rows["ts"].dt.year == 2024]["metric"]) == {"top_account", "top_position"}
    assert set(rows[rows["ts"].dt.year == 2021]["metric"]) == {"top_position", "taker_volume"}


def test_every_era_of_number_format_is_read_exactly() -> None:
    rows = parse_metrics(
        csv_of(
            "2022-03-01 00:00:00,ETHUSDT,1.5,2.5,4.151199024522422,1.0,2.0,1.0",
            "2025-06-01 00:00:00,ETHUSDT,83624.1980000000000000,8736988614.4487060000000000,"
            "1.23458273,1.56163700,2.0,1.0",
        ),
        instrument="ETHUSDT",
    )
    assert value(rows, "top_account", "2022-03-01 00:00") == 4.151199024522422
    assert value(rows, "top_position", "2025-06-01 00:00") == 1.561637
    oi = oi_rows(read_metrics(HEAD_2020, instrument="BTCUSDT"))
    assert oi["open_interest"].iloc[-1] == 39106.413
    assert oi["open_interest_value"].iloc[-1] == 455693833.60853225
    era_2025 = oi_rows(
        read_metrics(
            csv_of(
                "2025-06-01 00:00:00,ETHUSDT,83624.1980000000000000,8736988614.4487060000000000,,,,"
            ),
            instrument="ETHUSDT",
        )
    )
    assert era_2025["open_interest"].iloc[0] == 83624.198
    assert era_2025["open_interest_value"].iloc[0] == 8736988614.448706


def test_open_interest_blank_stays_null() -> None:
    oi = oi_rows(
        read_metrics(csv_of("2022-03-07 00:00:00,BTCUSDT,,12.5,1,1,1,1"), instrument="BTCUSDT")
    )
    assert oi["open_interest"].isna().all() and list(oi["open_interest_value"]) == [12.5]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("create_time,symbol,open\n2024-01-01 00:00:00,BTCUSDT,1\n", "header"),
        (csv_of("2024-01-01 00:00:00,BTCUSDT,1,1,abc,1,1,1"), "line 2: count_toptrader"),
        (csv_of("yesterday,BTCUSDT,1,1,1,1,1,1"), "line 2: create_time 'yesterday'"),
        (csv_of("2024-01-01 00:00:00,BTCUSDT,1,1,1"), "line 2 has 5 fields, not 8"),
        (csv_of("2024-01-01 00:00:00,ETHUSDT,1,1,1,1,1,1"), "not BTCUSDT"),
        ("", "header"),
    ],
)
def test_malformed_files_raise_a_payload_error_naming_the_symbol(text: str, expected: str) -> None:
    with pytest.raises(PayloadError, match="binance archive metrics symbol=BTCUSDT") as raised:
        parse_metrics(text, instrument="BTCUSDT")
    assert expected in str(raised.value)


def test_coarser_periods_take_the_snapshot_at_the_bucket_time() -> None:
    lines = [
        f"2024-01-02 {h:02d}:{m:02d}:00,BTCUSDT,{h * 100 + m},1,1,1,{1 + h / 100 + m / 10000},1"
        for h in range(0, 24)
        for m in range(0, 60, 5)
    ]
    table = read_metrics(csv_of(*lines), instrument="BTCUSDT")
    day = Window.of(datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC))
    archive = ArchiveWindow("BTCUSDT", day, (ArchiveDay(date(2024, 1, 2), table),))
    one_h = archive.ls("global_account", "1h")
    assert len(one_h) == 24 and set(one_h["derived_from"]) == {"5m"}
    assert value(one_h, "global_account", "2024-01-02 13:00") == 1.13
    assert len(archive.ls("top_position", "1d")) == 1
    assert archive.ls("taker_volume", "1h").empty, "taker flow is not summed from ratios"
    oi = archive.open_interest("1h")
    assert (
        len(oi) == 24
        and oi.loc[oi["ts"] == pd.Timestamp("2024-01-02 13:00"), "open_interest"].item() == 1300
    )


# ---------------------------------------------------------------------------------------------
# The simulator's archive and the Binance partitions that read it


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorThread]:
    with SimulatorThread(port=0, rate_limit_scale=SCALE, exchanges=("binance",)) as sim:
        yield sim


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _archive_url(sim: SimulatorThread, symbol: str, day: date) -> str:
    return sim.base_urls["binance"] + archive_path(symbol, day)


def test_the_simulated_archive_publishes_from_the_day_after_listing_until_yesterday(
    simulator: SimulatorThread,
) -> None:
    today = datetime.now(UTC).date()
    assert _get(_archive_url(simulator, "BTCUSDT", today))[0] == 404, "published T+1"
    assert _get(_archive_url(simulator, "BTCUSDT", date(2020, 8, 31)))[0] == 404
    status, content = _get(_archive_url(simulator, "BTCUSDT", today - timedelta(days=1)))
    checksum = _get(_archive_url(simulator, "BTCUSDT", today - timedelta(days=1)) + ".CHECKSUM")[1]
    assert status == 200
    assert checksum.decode().split() == [
        hashlib.sha256(content).hexdigest(),
        f"BTCUSDT-metrics-{today - timedelta(days=1)}.zip",
    ]
    wif_listed = date(2024, 1, 17)  # simulator/coins.py
    assert _get(_archive_url(simulator, "WIFUSDT", wif_listed))[0] == 404
    assert _get(_archive_url(simulator, "WIFUSDT", wif_listed + timedelta(days=1)))[0] == 200


def _csv(sim: SimulatorThread, symbol: str, day: date) -> str:
    content = _get(_archive_url(sim, symbol, day))[1]
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return archive.read(f"{symbol}-metrics-{day}.csv").decode()


def test_the_simulated_archive_switches_label_convention_on_2026_06_25(
    simulator: SimulatorThread,
) -> None:
    before = _csv(simulator, "BTCUSDT", date(2026, 6, 24)).splitlines()
    after = _csv(simulator, "BTCUSDT", date(2026, 6, 25)).splitlines()
    assert before[1].startswith("2026-06-24 00:05:00,") and before[-1].startswith(
        "2026-06-25 00:00:02,"
    )
    assert after[1].startswith("2026-06-25 00:00:00,") and after[-1].startswith(
        "2026-06-25 23:55:00,"
    )
    # Both files carry a "00:00" label of the 25th; they are different snapshots.
    rows = pd.concat(
        [
            parse_metrics("\n".join(before), instrument="BTCUSDT", file_day=date(2026, 6, 24)),
            parse_metrics("\n".join(after), instrument="BTCUSDT", file_day=date(2026, 6, 25)),
        ]
    )
    _, conflicts = settle(rows, ["metric", "ts"])
    assert conflicts == 0


def test_exactly_one_simulated_file_fails_its_checksum(simulator: SimulatorThread) -> None:
    symbol, days_ago = BAD_CHECKSUM
    day = datetime.now(UTC).date() - timedelta(days=days_ago)
    content = _get(_archive_url(simulator, symbol, day))[1]
    published = _get(_archive_url(simulator, symbol, day) + ".CHECKSUM")[1].decode().split()[0]
    assert hashlib.sha256(content).hexdigest() != published
    neighbour = day - timedelta(days=1)
    content = _get(_archive_url(simulator, symbol, neighbour))[1]
    published = _get(_archive_url(simulator, symbol, neighbour) + ".CHECKSUM")[1].decode().split()
    assert hashlib.sha256(content).hexdigest() == published[0]


def _query(warehouse: Path, sql: str, *params: object) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(sql, list(params)).df()


@pytest.fixture
def archive_day_loaded(
    simulator: SimulatorThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Path, date, Any]:
    point_at(monkeypatch, simulator)
    universe = tmp_path / "universe.yaml"
    universe.write_text("coins: [BTC, ETH, PEPE]\n")
    monkeypatch.setenv("LSR_UNIVERSE", str(universe))
    warehouse = tmp_path / "lsr.duckdb"
    day = datetime.now(UTC).date() - timedelta(days=BAD_CHECKSUM[1])
    settings = PipelineSettings(warehouse=str(warehouse), periods=["1h", "1d"])
    result = ingest(settings, "binance", day)
    assert result.success
    return warehouse, day, result


def test_a_day_past_the_rest_window_is_filled_from_the_archive(
    archive_day_loaded: tuple[Path, date, Any],
) -> None:
    warehouse, day, _ = archive_day_loaded
    rows = _query(
        warehouse,
        "SELECT coin, metric, period, ts, long_share, source, derived_from FROM ls_ratio "
        "WHERE ts >= ? AND ts < ? + INTERVAL 1 DAY",
        day,
        day,
    )
    btc = rows[rows["coin"] == "BTC"]
    assert set(btc["source"]) == {"archive"} and set(btc["derived_from"]) == {"5m"}
    counts = btc.groupby(["metric", "period"]).size().to_dict()
    assert counts == {
        (metric, period): n
        for metric in ("global_account", "top_account", "top_position")
        for period, n in (("1h", 24), ("1d", 1))
    }, "hourly snapshots and the daily one; taker flow is not summed from five-minute ratios"
    # The archive's 8-decimal ratio gives back the simulated share at the bucket time.
    noon = btc[(btc["metric"] == "top_position") & (btc["period"] == "1h")]
    noon = noon[noon["ts"] == pd.Timestamp(day) + pd.Timedelta(hours=12)]
    t_ms = int(pd.Timestamp(day).timestamp() * 1000) + 12 * 3_600_000
    expected = series.long_shares("binance", "BTC", "top_position", np.array([t_ms]))[0]
    assert noon["long_share"].iloc[0] == pytest.approx(expected, abs=1e-8)
    # PEPE trades as 1000PEPEUSDT: its archive rows are found under the native symbol (its
    # file may lack an hour, as some real files do).
    pepe = rows[rows["coin"] == "PEPE"]
    assert set(pepe["metric"]) == set(btc["metric"]) and len(pepe) >= len(btc) - 3
    oi = _query(
        warehouse,
        "SELECT source, count(*) AS n FROM open_interest WHERE coin = 'BTC' AND period = '1h' "
        "AND ts >= ? AND ts < ? + INTERVAL 1 DAY GROUP BY source",
        day,
        day,
    )
    assert oi.to_dict("records") == [{"source": "archive", "n": 24}]


def test_taker_volume_past_the_rest_window_is_reported_unavailable_with_the_reason(
    archive_day_loaded: tuple[Path, date, Any],
) -> None:
    warehouse, _, _ = archive_day_loaded
    log = _query(
        warehouse,
        "SELECT DISTINCT status, detail FROM partition_log WHERE dataset = 'taker_volume'",
    )
    assert set(log["status"]) == {"unavailable"}
    assert all("for the last 30 days only" in detail for detail in log["detail"])


def test_a_file_whose_checksum_does_not_match_is_rejected_and_nothing_of_it_stored(
    archive_day_loaded: tuple[Path, date, Any],
) -> None:
    warehouse, day, _ = archive_day_loaded
    rejected = _query(warehouse, "SELECT instrument, reason, raw FROM ls_ratio_rejected")
    assert rejected["instrument"].tolist() == ["ETHUSDT"]
    assert "checksum mismatch" in rejected["reason"].iloc[0]
    assert f"ETHUSDT-metrics-{day}.zip" in rejected["raw"].iloc[0], "the published checksum"
    eth = _query(
        warehouse,
        "SELECT DISTINCT ts FROM ls_ratio WHERE coin = 'ETH' "
        "AND ts >= ? AND ts < ? + INTERVAL 1 DAY",
        day,
        day,
    )
    # Only the midnight snapshot, which the previous day's (good) file carries.
    assert eth["ts"].tolist() == [pd.Timestamp(day)]
    # The day is logged failed, with why, so a later run over it asks for the file again.
    log = _query(
        warehouse,
        "SELECT DISTINCT dataset, status, detail FROM partition_log WHERE coin = 'ETH' "
        "AND day = ? AND dataset IN ('global_account', 'top_account', 'open_interest')",
        day,
    )
    assert set(log["status"]) == {"failed"}
    assert all("checksum mismatch" in detail for detail in log["detail"])


def test_loading_the_archive_day_again_changes_no_row(
    archive_day_loaded: tuple[Path, date, Any],
) -> None:
    warehouse, day, _ = archive_day_loaded
    before = _query(warehouse, "SELECT * FROM ls_ratio ORDER BY ALL")
    settings = PipelineSettings(warehouse=str(warehouse), periods=["1h", "1d"])
    assert ingest(settings, "binance", day).success
    pd.testing.assert_frame_equal(before, _query(warehouse, "SELECT * FROM ls_ratio ORDER BY ALL"))


def test_a_rest_row_is_never_replaced_by_the_archive_row_of_the_same_bucket(tmp_path: Path) -> None:
    def row(source: str, long_share: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "exchange": ["binance"], "coin": ["BTC"], "instrument": ["BTCUSDT"],
                "metric": ["global_account"], "period": ["1h"],
                "ts": [pd.Timestamp("2026-10-01 12:00")], "long_share": [long_share],
                "short_share": [1 - long_share], "source": [source],
                "fetched_at": [pd.Timestamp("2026-10-01 13:00")],
            }
        )  # fmt: skip

    def stored(conn: duckdb.DuckDBPyConnection) -> tuple[str, float]:
        found = conn.execute("SELECT source, long_share FROM ls_ratio").fetchall()
        assert len(found) == 1
        return found[0]

    with connect(tmp_path / "lsr.duckdb") as conn:
        upsert(conn, "ls_ratio", row("archive", 0.6), LS_KEY, keep_stored_when=REST_WINS)
        upsert(conn, "ls_ratio", row("rest", 0.61), LS_KEY, keep_stored_when=REST_WINS)
        assert stored(conn) == ("rest", 0.61)
        upsert(conn, "ls_ratio", row("archive", 0.6), LS_KEY, keep_stored_when=REST_WINS)
        assert stored(conn) == ("rest", 0.61)
        upsert(conn, "ls_ratio", row("rest", 0.62), LS_KEY, keep_stored_when=REST_WINS)
        assert stored(conn) == ("rest", 0.62), "a newer REST value still replaces the old one"
