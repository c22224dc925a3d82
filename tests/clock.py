"""Clocks for the simulator in tests: no test sleeps to observe timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

# 2026-09-15 08:24:21.467 UTC: the moment of the real Bybit capture in tests/payloads.
NOW = 1_789_460_661.467


class Clock:
    """A frozen clock, moved by hand: `clock.now` is the simulator's epoch seconds."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def shifted_clock(moment: datetime) -> Callable[[], float]:
    """Real time moved to `moment`: the data sees that instant, rate limits see real seconds."""
    offset = moment.timestamp() - time.time()
    return lambda: time.time() + offset
