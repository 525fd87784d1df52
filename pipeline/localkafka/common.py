"""What every part of pipeline.localkafka shares: the bootstrap variable, the fix-it hint,
the loopback address, packaged resources, a file lock and log tails."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

#: Set this to use an existing broker instead of starting one (tests, CLI).
BOOTSTRAP_ENV = "MICRODC_KAFKA_BOOTSTRAP"

#: The fix-it hint every "no broker" error carries.
HOW_TO_GET_A_BROKER = (
    "To get a broker: install Java 17+ and Maven (e.g. `apt-get install openjdk-17-jre-headless "
    "maven`) so pipeline.localkafka can fetch Kafka from Maven Central; or run one with "
    "`docker compose -f docker-compose.kafka.yml up -d kafka` and set "
    f"{BOOTSTRAP_ENV}=127.0.0.1:9092; or set {BOOTSTRAP_ENV} to any reachable broker."
)

_PACKAGE = "pipeline.localkafka"
#: The only address a local broker listens on.
LOOPBACK = "127.0.0.1"


def resource_text(name: str) -> str:
    """A text file shipped in the package (`pom.xml`, `log4j2.properties`)."""
    return resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if needed), held for the `with` body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def tail(text: str, lines: int = 30) -> str:
    """The last `lines` lines of `text` (a log or a tool's output), for error messages."""
    return "\n".join(text.strip().splitlines()[-lines:])
