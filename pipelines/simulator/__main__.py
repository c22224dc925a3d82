"""`python -m pipelines.simulator`: serve the simulated exchanges until Ctrl-C."""

from __future__ import annotations

import argparse

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
        "--rate-limit-scale",
        type=float,
        default=1.0,
        help="multiplies rate-limit windows and bans (0.05 = 20x shorter)",
    )
    parser.add_argument("--no-listing-gaps", action="store_true")
    args = parser.parse_args(argv)
    faults = FaultConfig(
        rate=args.fault_rate,
        kinds=tuple(args.fault_kinds.split(",")),
        seed=args.fault_seed,
        timeout_seconds=args.timeout_seconds,
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
