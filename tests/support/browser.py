"""Headless Chromium for browser tests: Debian's `chromium` driven by Playwright.

Playwright's own browser download is not reachable here, so it launches the system binary
(`MICRODC_CHROMIUM`, else `chromium` on PATH; `make browser` installs it). Tests marked
`browser` fail with a message saying how to get it when it is missing; they never skip.

Every page opened through `open_page` records console errors and uncaught page errors in
`BrowserPage.errors`, so a test can assert that a page loaded cleanly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts"

# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# closed network refuses; --no-sandbox because CI runs as root.
_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    """Path of the Chromium binary, or fail the test with how to get one."""
    wanted = os.environ.get("MICRODC_CHROMIUM", "chromium")
    found = shutil.which(wanted)
    if not found:
        pytest.fail(
            f"no Chromium at {wanted!r}: run `make browser` (installs Debian's chromium) "
            "or set MICRODC_CHROMIUM=/path/to/chromium",
            pytrace=False,
        )
    return found


@dataclass
class BrowserPage:
    """A loaded page and what went wrong while it ran."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        """Save a full-page PNG under out/test-artifacts/ and return its path."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextmanager
def open_page(url: str, *, width: int = 1400, height: int = 1000) -> Iterator[BrowserPage]:
    """Open `url` in a fresh headless Chromium and yield the page with its error log."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=_FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            loaded = BrowserPage(page)
            page.on(
                "console",
                lambda msg: (
                    loaded.errors.append(f"console.{msg.type}: {msg.text}")
                    if msg.type == "error"
                    else None
                ),
            )
            page.on("pageerror", lambda exc: loaded.errors.append(f"pageerror: {exc}"))
            page.goto(url, wait_until="load")
            yield loaded
        finally:
            browser.close()
