"""The Binance Vision `metrics` archive parser, on real rows of every number-format era.

The 2020-09-01 file head is real (tests/payloads/binance_archive/); the other eras' rows are
quoted in the project's exchange notes (BINANCE-ARCHIVE.md section 2) and are used unchanged:
where a quotation stops ("..."), the remaining fields are left blank, which is itself a shape
the archive has.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from pipelines.errors import PayloadError
from pipelines.exchanges.binance_archive import (
    HEADER,
    SLOT_STARTS_AT_LABEL,
    SNAPSHOT_AT_LABEL,
    oi_rows,
    parse_metrics,
    read_metrics,
    settle,
    to_periods,
)

PAYLOADS = Path(__file__).parent / "payloads" / "binance_archive"
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
    settled, _ = settle(parse_metrics(csv_of(*lines), instrument="BTCUSDT"), ["metric", "ts"])
    hourly = to_periods(settled, ("1h", "1d"))
    one_h = hourly[(hourly["period"] == "1h") & (hourly["metric"] == "global_account")]
    assert len(one_h) == 24
    assert value(one_h, "global_account", "2024-01-02 13:00") == 1.13
    day = hourly[hourly["period"] == "1d"]
    assert set(day["metric"]) == {"global_account", "top_account", "top_position"}
    assert set(day["derived_from"]) == {"5m"}
    assert not (hourly["metric"] == "taker_volume").any(), "taker flow is not summed from ratios"
