"""The gallery lists what was rendered under the images folder, and nothing else."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pipelines.gallery import write_gallery
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
