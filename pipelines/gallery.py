"""`index.html` beside the images (every rendered PNG, grouped by exchange, for analysts) and
the small web server that shows it, so the Dagster UI can show an image inline by its URL."""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import duckdb
from aiohttp import web

# Where `lsr gallery` (started by `make dev`) serves the images folder; the Dagster asset pages
# link their previews here.
DEFAULT_GALLERY_URL = "http://127.0.0.1:3001"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>L/S ratio heatmaps</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
h2 {{ margin-top: 2rem; border-bottom: 1px solid #ddd; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; }} img {{ width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: .9rem; }} .sim {{ color: #c0392b; font-weight: bold; }}
</style></head><body>
<h1>Long/short ratio heatmaps</h1>
<p>Generated {generated}. Each image: BTC price and L/S ratios on top, one row per coin below
(colour = ln(ratio), 0 = balanced). Click an image for the full size.</p>
{sections}
</body></html>
"""


def write_gallery(conn: duckdb.DuckDBPyConnection, images_root: Path) -> Path:
    """(Re)write images_root/index.html from the `heatmap_images` table."""
    rows = conn.execute(
        """SELECT path, exchange, metric, period, range, theme, color_by, data_end, simulated
           FROM heatmap_images ORDER BY exchange, metric, period, range"""
    ).fetchall()
    root = images_root.resolve()
    sections: dict[str, list[str]] = {}
    for path, exchange, metric, period, range_, theme, color_by, data_end, simulated in rows:
        file = Path(path).resolve()
        if not file.is_relative_to(root) or not file.exists():
            continue  # an --out file elsewhere, or one deleted since: not part of the gallery
        link = html.escape(os.path.relpath(file, root).replace(os.sep, "/"), quote=True)
        caption = html.escape(
            f"{metric} · {period} · {range_} · {theme} · {color_by} · data to {data_end} UTC"
        )
        badge = ' <span class="sim">SIMULATED</span>' if simulated else ""
        sections.setdefault(exchange, []).append(
            f'<figure><a href="{link}"><img src="{link}" alt="{caption}" loading="lazy"></a>'
            f"<figcaption>{caption}{badge}</figcaption></figure>"
        )
    body = "\n".join(
        f'<h2>{html.escape(exchange)}</h2>\n<div class="grid">\n' + "\n".join(items) + "\n</div>"
        for exchange, items in sections.items()
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    images_root.mkdir(parents=True, exist_ok=True)
    index = images_root / "index.html"
    index.write_text(PAGE.format(generated=generated, sections=body or "<p>No images yet.</p>"))
    return index


def gallery_url() -> str:
    """The gallery server's address: `LSR_GALLERY_URL` or http://127.0.0.1:3001."""
    return os.environ.get("LSR_GALLERY_URL", DEFAULT_GALLERY_URL).rstrip("/")


def image_url(images_root: Path, image: Path, base: str | None = None) -> str:
    """The URL the gallery server serves `image` at (it must lie inside `images_root`)."""
    relative = image.resolve().relative_to(images_root.resolve())
    stamp = int(image.stat().st_mtime)  # a new render is a new URL: no stale browser cache
    return f"{gallery_url() if base is None else base}/{quote(relative.as_posix())}?v={stamp}"


def gallery_app(images_root: Path) -> web.Application:
    """Read-only static files of `images_root`; `/` is the gallery page."""
    root = images_root.resolve()
    root.mkdir(parents=True, exist_ok=True)

    async def index(_request: web.Request) -> web.StreamResponse:
        page = root / "index.html"
        if not page.exists():
            return web.Response(text="No images yet: run `make demo` or `lsr run`.")
        return web.FileResponse(page)

    async def no_cache(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Cache-Control"] = "no-cache"

    app = web.Application()
    app.on_response_prepare.append(no_cache)
    app.router.add_get("/", index)
    # aiohttp's static route refuses paths that leave `root` (.. and symlinks out of it).
    app.router.add_static("/", root, show_index=False, follow_symlinks=False)
    return app


def serve_gallery(images_root: Path, *, host: str = "127.0.0.1", port: int = 3001) -> None:
    """Serve until interrupted (the `lsr gallery` command)."""
    web.run_app(
        gallery_app(images_root),
        host=host,
        port=port,
        print=lambda _: print(f"Gallery of {images_root} on http://{host}:{port}/", flush=True),
    )
