"""Fault injection for tests: malformed, late, out-of-order and duplicated records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from pipeline.errors import ConfigError

MALFORMED_KINDS = (
    "not_json",
    "truncated",
    "wrong_type",
    "missing_field",
    "out_of_range",
    "naive_timestamp",
)
_TIME_FIELDS = ("observed_at", "finished_at", "valid_from")
_NUMERIC = ("power_w", "latency_ms", "facility_power_w", "carbon_intensity_gco2e_per_kwh")
_OUT_OF_RANGE: dict[str, Any] = {
    "cpu_util": 1.7,
    "status": 42,
    "facility_power_w": -5.0,
    "carbon_intensity_gco2e_per_kwh": -1.0,
}


@dataclass(frozen=True)
class FaultConfig:
    """Shares of injected faults. Each rate is a probability per valid record, drawn independently.

    `malformed`: a malformed copy follows the valid record (the valid one is kept, so nothing valid
    is lost); `late`: the record arrives after the allowed lateness (180-720 s behind by default);
    `out_of_order`: it arrives up to 90 % of the lateness bound behind; `duplicate`: the same bytes
    arrive a second time up to 30 s later.
    """

    malformed: float = 0.0
    late: float = 0.0
    out_of_order: float = 0.0
    duplicate: float = 0.0
    allowed_lateness_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("malformed", "late", "out_of_order", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"fault rate {name}={value} must be between 0 and 1")
        if self.late + self.out_of_order > 1.0:
            raise ConfigError("late + out_of_order rates must not exceed 1")

    @property
    def any(self) -> bool:
        return any((self.malformed, self.late, self.out_of_order, self.duplicate))


def corrupt(value: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """A malformed variant of a valid JSON record (never containing a newline)."""
    if kind == "not_json":
        return b"\x00\xfe<not json>" + bytes(rng.integers(32, 127, 8, dtype=np.uint8))
    if kind == "truncated":
        return value[: max(1, len(value) // 2)]
    doc: dict[str, Any] = msgspec.json.decode(value)
    if kind == "wrong_type":
        field = next(f for f in _NUMERIC if f in doc)
        doc[field] = "n/a"
    elif kind == "missing_field":
        doc.pop(next(f for f in _TIME_FIELDS if f in doc))
    elif kind == "out_of_range":
        field = next(f for f in _OUT_OF_RANGE if f in doc)
        doc[field] = _OUT_OF_RANGE[field]
    elif kind == "naive_timestamp":
        field = next(f for f in _TIME_FIELDS if f in doc)
        doc[field] = str(doc[field]).rstrip("Z")
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return msgspec.json.encode(doc)
