"""Reference data and generated files: `fleet validate|schema`, `schemas write`,
`docs data-dictionary`, `config show`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pipeline.cli.base import (
    config_app,
    docs_app,
    fleet_app,
    out,
    schemas_app,
    writing,
)
from pipeline.config import Settings
from pipeline.errors import PipelineError


@schemas_app.command("write")
def schemas_write(
    directory: Annotated[Path, typer.Option("--dir", help="Where schemas/ is.")] = Path("schemas"),
) -> None:
    """Regenerate the output-topic contracts (schemas/outputs/) from their Structs.

    Example: microdc schemas write --dir schemas
    """
    from pipeline.contracts.output_schemas import write_output_schemas

    with writing(directory / "outputs", "--dir"):
        paths = write_output_schemas(directory / "outputs")
    for path in paths:
        out.print(f"wrote {path}")


@docs_app.command("data-dictionary")
def docs_data_dictionary(
    out_file: Annotated[Path, typer.Option("--out", help="Markdown file to write.")] = Path(
        "docs/data-dictionary.md"
    ),
    check: Annotated[
        bool, typer.Option(help="Write nothing; exit 1 when the file is not up to date.")
    ] = False,
) -> None:
    """Generate the data dictionary of every lake dataset and warehouse table and column.

    Built from the contracts in schemas/ and the comments of the models in sql/.

    Example: microdc docs data-dictionary --out docs/data-dictionary.md
    """
    from pipeline.docs import data_dictionary

    text = data_dictionary()
    if check:
        current = out_file.read_text(encoding="utf-8") if out_file.is_file() else ""
        if current != text:
            raise PipelineError(
                f"{out_file} is stale: run `microdc docs data-dictionary --out {out_file}`"
            )
        out.print(f"{out_file} is up to date")
        return
    with writing(out_file):
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text, encoding="utf-8")
    out.print(f"wrote {out_file} ({len(text):,} characters)")


@fleet_app.command("validate")
def fleet_validate(
    path: Annotated[
        Path | None, typer.Argument(help="Fleet YAML; default: the demo fleet.")
    ] = None,
) -> None:
    """Check a fleet file and summarise it; errors name file, line, path and reason.

    Example: microdc fleet validate my-fleet.yaml
    """
    from pipeline.fleet import load_fleet

    fleet = load_fleet(path)
    table = Table("site", "city", "zone", "nodes", "services", "design PUE")
    for site in fleet.sites:
        services = [s.service for s in fleet.services if site.site_id in s.sites]
        table.add_row(
            site.site_id,
            site.city,
            site.grid_zone,
            str(len(fleet.nodes_by_site[site.site_id])),
            str(len(services)),
            f"{site.design_pue:.2f}",
        )
    out.print(table)
    out.print(f"{len(fleet.teams)} teams, {len(fleet.services)} services: valid")


@fleet_app.command("schema")
def fleet_schema(
    out_path: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout.")] = None,
) -> None:
    """Print (or write) the JSON Schema of fleet files, generated from the fleet types.

    Example: microdc fleet schema --out schemas/fleet.schema.json
    """
    from pipeline.fleet.schema import fleet_json_schema

    text = fleet_json_schema()
    if out_path is None:
        sys.stdout.write(text)
    else:
        with writing(out_path):
            out_path.write_text(text, encoding="utf-8")


@config_app.command("show")
def config_show() -> None:
    """Print every setting, its value (secrets masked) and where it came from.

    Sources: a MICRODC_* variable, the config file (--config, $MICRODC_CONFIG or ./microdc.toml)
    or the default; a command's flags still override them.

    Example: microdc --config microdc.toml config show
    """
    from pipeline.config import config_file, describe_settings

    settings = Settings()
    path, chosen_by = config_file()
    title = f"config file: {path} ({chosen_by})" if path else "config file: none"
    table = Table("setting", "value", "from", title=title)
    for name, value, source in describe_settings(settings):
        table.add_row(name, escape(value), escape(source))
    out.print(table)
