"""The entry point: every error is one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import os
import sys
import traceback

from rich.markup import escape

from pipeline.cli.base import (
    DEBUG_ENV,
    app,
    console,
    globals_,
)
from pipeline.config import use_config_file
from pipeline.errors import PipelineError, one_line


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error is one line on stderr and a non-zero exit, never a traceback.

    Typer (standalone mode) reports usage errors itself (exit 2). Library errors
    (`PipelineError`) exit with their code, anything unexpected with 1, naming the exception;
    `--debug` or MICRODC_DEBUG=1 adds the traceback. `argv` defaults to `sys.argv[1:]`.
    """
    globals_.log_format, globals_.debug = None, False
    use_config_file(None)
    try:
        app(args=argv, prog_name="microdc")
    except PipelineError as exc:
        _fail(exc, str(exc), exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the last resort: one line instead of a traceback
        _fail(
            exc,
            f"unexpected {type(exc).__name__}: {exc} (a bug? rerun with --debug or "
            f"{DEBUG_ENV}=1 for the traceback)",
            1,
        )


def _fail(exc: BaseException, message: str, code: int) -> None:
    debug = globals_.debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in (
        "",
        "0",
        "false",
        "no",
    )
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    text = message if debug else one_line(message)
    console.print(f"[red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    sys.exit(code)
