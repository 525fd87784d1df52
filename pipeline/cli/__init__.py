"""The `microdc` command line: parse options, call one library function, map errors to exits.

One module per command group, each registering its commands on the Typer apps of `base`:
`run` (simulate, process, demo), `collect`, `kafka` (worker, land, topics, kafka), `lake` (compact,
rebuild), `warehouse` (models, export, report, quality), `reference` (fleet, schemas, docs,
config); `render` draws every table; `main` is the entry point that turns errors into one line.
"""

from pipeline.cli import collect, kafka, lake, reference, run, warehouse  # noqa: F401 - register commands
from pipeline.cli.base import DEBUG_ENV, WORKER_STORES, app, parse_duration, parse_start
from pipeline.cli.main import main

__all__ = ["DEBUG_ENV", "WORKER_STORES", "app", "main", "parse_duration", "parse_start"]
