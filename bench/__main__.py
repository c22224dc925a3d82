"""`python -m bench [ingest|history|render|derive|faults|readers|workers]`: the figures closing
notes report."""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

from bench import derive, history, ingest, reliability, render, workers

HISTORY_SCALE = 0.05
DERIVE_FOLDER = Path(".bench")  # git-ignored; the generated warehouses are rebuilt every run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    every = ["ingest", "history", "render", "derive", "faults", "readers", "workers"]
    # Checked by hand: argparse tests an empty or list default against `choices` as one value.
    parser.add_argument("what", nargs="*", help=f"any of {', '.join(every)} (default: all)")
    parser.add_argument("--days", type=int, default=1, help="day partitions per exchange")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="rate-limit window scale (1 = the real limits)"
    )
    parser.add_argument(
        "--json", action="store_true", help="derive only: print its figures as one JSON object"
    )
    args = parser.parse_args(argv)
    if args.json:
        if args.what != ["derive"]:
            parser.error("--json goes with `derive` alone")
        print(json.dumps(derive.run(DERIVE_FOLDER).as_json()))
        return 0
    args.what = args.what or every
    unknown = sorted(set(args.what) - set(every))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(every)}")
    if "ingest" in args.what:
        print(ingest.report(ingest.run(args.days, args.scale), args.days, args.scale), flush=True)
    if "history" in args.what:
        # Scaled windows: the real ones would make this a day-long run (the report gives the
        # floor at the real limits next to it).
        scale = min(args.scale, HISTORY_SCALE)
        print(history.report(history.run(scale), scale), flush=True)
    if "render" in args.what:
        print(render.report(render.run()), flush=True)
    if "derive" in args.what:
        print(derive.report(derive.run(DERIVE_FOLDER)), flush=True)
    if "faults" in args.what:
        runs = reliability.faults(args.days)
        print(reliability.faults_report(runs, args.days), flush=True)
    if "readers" in args.what:
        figures = reliability.readers(args.days)
        print(reliability.readers_report(figures, args.days), flush=True)
    if "workers" in args.what:
        print(workers.report(workers.run()), flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
