"""The dbt property files of `sql/` (`<layer>/_models.yml`), their descriptions generated from the
one home of the column docs: the models' header comments and `sql/columns.yml`.

dbt persists descriptions as DuckDB comments (`persist_docs`) only from property files, and the
builder writes them from the headers; so the descriptions in `_models.yml` are generated, never
edited by hand, from a warehouse the builder built (its comments are exactly the builder's), and
the data tests in the same files (`data_tests:` of a model or a column) are kept as they are:

    python -m pipeline.models.dbt_props --db out/warehouse.duckdb           # rewrite the files
    python -m pipeline.models.dbt_props --db out/warehouse.duckdb --check   # exit 1 when stale

A unit test builds a warehouse and fails when a committed file differs from what this writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import duckdb
import yaml

from pipeline.errors import ConfigError
from pipeline.models.build import LAYERS, load_models, read_yaml
from pipeline.resources import sql_dir

FILE_NAME = "_models.yml"
_HEADER = (
    "# dbt properties of the {layer} models. Descriptions are generated from the models' header\n"
    "# comments and sql/columns.yml (python -m pipeline.models.dbt_props --db <warehouse>): edit\n"
    "# those, not these. The data_tests are hand-written and kept when the file is regenerated.\n"
)


def render_properties(con: duckdb.DuckDBPyConnection, root: Path | None = None) -> dict[Path, str]:
    """Per layer: the path of its property file and the text it should have."""
    root = root or sql_dir()
    out: dict[Path, str] = {}
    models = load_models(root)
    for layer in LAYERS:
        path = root / layer / FILE_NAME
        kept = _existing_tests(path)
        entries = []
        for model in sorted((m for m in models if m.layer == layer), key=lambda m: m.name):
            entries.append(_model_entry(con, model.name, kept.get(model.name, {})))
        if not entries:
            continue
        body = yaml.safe_dump(
            {"version": 2, "models": entries},
            sort_keys=False,
            width=100,
            allow_unicode=True,
            default_flow_style=False,
        )
        out[path] = _HEADER.format(layer=layer) + body
    return out


def _model_entry(con: duckdb.DuckDBPyConnection, name: str, kept: dict[str, Any]) -> dict[str, Any]:
    row = con.execute(
        "select comment from duckdb_tables() where table_name = ?"
        " union all select comment from duckdb_views() where view_name = ?",
        [name, name],
    ).fetchone()
    if row is None:
        raise ConfigError(f"model {name} is not in the warehouse: rebuild it first")
    entry: dict[str, Any] = {"name": name, "description": row[0] or ""}
    if kept.get("data_tests"):
        entry["data_tests"] = kept["data_tests"]
    columns = []
    kept_columns = kept.get("columns", {})
    for column, comment in con.execute(
        "select column_name, comment from duckdb_columns() where table_name = ?"
        " order by column_index",
        [name],
    ).fetchall():
        item: dict[str, Any] = {"name": column, "description": comment or ""}
        if kept_columns.get(column):
            item["data_tests"] = kept_columns[column]
        columns.append(item)
    entry["columns"] = columns
    return entry


def _existing_tests(path: Path) -> dict[str, dict[str, Any]]:
    """model -> {"data_tests": [...], "columns": {column: [...]}} of the file as it is."""
    if not path.exists():
        return {}
    loaded = read_yaml(path)
    out: dict[str, dict[str, Any]] = {}
    for model in loaded.get("models", []) or []:
        columns = {
            str(c["name"]): c["data_tests"]
            for c in model.get("columns", []) or []
            if c.get("data_tests")
        }
        out[str(model["name"])] = {"data_tests": model.get("data_tests"), "columns": columns}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, type=Path, help="a warehouse the builder built")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = parser.parse_args(argv)
    if not args.db.is_file():
        print(f"{args.db}: no warehouse (build it with `microdc models build`)", file=sys.stderr)
        return 2
    with duckdb.connect(str(args.db), read_only=True) as con:
        files = render_properties(con)
    stale = [p for p, text in files.items() if not p.exists() or p.read_text("utf-8") != text]
    if args.check:
        for path in stale:
            print(f"{path}: stale (run python -m pipeline.models.dbt_props --db ...)")
        return 1 if stale else 0
    for path in stale:
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
