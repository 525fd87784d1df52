"""Unit tests run in this process alone: no program is started and no network socket is used.

Both are refused here (an `AssertionError` naming the call), so a test that needs a broker, a
browser or a subprocess lives in its tier, `tests/integration` (a real Kafka broker) or
`tests/e2e` (subprocesses, sockets, a built wheel), or says so with a marker (`browser`: drives
Chromium; `slow`: starts a program or opens a socket), which `make unit` leaves out. Unix
sockets (asyncio's self-pipe) and worker processes of `multiprocessing` (the demo lands in
one) stay allowed: they are this program's own parts, not outside services.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


def _refuse(what: str) -> Any:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(
            f"a unit test may not use {what} ({args[1:2] or ''}): mark it slow or move it to "
            "tests/integration or tests/e2e"
        )

    return refused


@pytest.fixture(autouse=True)
def _in_process_only(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if any(request.node.get_closest_marker(m) for m in ("slow", "browser", "integration")):
        yield
        return
    for name in ("connect", "connect_ex", "bind"):
        original = getattr(socket.socket, name)

        def guarded(self: socket.socket, address: Any, *, _original: Any = original) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                raise AssertionError(
                    f"a unit test may not use the network ({address!r}): mark it slow or "
                    "move it to tests/integration or tests/e2e"
                )
            return _original(self, address)

        monkeypatch.setattr(socket.socket, name, guarded)
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("a subprocess"))
    yield
