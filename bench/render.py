"""Rendering every default image (each exchange x period) from the warehouse."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import warehouse_path
from pipelines.images import default_requests
from pipelines.render import render_heatmap
from pipelines.warehouse import connect


@dataclass
class RenderFigures:
    images: int
    seconds: float
    total_bytes: int
    largest_bytes: int
    source: Path


def run(source: Path | None = None) -> RenderFigures:
    """Renders into a temporary folder, reading the warehouse (default: the demo's)."""
    source = source or warehouse_path()
    if not source.exists():
        raise SystemExit(f"{source} does not exist: run `make demo` first")
    with connect(source, read_only=True) as conn, tempfile.TemporaryDirectory() as out:
        requests = default_requests(conn)
        start = time.perf_counter()
        sizes = []
        for n, request in enumerate(requests):
            result = render_heatmap(conn, request, Path(out) / f"{n}.png")
            sizes.append(result.path.stat().st_size)
        seconds = time.perf_counter() - start
    return RenderFigures(len(sizes), seconds, sum(sizes), max(sizes, default=0), source)


def report(figures: RenderFigures) -> str:
    mean = figures.total_bytes / figures.images / 1024 if figures.images else 0
    return (
        f"Rendering: {figures.images} default images from {figures.source} in "
        f"{figures.seconds:.1f} s ({figures.seconds / max(figures.images, 1):.2f} s each); "
        f"files {mean:.0f} KB on average, largest {figures.largest_bytes / 1024:.0f} KB"
    )
