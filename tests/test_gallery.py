"""The gallery lists what was rendered under the images folder, and nothing else."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipelines.gallery import gallery_app, image_url, write_gallery
from pipelines.warehouse import connect

PNG = b"\x89PNG\r\n\x1a\n"


def _record(conn, path: Path, exchange: str, simulated: bool) -> None:
    conn.execute(
        "INSERT INTO heatmap_images VALUES (?, ?, 'global_account', '1h', '7d', 'vik', "
        "'ln_ratio', ?, 50, 168, ?, 1, now()::TIMESTAMP)",
        [str(path), exchange, datetime(2026, 11, 23, 17), simulated],
    )


def test_gallery_links_images_under_the_root_by_relative_path(tmp_path: Path) -> None:
    root = tmp_path / "images"
    inside = root / "binance" / "global_account" / "1h_7d.png"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(PNG)
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(PNG)
    with connect(tmp_path / "w.duckdb") as conn:
        _record(conn, inside, "binance", simulated=True)
        _record(conn, outside, "<script>bybit", simulated=False)
        index = write_gallery(conn, root)
    page = index.read_text()
    assert index == root / "index.html"
    assert 'src="binance/global_account/1h_7d.png"' in page
    assert "SIMULATED" in page
    assert "elsewhere.png" not in page and "<script>" not in page  # outside the root: left out


async def test_the_gallery_server_serves_images_and_nothing_outside_them(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "binance" / "global_account").mkdir(parents=True)
    png = images / "binance" / "global_account" / "1h_7d.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n-not-a-real-image")
    (images / "index.html").write_text("<h1>gallery</h1>")
    (tmp_path / "secret.txt").write_text("not for the browser")

    async with TestClient(TestServer(gallery_app(images))) as client:
        await _browse(client, images, png)
    with pytest.raises(ValueError):
        image_url(images, tmp_path / "secret.txt")


async def _browse(client: TestClient, images: Path, png: Path) -> None:
    page = await client.get("/")
    assert page.status == 200 and "gallery" in await page.text()
    url = image_url(images, png, base="")
    assert url.startswith("/binance/global_account/1h_7d.png?v=")
    image = await client.get(url)
    assert image.status == 200 and (await image.read())[:4] == b"\x89PNG"
    assert image.headers["Cache-Control"] == "no-cache"
    for escape in ("/../secret.txt", "/%2e%2e/secret.txt", "/binance/../../secret.txt"):
        refused = await client.get(escape)
        assert refused.status in (403, 404), escape
        assert "not for the browser" not in await refused.text()
