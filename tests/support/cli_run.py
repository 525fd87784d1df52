"""Run `microdc` in-process through `main` and read its one-line errors (CLI and config tests)."""

from __future__ import annotations

import pytest

from pipeline.cli import main


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`microdc *args` in this process through `main`: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def one_error_line(err: str) -> str:
    """The only non-empty line of `err`: an `error: ...` line, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]
