"""Which heatmaps to render by default, and the `heatmap_images` catalogue of rendered files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.config import DEFAULT_RANGE_DAYS
from pipelines.exchanges import CONNECTORS
from pipelines.render import CROSS, RenderRequest, RenderResult, image_path, render_heatmap
from pipelines.themes import DEFAULT_THEME
from pipelines.warehouse import one_row, table_exists

DEFAULT_METRIC = "global_account"


@dataclass(frozen=True)
class RenderedImage:
    result: RenderResult
    request: RenderRequest


def default_metric(exchange: str) -> str:
    """All-accounts where the exchange publishes it, else its own first kind."""
    metrics = CONNECTORS[exchange].METRICS
    return DEFAULT_METRIC if DEFAULT_METRIC in metrics else metrics[0]


def default_requests(conn: duckdb.DuckDBPyConnection) -> list[RenderRequest]:
    """One request per exchange with data and period, at the period's default range.

    Plus the cross-exchange view (exchange `CROSS`, metric `DEFAULT_METRIC`) per period for which
    `cross_exchange` has rows.
    """
    present = conn.execute(
        "SELECT DISTINCT exchange, metric, period FROM heatmap_matrix ORDER BY ALL"
    ).fetchall()
    requests = []
    for exchange, metric, period in present:
        wanted = exchange in CONNECTORS and metric == default_metric(exchange)
        if not wanted or period not in DEFAULT_RANGE_DAYS:
            continue
        requests.append(
            RenderRequest(
                exchange=exchange,
                metric=metric,
                period=period,
                range_days=DEFAULT_RANGE_DAYS[period],
                theme=DEFAULT_THEME,
                simulated=is_simulated(conn, exchange),
            )
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
    return requests


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


def render_and_record(
    conn: duckdb.DuckDBPyConnection,
    request: RenderRequest,
    images_root: Path,
    out: Path | None = None,
) -> RenderResult:
    out = out or image_path(
        images_root, request.exchange, request.metric, request.period, request.range_days
    )
    result = render_heatmap(conn, request, out)
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
    return result
