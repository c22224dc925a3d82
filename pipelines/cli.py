"""`lsr`: a thin command line over the Dagster pipeline, for people who don't open the UI."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.config import CROSS, FLOW, METRICS, PERIOD_MS, WHALES, warehouse_path
from pipelines.exchanges import EXCHANGES

if TYPE_CHECKING:
    import duckdb

    from pipelines.runner import RunReport

# The demo compresses every rate-limit window 20x (in the simulator and the client alike), so
# seven days of 50 coins load in about a minute instead of Binance's real 5-minute windows.
DEMO_RATE_LIMIT_SCALE = 0.05
# How far back the demo fetches each period (LSR_DEPTH overrides): a year of daily rows, enough
# hourly and 4-hour history for the default images and their 90-day signal bands; the full
# reach of every period would take the demo from minutes to hours.
DEMO_DEPTH = "1h=14,4h=120,1d=370"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("lsr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader stopped early (`lsr themes | head`): nothing went wrong here. Python would
        # fail again flushing stdout at exit, so it is pointed at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # one clear line, not a traceback
        print(f"lsr: error: {error}", file=sys.stderr)
        if os.environ.get("LSR_DEBUG"):
            raise
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsr", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="command")

    run = sub.add_parser(
        "run", help="fetch what the warehouse lacks from the exchanges, derive, render"
    )
    _add_run_arguments(run)
    run.set_defaults(handler=_run)

    demo = sub.add_parser("demo", help="the same as run, against the built-in simulator")
    _add_run_arguments(demo)
    demo.add_argument(
        "--faults",
        type=float,
        default=0.0,
        help="share of simulator requests that get a fault (0..1)",
    )
    demo.set_defaults(handler=_demo)

    render = sub.add_parser("render", help="render one image from the warehouse (no fetching)")
    render.add_argument("--exchange", required=True, choices=(*EXCHANGES, CROSS))
    render.add_argument(
        "--metric",
        required=True,
        choices=(*METRICS, FLOW, WHALES),
        help=f"a metric kind; {FLOW} or {WHALES} for those images",
    )
    render.add_argument("--period", required=True, choices=list(PERIOD_MS))
    render.add_argument("--range", required=True, help="7d .. 365d", type=_range_days)
    render.add_argument("--theme", default=None)
    render.add_argument("--color-by", choices=("ln_ratio", "zscore"), default="ln_ratio")
    render.add_argument(
        "--out",
        type=Path,
        default=None,
        help="PNG file; a relative path is taken inside the images folder, an absolute one as is",
    )
    render.set_defaults(handler=_render)

    reload = sub.add_parser(
        "reload",
        help="store landed fetches the warehouse has not taken; with --exchange and --day, "
        "normalise that day again from its landed responses (after a parser fix), no request",
    )
    reload.add_argument("--exchange", choices=EXCHANGES)
    reload.add_argument("--day", type=date.fromisoformat, help="UTC day, YYYY-MM-DD")
    reload.set_defaults(handler=_reload)

    rebuild = sub.add_parser(
        "rebuild",
        help="recompute every derived table from all history, then the lake and images",
    )
    rebuild.set_defaults(handler=_rebuild)

    export = sub.add_parser(
        "export",
        help="bring the Parquet lake up to date (the partitions whose rows changed)",
    )
    export.add_argument(
        "--full",
        action="store_true",
        help="rewrite every partition of every table and remove stray files",
    )
    export.set_defaults(handler=_export)

    sql = sub.add_parser(
        "sql", help="run a read-only SQL query on the warehouse and print the result"
    )
    sql.add_argument("query", help='e.g. "SELECT * FROM alt_average ORDER BY ts DESC LIMIT 5"')
    sql.add_argument("--csv", action="store_true", help="comma-separated output with a header")
    sql.set_defaults(handler=_sql)

    themes = sub.add_parser("themes", help="list colour themes, one per line")
    themes.set_defaults(handler=_themes)

    gallery = sub.add_parser(
        "gallery", help="serve the images folder on 127.0.0.1 (the Dagster UI's previews)"
    )
    gallery.add_argument("--port", type=int, default=3001)
    gallery.set_defaults(handler=_gallery)

    simulate = sub.add_parser("simulate", help="serve the exchange simulator on 127.0.0.1")
    simulate.add_argument("--port", type=int, default=8765)
    simulate.add_argument("--faults", type=float, default=0.0)
    simulate.add_argument("--rate-limit-scale", type=float, default=1.0)
    simulate.set_defaults(handler=_simulate)
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    bound = parser.add_mutually_exclusive_group()
    bound.add_argument(
        "--days",
        type=_days_back,
        help=f"only the last N full UTC days and today (0 .. {_max_days()}); default: as far "
        "back as each exchange serves what the warehouse lacks",
    )
    bound.add_argument("--since", type=_since, help="only from this UTC day (YYYY-MM-DD) on")
    parser.add_argument(
        "--exchange",
        action="append",
        choices=EXCHANGES,
        dest="exchanges",
        help="repeat for several (default: all)",
    )


def _max_days() -> int:
    """Days back to the first partition: the UI's partition grid starts there too."""
    from datetime import UTC, date, datetime

    from pipelines.partitions import FIRST_DAY

    return (datetime.now(UTC).date() - date.fromisoformat(FIRST_DAY)).days


