"""Lake paths: sanitized hive partition values and segment file names.

    <lake>/<layer>/<dataset>/date=YYYY-MM-DD[/site_id=<id>]/<topic>+<partition>+<first>-<last>.parquet

A file name carries the Kafka topic, partition and the offset range of the segment it belongs
to (one segment of a topic-partition may be split over several date/site directories: each part
has the same name). Temp files start with a dot and do not end in `.parquet`, so no reader or
glob ever picks them up.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from urllib.parse import quote

_SAFE = frozenset(string.ascii_letters + string.digits + "._-")
_NAME = re.compile(
    r"^(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d+)-(?P<last>\d+)\.parquet$"
)
TEMP_MARK = ".tmp-"


def partition_value(value: object) -> str:
    """A value that is safe as one path component, whatever the record said.

    Ids of valid records (`[A-Za-z0-9][A-Za-z0-9._-]*`) pass unchanged. Anything else is
    percent-encoded like a URI segment (`/` -> `%2F`, so `../x` stays inside its directory), and
    the names `.`/`..`, a leading dot and the empty value are encoded too. Hive readers decode
    `%XX` back (pyarrow and Polars do; DuckDB shows the encoded text).
    """
    text = "__null__" if value is None else str(value)
    if text and text not in (".", "..") and text[0] != "." and all(c in _SAFE for c in text):
        return text[:200]
    encoded = quote(text, safe="")
    encoded = encoded.replace(".", "%2E") if encoded.startswith(".") else encoded
    return (encoded or "%00")[:200]


def file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}+{partition}+{first:020d}-{last:020d}.parquet"


@dataclass(frozen=True, order=True)
class SegmentName:
    """What a landed file's name says: the segment (topic-partition, offsets) it belongs to."""

    topic: str
    partition: int
    first: int
    last: int

    @property
    def name(self) -> str:
        return file_name(self.topic, self.partition, self.first, self.last)


def parse_file_name(name: str) -> SegmentName | None:
    """The segment of a landed file, or None for anything else (temps, foreign files)."""
    match = _NAME.match(name)
    if match is None:
        return None
    return SegmentName(
        match["topic"], int(match["partition"]), int(match["first"]), int(match["last"])
    )


def temp_name(final: str, token: str) -> str:
    """The hidden temp name a file is written under before its rename."""
    return f".{final.removesuffix('.parquet')}{TEMP_MARK}{token}"


def is_temp_of(name: str, topic: str, partition: int) -> bool:
    """True for temp files of `topic`'s `partition` (what a restart of its writer removes)."""
    return name.startswith(f".{topic}+{partition}+") and TEMP_MARK in name
