"""`python -m pipelines.simulator`: serve the simulated exchanges until Ctrl-C."""

from __future__ import annotations

import argparse

from pipelines.processes import die_with_parent
from pipelines.simulator.server import EXCHANGES, FAULT_KINDS, FaultConfig, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--exchanges", default=",".join(EXCHANGES))
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument(
        "--fault-kinds",
        default=",".join(FaultConfig().kinds),
        help=f"comma separated, from {','.join(FAULT_KINDS)}",
    )
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--timeout-seconds", type=float, default=30.0)
    parser.add_argument(
        "--fault-repeat",
        type=float,
        default=None,
        help="chance that a faulted request, asked again, is faulted again (default: the rate)",
    )
    parser.add_argument("--fault-max-in-a-row", type=int, default=None)
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process (the caller) dies"
    )
    parser.add_argument(
        "--rate-limit-scale",
        type=float,
        default=1.0,
        help="multiplies rate-limit windows and bans (0.05 = 20x shorter)",
    )
    parser.add_argument("--no-listing-gaps", action="store_true")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    faults = FaultConfig(
        rate=args.fault_rate,
        kinds=tuple(args.fault_kinds.split(",")),
        seed=args.fault_seed,
        timeout_seconds=args.timeout_seconds,
        repeat=args.fault_repeat,
        max_in_a_row=args.fault_max_in_a_row,
    )
    serve(
        args.port,
        exchanges=tuple(args.exchanges.split(",")),
        faults=faults,
        rate_limit_scale=args.rate_limit_scale,
        listing_gaps=not args.no_listing_gaps,
    )


if __name__ == "__main__":
    main()
