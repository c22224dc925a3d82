"""The `lsr` command as a user meets it: one clear line on error, a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.summary import ensure_warehouse_kind
from pipelines.warehouse import OriginConflict, connect


def test_themes_lists_sixty_plus_names_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["themes"]) == 0
    names = capsys.readouterr().out.split()
    assert len(names) >= 60 and len(set(names)) == len(names) and "vik" in names


def test_render_with_an_unknown_theme_is_one_line_naming_close_matches(
    capsys: pytest.CaptureFixture[str], warehouse_file: Path
) -> None:
    code = main(
        [
            "render",
            "--exchange",
            "binance",
            "--metric",
            "global_account",
            "--period",
            "1h",
            "--range",
            "7d",
            "--theme",
            "vic",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "vik" in err and "Traceback" not in err


def test_render_without_data_says_so(
    capsys: pytest.CaptureFixture[str], warehouse_file: Path
) -> None:
    code = main(
        [
            "render",
            "--exchange",
            "okx",
            "--metric",
            "top_position",
            "--period",
            "4h",
            "--range",
            "30d",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "okx" in err and "top_position" in err


def test_a_range_outside_7_to_365_days_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(
            [
                "render",
                "--exchange",
                "binance",
                "--metric",
                "global_account",
                "--period",
                "1d",
                "--range",
                "400d",
            ]
        )
    assert "between 7d and 365d" in capsys.readouterr().err


def test_real_and_simulated_data_never_share_a_warehouse(warehouse_file: Path) -> None:
    with connect(warehouse_file) as conn:
        conn.execute(
            "INSERT INTO partition_log (exchange, day, dataset, coin, period, status, rows, "
            "detail, simulated, updated_at) VALUES ('binance', DATE '2026-11-22', "
            "'global_account', 'BTC', '1h', 'ok', 24, NULL, true, now()::TIMESTAMP)"
        )
    ensure_warehouse_kind(warehouse_file, simulated=True)  # more simulated data: fine
    with pytest.raises(OriginConflict, match=r"refusing to write exchanges data into .*lsr demo"):
        ensure_warehouse_kind(warehouse_file, simulated=False)
