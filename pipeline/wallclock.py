"""The drivers' clock: the one place the wall clock meets the stream core.

The core never reads it (STYLE: inject a clock); the Faust agents and the embedded runner hand
`wall_clock_ms` to the stages, which consult it only for a record whose event time runs far
ahead of its stream (the `implausible_time` check), never for a window or a total.
"""

from __future__ import annotations

import time


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch, now."""
    return time.time_ns() // 1_000_000
