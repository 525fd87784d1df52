"""An output for `microdc collect`'s drivers in tests: records every batch it takes, refuses
them while `full` (what a full disk buffer does)."""

from __future__ import annotations

from pipeline.collect.service import PollResult


class RecordingOutput:
    def __init__(self) -> None:
        self.results: list[PollResult] = []
        self.full = False

    async def __call__(self, result: PollResult) -> bool:
        if self.full:
            return False
        self.results.append(result)
        return True

    @property
    def ids(self) -> list[str]:
        """The request ids taken, in order."""
        return [r.request_id for result in self.results for r in result.requests]