def _days_back(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 0 <= days <= _max_days():
        raise argparse.ArgumentTypeError(
            f"{days} is outside 0 .. {_max_days()} (partitions start on the first day kept)"
        )
    return days


def _since(text: str) -> date:
    from datetime import UTC, datetime

    from pipelines.partitions import FIRST_DAY

    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day such as 2025-01-31") from None
    first, today = date.fromisoformat(FIRST_DAY), datetime.now(UTC).date()
    if not first <= day <= today:
        raise argparse.ArgumentTypeError(f"{day} is outside {first} .. {today}")
    return day


def _range_days(text: str) -> int:
    try:
        days = int(text.lower().removesuffix("d"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range such as 30d") from None
    if not 7 <= days <= 365:
        raise argparse.ArgumentTypeError("range must be between 7d and 365d")
    return days


def _run(args: argparse.Namespace, *, simulator: Mapping[str, str] | None = None) -> int:
    """Fetch, derive, render: from the exchanges, or from the simulator at these base URLs."""
    from pipelines.partitions import FIRST_DAY
    from pipelines.resources import ExchangeAccess, PipelineSettings
    from pipelines.runner import days_back, run_pipeline
    from pipelines.summary import ensure_warehouse_kind

    simulated = simulator is not None
    if simulator is None:
        access = ExchangeAccess()
        settings = PipelineSettings()
    else:
        access = ExchangeAccess.at_simulator(simulator, DEMO_RATE_LIMIT_SCALE)
        settings = PipelineSettings(depth=os.environ.get("LSR_DEPTH") or DEMO_DEPTH)
    if settings.fetches_only():
        raise ValueError(
            "LSR_FETCH_ONLY is for Dagster run workers that only land their fetches; `lsr "
            "run` and `lsr demo` fetch and store in one process: unset it here"
        )
    settings.run_inputs()  # everything checked before the first request, each in one line
    settings.lake_dir()  # not by ingestion runs: a lake setting must never cost fetched data
    # A run with no host moved writes real data; behind a moved host (a proxy, `lsr simulate`)
    # only the answers can tell, and the first write decides.
    expected = True if simulated else None if access.hosts() else False
    ensure_warehouse_kind(warehouse_path(), simulated=expected)
    exchanges = args.exchanges or list(EXCHANGES)
    since = args.since or (days_back(args.days) if args.days is not None else None)
    span = (
        f"from {since} (UTC)" if since else "what the warehouse lacks, as deep as each serves it,"
    )
    print(f"Fetching {span} for {', '.join(exchanges)}{' from the simulator' if simulated else ''}")
    report = run_pipeline(since or date.fromisoformat(FIRST_DAY), exchanges, settings, access)
    return _print_report(report)


def _print_report(report: RunReport) -> int:
    from pipelines.resources import PipelineSettings
    from pipelines.summary import describe_warehouse

    if report.released_runs:
        print(
            f"released {len(report.released_runs)} run(s) a killed process left unfinished "
            f"(marked failed, concurrency slots freed): {', '.join(report.released_runs)}",
            file=sys.stderr,
        )
    for key, error in report.partitions_failed.items():
        print(f"partition {key} failed: {error.splitlines()[0]}", file=sys.stderr)
    if report.outputs_error:
        print(f"derived tables / images failed: {report.outputs_error}", file=sys.stderr)
    print(describe_warehouse(warehouse_path(), PipelineSettings().lake_dir()))
    ok = not report.partitions_failed and report.outputs_ok
    return 0 if ok else 1


def _demo(args: argparse.Namespace) -> int:
    from pipelines.simulator import FaultConfig, SimulatorProcess

    faults = FaultConfig(rate=args.faults) if args.faults else None
    with SimulatorProcess(rate_limit_scale=DEMO_RATE_LIMIT_SCALE, faults=faults) as sim:
        print(f"Simulator listening on {next(iter(sim.base_urls.values())).rsplit('/', 1)[0]}")
        return _run(args, simulator=sim.base_urls)


def _render(args: argparse.Namespace) -> int:
    from pipelines.image_data import RenderRequest
    from pipelines.images import default_image, is_simulated, render_and_record
    from pipelines.resources import PipelineSettings
    from pipelines.themes import DEFAULT_THEME, get_theme

    theme = args.theme or DEFAULT_THEME
    get_theme(theme)  # fail early, with close matches, before opening the warehouse
    images_root = PipelineSettings().images_dir()
    out = _output_path(images_root, args.out) if args.out is not None else None

    def plan(snapshot: duckdb.DuckDBPyConnection) -> list[tuple[RenderRequest, Path]]:
        request = RenderRequest(
            exchange=args.exchange,
            metric=args.metric,
            period=args.period,
            range_days=args.range,
            theme=theme,
            color_by=args.color_by,
            simulated=is_simulated(snapshot, args.exchange),
        )
        return [(request, out or default_image(images_root, request))]

    (result,) = render_and_record(warehouse_path(), images_root, plan)
    print(result.path)
    return 0


def _output_path(root: Path, out: Path) -> Path:
    """A relative `--out` stays inside the images folder; an absolute one is the user's choice."""
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: images are PNG files; end the name with .png")
    if out.is_absolute():
        return out
    target = (root / out).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(
            f"--out {out} leaves the images folder {root}; give a path inside it or an absolute one"
        )
    return target


def _reload(args: argparse.Namespace) -> int:
    from pipelines.loader import load_waiting, record_stored, reload_day
    from pipelines.resources import PipelineSettings
    from pipelines.runner import instance
    from pipelines.warehouse import connect

    if (args.exchange is None) != (args.day is None):
        raise ValueError("give --exchange and --day together (or neither: every waiting file)")
    zone = PipelineSettings().landing_zone()
    with connect() as conn:
        if args.exchange:
            loads = reload_day(conn, zone, args.exchange, args.day)
        else:
            loads = load_waiting(conn, zone)
    with instance() as dagster_instance:
        record_stored(dagster_instance, loads)
    for load in loads:
        if load.summary is not None:
            s = load.summary
            print(
                f"stored {load.landed.path}: {s.ls_rows} ls_ratio, {s.kline_rows} klines, "
                f"{s.oi_rows} open_interest rows"
            )
        else:
            print(f"not loaded {load.landed.path}: {load.problem}")
    if not loads:
        what = (
            f"no landed fetch of {args.exchange} {args.day}" if args.exchange else "nothing waits"
        )
        print(f"{what} in {zone.root}")
    else:
        print("derived tables and images follow with the next run (or `refresh_outputs`)")
    return 1 if any(load.problem for load in loads) else 0


def _rebuild(args: argparse.Namespace) -> int:
    """Derived tables normally recompute only the buckets that changed; this starts over."""
    from pipelines.resources import PipelineSettings
    from pipelines.runner import rebuild_outputs

    path = warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path} yet: run `lsr run` or `lsr demo` first")
    print(f"rebuilding the derived tables of {path} from all history ...", flush=True)
    for table, done in rebuild_outputs(PipelineSettings()).items():
        print(f"  {table}: {done}")
    print("coverage, the Parquet lake and the images followed")
    return 0


def _export(args: argparse.Namespace) -> int:
    """The lake follows every refresh by itself; this catches it up by hand (after rows were
    loaded outside ingestion: --full)."""
    from pipelines.resources import PipelineSettings
    from pipelines.runner import export_lake

    path = warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path} yet: run `lsr run` or `lsr demo` first")
    settings = PipelineSettings()
    root = settings.lake_dir()  # a refused setting in one line, before Dagster starts
    done = export_lake(settings, full=args.full)
    print(
        f"{root}: {done['partitions_written']} partitions written "
        f"({done['rows_written']:,} rows), {done['partitions_removed']} removed, "
        f"{done['tables']} tables, {done['seconds']:.1f} s"
    )
    return 0


def _sql(args: argparse.Namespace) -> int:
    """The warehouse's own DuckDB, read-only (a DuckDB 1.x command line cannot read the file)."""
    import csv

    import duckdb

    from pipelines.warehouse import connect

    path = warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path} yet: run `lsr run` or `lsr demo` first")
    with connect(path, read_only=True) as conn:
        try:
            cursor = conn.execute(args.query)
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall()
        except duckdb.Error as error:
            raise ValueError(f"query refused: {str(error).splitlines()[0]}") from error
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print(_table(columns, rows))
    return 0


def _table(columns: list[str], rows: list[tuple[object, ...]]) -> str:
    """Columns padded to their widest value; numbers right-aligned."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), rule, *(line(r) for r in cells), f"({len(rows)} rows)"])


def _themes(args: argparse.Namespace) -> int:
    from pipelines.themes import theme_names

    print("\n".join(theme_names()))
    return 0


def _gallery(args: argparse.Namespace) -> int:
    from pipelines.gallery import serve_gallery
    from pipelines.resources import PipelineSettings

    serve_gallery(PipelineSettings().images_dir(), port=args.port)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from pipelines.simulator import FaultConfig, serve

    faults = FaultConfig(rate=args.faults) if args.faults else None
    serve(port=args.port, faults=faults, rate_limit_scale=args.rate_limit_scale)
    return 0
