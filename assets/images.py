"""Images: the two-panel heatmap PNGs, one per exchange and period at the default range."""

from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from duckdb import DuckDBPyConnection

from pipelines.gallery import gallery_url, image_url
from pipelines.image_data import TABLES_READ, RenderRequest
from pipelines.images import default_image, default_requests, is_simulated, render_and_record
from pipelines.render import RenderResult
from pipelines.resources import PipelineSettings
from pipelines.themes import DEFAULT_THEME

# What the images read: the grid, the lines, the price and the zone shading of both views.
IMAGE_INPUTS = [AssetKey(table) for table in sorted(TABLES_READ)]


@asset(
    deps=IMAGE_INPUTS,
    group_name="images",
    pool="duckdb",
    description="Two-panel PNG per exchange and period (BTC price, BTC and alt-average L/S on "
    "top; coin x time heatmap of ln(ratio) below) under warehouse/images/, listed in table "
    "`heatmap_images`.",
)
def heatmap_images(context: AssetExecutionContext, settings: PipelineSettings) -> MaterializeResult:
    images_root = settings.images_dir()
    rendered = render_and_record(
        settings.warehouse_file(),
        images_root,
        lambda snapshot: [(r, default_image(images_root, r)) for r in default_requests(snapshot)],
    )
    gallery = images_root / "index.html"
    for result in rendered:
        context.log.info(f"wrote {result.path}")
    metadata: dict[str, Any] = {
        "images": len(rendered),
        "gallery_file": MetadataValue.path(str(gallery)),
        "paths": MetadataValue.md("\n".join(f"- `{r.path}`" for r in rendered) or "none"),
    }
    if rendered:
        # The hourly image has the most data behind it on a young warehouse: show that one.
        metadata |= _preview(
            next((r for r in rendered if r.period == "1h"), rendered[0]), images_root
        )
    return MaterializeResult(metadata=metadata)


def _preview(result: RenderResult, images_root: Path) -> dict[str, Any]:
    """The image inline on the asset page, by its URL on the gallery server (`make dev` starts
    it): Dagster shows markdown of under 1,000 characters inline, and an embedded image is far
    larger. The file path stays beside it for when the server is not running, and the gallery
    page is linked for the other images."""
    url = image_url(images_root, result.path)
    return {
        "preview": MetadataValue.md(f"![{result.exchange} {result.period}]({url})"),
        "preview_file": MetadataValue.path(str(result.path)),
        "gallery": MetadataValue.url(f"{gallery_url()}/"),
    }


class ImageRequest(Config):
    """One image on request: the same choices as `lsr render`."""

    exchange: str = "binance"
    metric: str = "global_account"
    period: str = "1h"
    range_days: int = 7
    theme: str = DEFAULT_THEME
    color_by: str = "ln_ratio"


@asset(
    deps=IMAGE_INPUTS,
    group_name="images",
    pool="duckdb",
    description="Renders one image on request (exchange, metric or candle_flow, period, range "
    "7-365 days, "
    "theme, colour by ln_ratio or zscore) from the warehouse, without fetching: set the run "
    "config in the launchpad. Listed in `heatmap_images` and the gallery like the defaults.",
)
def heatmap_image_on_request(
    context: AssetExecutionContext, config: ImageRequest, settings: PipelineSettings
) -> MaterializeResult:
    images_root = settings.images_dir()

    def plan(snapshot: DuckDBPyConnection) -> list[tuple[RenderRequest, Path]]:
        request = RenderRequest(
            exchange=config.exchange, metric=config.metric, period=config.period,
            range_days=config.range_days, theme=config.theme, color_by=config.color_by,
            simulated=is_simulated(snapshot, config.exchange),
        )  # fmt: skip
        return [(request, default_image(images_root, request))]

    (result,) = render_and_record(settings.warehouse_file(), images_root, plan)
    context.log.info(f"wrote {result.path}")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(result.path)),
            **_preview(result, images_root),
            "n_coins": result.n_coins,
            "data_end": str(result.data_end),
        }
    )
