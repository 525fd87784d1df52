"""JSON encoding and validating decoding of topic records (msgspec: fast, typed, strict)."""

from __future__ import annotations

from functools import cache
from typing import TypeVar

import msgspec

from pipeline.errors import ContractError

T = TypeVar("T", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()


def encode(record: msgspec.Struct) -> bytes:
    """UTF-8 JSON bytes of `record`; timestamps come out as RFC 3339 with `Z`."""
    return _encoder.encode(record)


@cache
def decoder(record_type: type[T]) -> msgspec.json.Decoder[T]:
    """A cached validating decoder for one record type."""
    return msgspec.json.Decoder(record_type)


@cache
def list_decoder(record_type: type[T]) -> msgspec.json.Decoder[list[T]]:
    """A cached decoder for a JSON array of records (bulk paths)."""
    return msgspec.json.Decoder(list[record_type])  # type: ignore[valid-type]


def decode(record_type: type[T], raw: bytes, *, topic: str = "?", where: str | None = None) -> T:
    """Decode and validate one record; any failure becomes a `ContractError` saying why."""
    try:
        record: T = decoder(record_type).decode(raw)
        return record
    except msgspec.ValidationError as exc:
        raise ContractError(topic, f"invalid: {exc}", where) from exc
    except msgspec.DecodeError as exc:
        raise ContractError(topic, f"malformed JSON: {exc}", where) from exc
    except RecursionError as exc:
        raise ContractError(topic, "malformed JSON: nested too deeply", where) from exc
