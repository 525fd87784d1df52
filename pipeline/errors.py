"""The error hierarchy: one root, specific subclasses; messages say what, where and how to fix."""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error this package raises on purpose; the CLI turns it into one clean line."""

    exit_code = 1


class ConfigError(PipelineError):
    """A setting, flag or reference file is wrong."""

    exit_code = 2


class LocatedConfigError(ConfigError):
    """A YAML configuration file is invalid; the message names the file, line, path inside it
    and why."""

    def __init__(self, file: str, path: str, reason: str, line: int | None = None) -> None:
        self.file = file
        self.path = path
        self.reason = reason
        self.line = line
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {path}: {reason}")


class FleetError(LocatedConfigError):
    """The fleet file is invalid."""


class CollectorFileError(LocatedConfigError):
    """The collector file (`microdc collect`) is invalid."""


class ContractError(PipelineError):
    """A record does not match its topic's contract (used for dead letters and file input)."""

    def __init__(self, topic: str, reason: str, where: str | None = None) -> None:
        self.topic = topic
        self.reason = reason
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}record for {topic} is invalid: {reason}")


class KafkaUnavailableError(PipelineError):
    """No Kafka broker could be reached or started."""

    exit_code = 3


class OutputError(PipelineError):
    """An output file or folder cannot be written (a file in the way, no permission, disk full).

    Raised by the CLI for the path a flag named, so the user reads which path, the system's
    reason and what to do - not a bare `OSError` that looks like a bug.
    """

    def __init__(self, path: str, reason: str, option: str = "--out") -> None:
        self.path = path
        self.reason = reason
        self.option = option
        super().__init__(
            f"cannot write {path}: {reason}; pass another {option} or make that place writable"
        )


class LandingError(PipelineError):
    """A closed segment of one topic-partition could not be landed in the lake.

    Nothing of it was committed, so a restart lands it again from `first`; the message names the
    topic, partition, offsets and cause so the operator can fix the cause (disk full, no
    permission, a record the lander cannot handle) before that restart.
    """

    def __init__(self, topic: str, partition: int, first: int, last: int, cause: str) -> None:
        self.topic = topic
        self.partition = partition
        self.first = first
        self.last = last
        self.cause = cause
        super().__init__(
            f"{topic}[{partition}] offsets {first}..{last}: segment not landed: {cause}; "
            "nothing of it was committed - fix the cause and run `microdc land` again"
        )


def one_line(message: str, limit: int = 1000) -> str:
    """`message` as one line for a terminal: its first and last non-empty lines, whitespace folded.

    Multi-line messages (a broker log tail, a fix-it hint after a newline) keep the headline and
    the last line, which usually holds the cause or the fix; `--debug` shows the whole text.
    """
    lines = [" ".join(line.split()) for line in message.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "(no message)"
    text = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
    if len(lines) == 2:
        text = f"{lines[0]} {lines[1]}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
