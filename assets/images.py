"""Images: the two-panel heatmap PNGs, one per exchange and period at the default range."""

import base64
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from pipelines.images import default_requests, render_and_record
from pipelines.render import thumbnail_png
from pipelines.resources import PipelineSettings
from pipelines.warehouse import connect


@asset(
    deps=[AssetKey("btc_ls"), AssetKey("alt_average"), AssetKey("heatmap_matrix")],
    group_name="images",
    pool="duckdb",
    automation_condition=AutomationCondition.eager(),
    description="Two-panel PNG per exchange and period (BTC price, BTC and alt-average L/S on "
    "top; coin x time heatmap of ln(ratio) below) under warehouse/images/, listed in table "
    "`heatmap_images`.",
)
def heatmap_images(context: AssetExecutionContext, settings: PipelineSettings) -> MaterializeResult:
    images_root = settings.warehouse_file().parent / "images"
    with connect(settings.warehouse_file()) as conn:
        rendered = [
            render_and_record(conn, request, images_root) for request in default_requests(conn)
        ]
    for result in rendered:
        context.log.info(f"wrote {result.path}")
    metadata: dict[str, Any] = {
        "images": len(rendered),
        "paths": MetadataValue.md("\n".join(f"- `{r.path}`" for r in rendered) or "none"),
    }
    if rendered:
        first = rendered[0]
        thumb = base64.b64encode(thumbnail_png(first.path)).decode()
        metadata["preview"] = MetadataValue.md(
            f"![{first.exchange} {first.period}](data:image/png;base64,{thumb})"
        )
        metadata["preview_file"] = MetadataValue.path(str(first.path))
    return MaterializeResult(metadata=metadata)
