"""Which heatmaps to render by default, and the `heatmap_images` catalogue of rendered files."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.config import DEFAULT_RANGE_DAYS, FLOW, WHALES
from pipelines.exchanges import CONNECTORS
from pipelines.gallery import write_gallery
from pipelines.image_data import CROSS, RenderRequest, image_path
from pipelines.processes import die_with_parent
from pipelines.queries import one_row, table_exists, transaction
from pipelines.render import ImageContent, RenderResult, read_image_data, render_image
from pipelines.themes import DEFAULT_THEME
from pipelines.warehouse import connect

DEFAULT_METRIC = "global_account"
# The candle-flow and whale-vs-crowd images of each exchange: hourly, over the default hourly range.
FLOW_PERIOD = WHALES_PERIOD = "1h"
# A year of daily rows earns an exchange a second 1d image over the whole year.
YEAR_PERIOD, YEAR_DAYS = "1d", 365


def default_metric(exchange: str) -> str:
    """All-accounts where the exchange publishes it, else its own first kind."""
    metrics = CONNECTORS[exchange].METRICS
    return DEFAULT_METRIC if DEFAULT_METRIC in metrics else metrics[0]


def default_requests(conn: duckdb.DuckDBPyConnection) -> list[RenderRequest]:
    """One request per exchange with data and period, at the period's default range, and a
    1d/365d one per exchange whose daily rows span a year.

    Plus the cross-exchange view (exchange `CROSS`, metric `DEFAULT_METRIC`) per period for which
    `cross_exchange` has rows, a candle-flow image (metric `FLOW`, FLOW_PERIOD) per exchange
    with any flow estimate at that period, and a whale-vs-crowd image (metric `WHALES`) per
    exchange with whale_crowd rows in `divergence`.
    """
    present = conn.execute(
        "SELECT exchange, metric, period, "
        "date_diff('day', min(ts), max(ts)) + 1 >= ? AS has_a_year "
        "FROM heatmap_matrix GROUP BY ALL ORDER BY ALL",
        [YEAR_DAYS],
    ).fetchall()
    requests: list[RenderRequest] = []
    for exchange, metric, period, has_a_year in present:
        wanted = exchange in CONNECTORS and metric == default_metric(exchange)
        if not wanted or period not in DEFAULT_RANGE_DAYS:
            continue
        ranges = [DEFAULT_RANGE_DAYS[period]]
        if period == YEAR_PERIOD and has_a_year:
            ranges.append(YEAR_DAYS)
        requests.extend(
            RenderRequest(
                exchange=exchange,
                metric=metric,
                period=period,
                range_days=days,
                theme=DEFAULT_THEME,
                simulated=is_simulated(conn, exchange),
            )
            for days in ranges
        )
    if table_exists(conn, "cross_exchange"):
        periods = conn.execute(
            "SELECT DISTINCT period FROM cross_exchange WHERE metric = ? ORDER BY period",
            [DEFAULT_METRIC],
        ).fetchall()
        requests.extend(
            RenderRequest(
                exchange=CROSS,
                metric=DEFAULT_METRIC,
                period=period,
                range_days=DEFAULT_RANGE_DAYS[period],
                theme=DEFAULT_THEME,
                simulated=is_simulated(conn, CROSS),
            )
            for (period,) in periods
            if period in DEFAULT_RANGE_DAYS
        )
    return requests + _flow_requests(conn) + _whale_requests(conn)


def _flow_requests(conn: duckdb.DuckDBPyConnection) -> list[RenderRequest]:
    if not table_exists(conn, "candle_flow"):
        return []
    exchanges = conn.execute(
        "SELECT DISTINCT exchange FROM candle_flow "
        "WHERE period = ? AND buy_share IS NOT NULL ORDER BY exchange",
        [FLOW_PERIOD],
    ).fetchall()
    return _per_exchange(conn, [e for (e,) in exchanges], FLOW, FLOW_PERIOD)


def _whale_requests(conn: duckdb.DuckDBPyConnection) -> list[RenderRequest]:
    if not table_exists(conn, "divergence"):
        return []
    exchanges = conn.execute(
        "SELECT DISTINCT exchange FROM divergence "
        "WHERE scope = 'whale_crowd' AND period = ? ORDER BY exchange",
        [WHALES_PERIOD],
    ).fetchall()
    return _per_exchange(conn, [e for (e,) in exchanges], WHALES, WHALES_PERIOD)


def _per_exchange(
    conn: duckdb.DuckDBPyConnection, exchanges: list[str], metric: str, period: str
) -> list[RenderRequest]:
    return [
        RenderRequest(
            exchange=exchange,
            metric=metric,
            period=period,
            range_days=DEFAULT_RANGE_DAYS[period],
            theme=DEFAULT_THEME,
            simulated=is_simulated(conn, exchange),
        )
        for exchange in exchanges
        if exchange in CONNECTORS
    ]


def is_simulated(conn: duckdb.DuckDBPyConnection, exchange: str) -> bool:
    """True when the exchange's latest fetched data came from the simulator.

    For `CROSS`: true when any exchange's latest fetched data did. A warehouse that stored its
    origin (every one written since) answers for all exchanges at once.
    """
    origin = one_row(conn, "SELECT origin FROM warehouse_origin")
    if origin:
        return bool(origin[0] == "simulated")
    if exchange == CROSS:
        row = one_row(
            conn,
            "SELECT coalesce(bool_or(latest), false) FROM ("
            "SELECT arg_max(simulated, updated_at) AS latest FROM partition_log GROUP BY exchange)",
        )
        return bool(row and row[0])
    row = one_row(
        conn,
        "SELECT arg_max(simulated, updated_at) FROM partition_log WHERE exchange = ?",
        [exchange],
    )
    return bool(row and row[0])


# What to draw, chosen from the warehouse: each request with the file it goes to.
Plan = Callable[[duckdb.DuckDBPyConnection], list[tuple[RenderRequest, Path]]]
# A request, what it shows, and the file it goes to: all a drawing process needs.
Job = tuple[RenderRequest, ImageContent, Path]


def render_and_record(warehouse: Path, images_root: Path, plan: Plan) -> list[RenderResult]:
    """Read what every planned image shows in one short read, draw them with no lock held, then
    list them in `heatmap_images` and rewrite the gallery in one short write.

    Reading is the cheap part (about 25 ms an image against a fifth of a second of drawing), so
    the lock is held for about as long as a few images take to draw, whatever the warehouse's
    size."""
    with contextlib.ExitStack() as drawing:
        with connect(warehouse) as conn:
            planned = plan(conn)
            # Started before reading: a drawing process takes about a second to start.
            pool = drawing.enter_context(_drawing_pool(len(planned)))
            jobs: list[Job] = []
            futures: list[Future[RenderResult]] = []
            drawing.callback(_cancel, futures)  # on a failure, no helper starts another image
            for request, out in planned:
                jobs.append((request, read_image_data(conn, request), out))
                if pool is not None:  # the helpers draw while this process reads on
                    futures.append(pool.submit(render_image, *jobs[-1]))
        results = _draw_all(jobs, futures)
    with connect(warehouse) as conn, transaction(conn):
        for (request, _), result in zip(planned, results, strict=True):
            _record(conn, request, result)
        write_gallery(conn, images_root)
    return results


# A spawned process takes about a second to import what drawing needs: worth it from here on.
_IMAGES_PER_WORKER = 4


@contextlib.contextmanager
def _drawing_pool(images: int) -> Iterator[ProcessPoolExecutor | None]:
    """Drawing is CPU-bound Python (about a fifth of a second an image), so many images are
    drawn by one process per core; a few are drawn here, where starting processes would cost
    more than it saves. This process is one of the drawers, so the pool has one process fewer."""
    helpers = min(os.cpu_count() or 1, images // _IMAGES_PER_WORKER) - 1
    if helpers < 1:
        yield None
        return
    spawn = multiprocessing.get_context("spawn")  # no forked Dagster or DuckDB state
    pool = ProcessPoolExecutor(
        max_workers=helpers,
        mp_context=spawn,
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        for _ in range(helpers):
            pool.submit(int)  # a process is started per task submitted: start them all now
        yield pool
    finally:
        # Not waiting for the helpers to exit (a third of a second: tearing matplotlib down)
        # while the catalogue is written; Python still waits for them when this process ends.
        pool.shutdown(wait=False)


def _draw_all(jobs: list[Job], futures: list[Future[RenderResult]]) -> list[RenderResult]:
    """Every job here if there are no helpers. Else the helpers take the jobs from the front
    while this process takes them from the back."""
    if not futures:
        return [render_image(*job) for job in jobs]
    drawn = _draw_from_the_back(jobs, futures)
    return [drawn[i] if i in drawn else f.result() for i, f in enumerate(futures)]


def _cancel(futures: list[Future[RenderResult]]) -> None:
    for future in futures:
        future.cancel()


def _draw_from_the_back(
    jobs: list[Job], futures: list[Future[RenderResult]]
) -> dict[int, RenderResult]:
    """Draw here each job no helper has taken yet, the last first, until one has: the pool
    hands the jobs out in order, so every job before it is taken too."""
    drawn: dict[int, RenderResult] = {}
    for i in reversed(range(len(jobs))):
        if not futures[i].cancel():
            break
        drawn[i] = render_image(*jobs[i])
    return drawn


def default_image(images_root: Path, request: RenderRequest) -> Path:
    return image_path(
        images_root, request.exchange, request.metric, request.period, request.range_days
    )


def _record(conn: duckdb.DuckDBPyConnection, request: RenderRequest, result: RenderResult) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO heatmap_images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            str(result.path),
            request.exchange,
            request.metric,
            request.period,
            result.range_label,
            request.theme,
            request.color_by,
            result.data_end,
            result.n_coins,
            result.n_buckets,
            request.simulated,
            result.path.stat().st_size,
            datetime.now(UTC).replace(tzinfo=None),
        ],
    )
