"""The `lsr` command as a user meets it: one clear line on error, a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.analytics import DERIVED_TABLES, refresh_all
from pipelines.cli import main
from pipelines.summary import ensure_warehouse_kind
from pipelines.universe import load_universe
from pipelines.warehouse import OriginConflict, connect
from tests.test_analytics import Inputs, load, make_inputs


def test_themes_lists_sixty_plus_names_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["themes"]) == 0
    names = capsys.readouterr().out.split()
    assert len(names) >= 60 and len(set(names)) == len(names) and "vik" in names


def test_listing_themes_loads_no_colour_library() -> None:
    # Listing names must stay quick: matplotlib and the colour-map packages load only to draw.
    probe = (
        "import sys; from pipelines.cli import main; main(['themes']); "
        "print([m for m in ('matplotlib', 'cmcrameri', 'cmap') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines()[0] == "vik"
    assert done.stdout.splitlines()[-1] == "[]"


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


def test_sql_prints_a_read_only_query_as_a_table_or_csv(
    warehouse_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(warehouse_file) as conn:
        conn.execute(
            "INSERT INTO partition_log (exchange, day, dataset, coin, period, status, rows, "
            "detail, simulated, updated_at) VALUES ('okx', DATE '2026-11-30', 'global_account', "
            "'BTC', '1h', 'ok', 24, NULL, true, TIMESTAMP '2026-11-30 01:00:00')"
        )
    query = "SELECT exchange, coin, rows FROM partition_log"
    assert main(["sql", query]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["exchange", "coin", "rows"]
    assert table[2].split() == ["okx", "BTC", "24"] and table[-1] == "(1 rows)"
    assert main(["sql", "--csv", query]) == 0
    assert capsys.readouterr().out.splitlines() == ["exchange,coin,rows", "okx,BTC,24"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM partition_log", 'Cannot execute statement of type "DELETE"'),
        ("SELEC 1", 'syntax error at or near "SELEC"'),
    ],
)
def test_sql_refuses_writes_and_bad_sql_in_one_line(
    query: str, message: str, warehouse_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(warehouse_file):
        pass
    assert main(["sql", query]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lsr: error: query refused: ") and message in err
    assert len(err.splitlines()) == 1


def test_a_reader_that_stops_early_is_not_an_error(warehouse_file: Path) -> None:
    """`lsr sql ... | head`: the output (megabytes) outgrows the pipe once the reader has gone."""
    with connect(warehouse_file):
        pass
    lsr = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipelines.cli import main; sys.exit(main())",
         "sql", "--csv", "SELECT range AS n FROM range(300000)"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert lsr.stdout is not None and lsr.stderr is not None
    assert lsr.stdout.readline().strip() == b"n"  # the csv module ends rows with CRLF
    lsr.stdout.close()  # as `head -1` does
    errors = lsr.stderr.read()
    assert lsr.wait(timeout=60) == 0 and errors == b""


def test_sql_on_a_missing_warehouse_says_how_to_make_one(
    warehouse_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "SELECT 1"]) == 1
    assert "run `lsr run` or `lsr demo` first" in capsys.readouterr().err
    assert not warehouse_file.exists()


def test_rebuild_recomputes_from_all_history_what_a_refresh_cannot_see(
    warehouse_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = make_inputs()
    early = inputs.ls["ts"] < inputs.ls["ts"].max() - pd.Timedelta(days=2)
    load(warehouse_file, Inputs(inputs.ls[early], inputs.klines, inputs.oi, inputs.instruments))
    with connect(warehouse_file) as conn:
        refresh_all(conn, load_universe())
        # The last two days loaded by hand: no change note, so a refresh has nothing to do.
        conn.register("late", inputs.ls[~early])
        conn.execute("INSERT INTO ls_ratio BY NAME SELECT * FROM late")
        refresh_all(conn, load_universe())
        before = conn.execute("SELECT count(*) FROM heatmap_matrix").fetchall()[0][0]
    assert main(["rebuild"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {table}: " in out for table in DERIVED_TABLES), out
    with connect(warehouse_file, read_only=True) as conn:
        after = conn.execute("SELECT count(*) FROM heatmap_matrix").fetchall()[0][0]
        coins_and_buckets = conn.execute(
            "SELECT count(DISTINCT (exchange, metric, period, coin, ts)) FROM ls_ratio"
        ).fetchall()[0][0]
    assert before < after == coins_and_buckets


def test_run_refuses_fetch_only_mode_before_any_request(
    warehouse_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """LSR_FETCH_ONLY belongs to Dagster run workers; `lsr run` would fetch and store nothing."""
    monkeypatch.setenv("LSR_FETCH_ONLY", "1")
    assert main(["run", "--days", "1"]) == 1
    assert "LSR_FETCH_ONLY is for Dagster run workers" in capsys.readouterr().err
    assert not warehouse_file.exists()


def test_export_keeps_the_lake_and_full_catches_rows_loaded_by_hand(
    warehouse_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export"]) == 1
    assert "run `lsr run` or `lsr demo` first" in capsys.readouterr().err
    inputs = make_inputs()
    early = inputs.ls["ts"] < inputs.ls["ts"].max() - pd.Timedelta(days=2)
    load(warehouse_file, Inputs(inputs.ls[early], inputs.klines, inputs.oi, inputs.instruments))
    lake = warehouse_file.parent / "lake"

    def export(*args: str) -> int:
        """Partitions the command says it wrote."""
        assert main(["export", *args]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"{lake}: "), out
        return int(out.split(": ", 1)[1].split()[0])

    def lake_rows() -> int:
        glob = f"{lake}/ls_ratio/**/*.parquet"
        query = f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"
        with duckdb.connect() as reader:
            return int(reader.sql(query).fetchall()[0][0])

    first = export()  # the lake's first refresh writes everything
    assert first == len(list(lake.rglob("*.parquet"))) > 0
    with connect(warehouse_file) as conn:  # the last two days by hand: no change note
        conn.register("late", inputs.ls[~early])
        conn.execute("INSERT INTO ls_ratio BY NAME SELECT * FROM late")
    assert export() == 0
    assert lake_rows() == early.sum()
    assert export("--full") == len(list(lake.rglob("*.parquet"))) > first
    assert lake_rows() == len(inputs.ls)


def test_the_closing_summary_says_where_the_lake_is(warehouse_file: Path) -> None:
    from pipelines.summary import describe_warehouse

    load(warehouse_file, make_inputs())
    lake = warehouse_file.parent / "lake"
    assert "Parquet" not in describe_warehouse(warehouse_file, lake)  # not written yet
    lake.mkdir()
    assert f"from Parquet: {lake}/<table>/" in describe_warehouse(warehouse_file, lake)


def test_run_refuses_a_lake_that_is_no_folder_before_fetching(
    warehouse_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSR_LAKE", "s3://bucket/lake")
    assert main(["run", "--days", "0"]) == 1
    assert "give a local folder" in capsys.readouterr().err
    assert not warehouse_file.exists()
