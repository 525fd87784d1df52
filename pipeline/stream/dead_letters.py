"""Dead letters: why a record could not be used, in the words both drivers write.

The Faust agents and the embedded runner call the same `classify` and `dead_letter`, so the
same bad record gets the same dead-letter row (same natural key, kind and detail) from either.
`classify` also takes what no record should cause - an exception from inside the core - and
calls it `internal_error`: the driver dead-letters the record and goes on (defence in depth;
DESIGN.md §6: one bad record never stops a worker).
"""

from __future__ import annotations

from typing import get_args

import msgspec

from pipeline.contracts.outputs import DeadLetter, ErrorKind
from pipeline.stream.errors import BadRecordError

ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)
#: Longest detail kept: a hostile record must not make its dead letter huge.
MAX_DETAIL = 500


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """(error kind, detail) for a record that could not be used; never raises."""
    if isinstance(exc, msgspec.ValidationError):
        return "invalid", _short(str(exc))
    if isinstance(exc, msgspec.DecodeError):
        return "malformed_json", _short(str(exc))
    if isinstance(exc, RecursionError):
        return "malformed_json", "JSON nested too deeply"
    if isinstance(exc, BadRecordError):
        return exc.kind, _short(str(exc))  # type: ignore[return-value]
    return "internal_error", _short(f"{type(exc).__name__}: {exc}")


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    kind: ErrorKind,
    detail: str,
) -> DeadLetter:
    """A dead-letter record; its natural key is the source position."""
    return DeadLetter(
        key=f"{topic}|{partition}|{offset}",
        source_topic=topic,
        partition=partition,
        offset=offset,
        record_key=key,
        value=value,
        error_kind=kind,
        error_detail=detail,
    )


def _short(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
