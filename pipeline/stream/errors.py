"""Errors of the stream stages: why a record that decoded cannot be used (its dead-letter kind)."""

from __future__ import annotations

from typing import ClassVar

from pipeline.errors import PipelineError


class BadRecordError(PipelineError):
    """A record that decoded but must not reach the numbers; `kind` is its dead-letter kind."""

    kind: ClassVar[str] = "invalid"


class UnknownReferenceError(BadRecordError):
    """A valid record names something the fleet file does not know (a node, a site, a service,
    a team, a grid zone), or names it with the wrong owner (a node of another site)."""

    kind = "unknown_reference"


class ImplausibleValueError(BadRecordError):
    """A value within its contract but outside the fleet's plausibility limits (e.g. a node
    drawing far more than its `max_power_w`)."""

    kind = "implausible_value"


class ImplausibleTimeError(BadRecordError):
    """An event time far ahead of its stream and of the driver's clock: it must not move a
    watermark (one request dated 2100 would make every later record of its partition late)."""

    kind = "implausible_time"
