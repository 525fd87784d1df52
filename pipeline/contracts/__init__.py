"""Topic contracts: records (msgspec Structs mirroring `schemas/`), topics and their codec."""

from pipeline.contracts.codec import decode, encode
from pipeline.contracts.records import (
    FacilitySample,
    GridIntensity,
    InputRecord,
    NodeSample,
    RequestLog,
)
from pipeline.contracts.topics import (
    ALL_TOPICS,
    INPUT_TOPICS,
    OUTPUT_TOPICS,
    TopicSpec,
    topic_for,
)

__all__ = [
    "ALL_TOPICS",
    "INPUT_TOPICS",
    "OUTPUT_TOPICS",
    "FacilitySample",
    "GridIntensity",
    "InputRecord",
    "NodeSample",
    "RequestLog",
    "TopicSpec",
    "decode",
    "encode",
    "topic_for",
]
