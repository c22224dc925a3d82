"""Rendering every default image (each exchange x period) from the warehouse, the way the
`heatmap_images` asset does: one read of what they show, one drawing process per core, the
catalogue written."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import warehouse_path
from pipelines.images import default_image, default_requests, render_and_record


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
    with tempfile.TemporaryDirectory() as out:
        warehouse = Path(out) / source.name  # the catalogue is written: never into the demo's
        shutil.copyfile(source, warehouse)
        # Flushed before the clock starts: else the catalogue write's commit (DuckDB syncs the
        # file) waits for the kernel to write out the whole fresh copy, 1.8 s of a year's 2 GB.
        with warehouse.open("rb+") as copy:
            os.fsync(copy.fileno())
        images = Path(out) / "images"
        start = time.perf_counter()
        results = render_and_record(
            warehouse,
            images,
            lambda db: [(r, default_image(images, r)) for r in default_requests(db)],
        )
        seconds = time.perf_counter() - start
        sizes = [result.path.stat().st_size for result in results]
    return RenderFigures(len(sizes), seconds, sum(sizes), max(sizes, default=0), source)


def report(figures: RenderFigures) -> str:
    mean = figures.total_bytes / figures.images / 1024 if figures.images else 0
    return (
        f"Rendering: {figures.images} default images from {figures.source} in "
        f"{figures.seconds:.1f} s ({figures.seconds / max(figures.images, 1):.2f} s each); "
        f"files {mean:.0f} KB on average, largest {figures.largest_bytes / 1024:.0f} KB"
    )
