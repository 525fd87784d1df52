"""`microdc models build`: the lake and the fleet file -> a DuckDB warehouse of documented tables.

Models are the `.sql` files under `sql/` (DESIGN.md §8), which is also a dbt-duckdb project
(`sql/dbt_project.yml`): the same text builds here and under `dbt build`. `staging/stg_*.sql`,
`intermediate/int_*.sql` and `marts/*.sql` are views unless `{{ config(materialized='table') }}`
says table (as dbt does: every mart says so); the file name is the table name. A model reads a
lake dataset with `{{ source('silver', 'energy_minutes') }}`, a dim_ table of the fleet file
with `{{ source('fleet', 'dim_site') }}` and another model with `{{ ref('stg_energy_minutes') }}`;
`sql/macros/*.sql` are dbt macros (the dedup of re-emitted keys). The Jinja is rendered by
`pipeline.models.jinja`; the build orders the models by their `ref()`s (a cycle is an error
naming it, and so is a model named without `ref()`). Datasets with no files yet read as empty
tables with their declared Arrow schema, so a fresh lake builds.

Documentation lives in each file's header comment:

    -- Grain: one row per site x service x team x UTC hour.
    -- Energy per request by hour: ...
    -- @column requests: requests that finished in the hour

The first lines become the table comment, each `@column` line a column comment (`COMMENT ON`),
so an analyst sees them in `duckdb warehouse.duckdb` (`select * from duckdb_columns()`); the
columns a file does not document take their comment from `sql/columns.yml`. dbt persists the
same comments from the property files that `pipeline.models.dbt_props` generates from these.
Building is idempotent and atomic: a new file replaces the warehouse only when every model built.
"""

from __future__ import annotations

import graphlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from pipeline.errors import ConfigError, PipelineError
from pipeline.fleet.model import Fleet
from pipeline.lake.datasets import BY_NAME
from pipeline.lake.store import Lake
from pipeline.models.dims import dim_tables
from pipeline.models.jinja import load_macros, render
from pipeline.resources import sql_dir

LAYERS = ("staging", "intermediate", "marts")
_COLUMN_DOC = re.compile(r"^--\s*@column\s+(\w+)\s*:\s*(.+)$")
#: `source('fleet', ...)`: the dim_ tables the build writes from the fleet file
FLEET_SOURCE = "fleet"


class ModelError(PipelineError):
    """A model failed to build; names the file and DuckDB's reason."""


@dataclass
class Model:
    name: str
    layer: str
    path: Path
    sql: str
    description: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    depends_on: set[str] = field(default_factory=set)
    #: `{{ config(materialized='table') }}` in the SQL; a view otherwise (dbt's default)
    materialized: str = "view"


def load_models(root: Path) -> list[Model]:
    """Every model under `root`, in an order that respects their references."""
    models: dict[str, Model] = {}
    macros = load_macros(root)
    for layer in LAYERS:
        for path in sorted((root / layer).glob("*.sql")):
            text = path.read_text(encoding="utf-8")
            model = Model(path.stem, layer, path, text)
            header = []
            for line in text.splitlines():
                if not line.startswith("--"):
                    break
                match = _COLUMN_DOC.match(line)
                if match:
                    model.columns[match[1]] = match[2].strip()
                else:
                    header.append(line.removeprefix("--").strip())
            model.description = " ".join(h for h in header if h)
            if model.name in models:
                raise ConfigError(f"{path}: model {model.name} is defined twice")
            models[model.name] = model
    names = set(models)
    for model in models.values():
        rendered = render(model.sql, where=model.path, macros=macros, models=names)
        model.depends_on = rendered.refs - {model.name}
        model.materialized = rendered.materialized or "view"
        # a model named without ref() would build here in luck's order and not at all in dbt
        body = "\n".join(ln for ln in rendered.sql.splitlines() if not ln.lstrip().startswith("--"))
        bare = (set(re.findall(r"\b\w+\b", body)) & names) - rendered.refs - {model.name}
        if bare:
            listed = ", ".join(f"{{{{ ref('{n}') }}}}" for n in sorted(bare))
            raise ConfigError(f"{model.path}: name the models it reads as {listed}")
    sorter = graphlib.TopologicalSorter({m.name: m.depends_on for m in models.values()})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise ConfigError(f"models reference each other in a cycle: {exc.args[1]}") from exc
    return [models[name] for name in order]


@dataclass
class BuildResult:
    models: list[tuple[Model, int, float]]  # model, rows, seconds
    seconds: float


def build(
    lake: Lake,
    fleet: Fleet,
    db_path: Path | str,
    *,
    models_dir: Path | None = None,
    progress: Callable[[Model, int, int], None] | None = None,
) -> BuildResult:
    """Build every model into `db_path` (created or replaced object by object)."""
    root = models_dir or sql_dir()
    if not root.is_dir():
        raise ConfigError(f"{root}: no models directory (expected sql/staging, sql/marts, ...)")
    models = load_models(root)
    macros = load_macros(root)
    started = time.perf_counter()
    target = Path(db_path)
    # Built into a fresh file, then renamed over the target: readers of the warehouse see the
    # old one or the new one, and a failed build leaves the old one untouched.
    building = target.with_name(f".{target.name}.building-{os.getpid()}")
    building.unlink(missing_ok=True)
    con = duckdb.connect(str(building))
    _run(con, "set enable_progress_bar = false")  # the CLI shows its own progress
    done: list[tuple[Model, int, float]] = []
    try:
        words = glossary(root)
        write_dims(con, fleet, words)
        for i, model in enumerate(models):
            if progress is not None:
                progress(model, i, len(models))
            t0 = time.perf_counter()
            sql = render(
                model.sql,
                where=model.path,
                macros=macros,
                source=lambda layer, name: _source(con, lake, layer, name),
            ).sql
            body = sql.strip().rstrip(";")
            try:
                _run(con, f"create or replace {model.materialized} {model.name} as\n{body}")
                _document(con, model)
                _document_rest(con, model.name, words)
                rows = con.execute(f"select count(*) from {model.name}").fetchall()[0]
            except duckdb.Error as exc:
                raise ModelError(f"{model.path}: {exc}") from exc
            done.append((model, int(rows[0]) if rows else 0, time.perf_counter() - t0))
        con.close()
        building.replace(target)
    except BaseException:
        con.close()
        building.unlink(missing_ok=True)
        raise
    return BuildResult(done, time.perf_counter() - started)


def write_dims(con: duckdb.DuckDBPyConnection, fleet: Fleet, words: dict[str, str]) -> None:
    """The dim_ tables of the fleet file, documented (what `source('fleet', ...)` reads)."""
    for name, table in dim_tables(fleet).items():
        con.register(f"__{name}", table)
        _run(con, f"create or replace table {name} as select * from __{name}")
        con.unregister(f"__{name}")
        _run(con, f"comment on table {name} is {_quote(DIM_DOCS[name])}")
        _document_rest(con, name, words)


def build_dims(fleet: Fleet, db_path: Path | str, *, models_dir: Path | None = None) -> list[str]:
    """Write (or replace) only the dim_ tables into `db_path`, for a `dbt build` to read as the
    `fleet` source; returns their names. The rest of the file is left as it is."""
    root = models_dir or sql_dir()
    target = Path(db_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(target))
    except duckdb.Error as exc:
        raise ConfigError(f"{target}: cannot open the warehouse: {exc}") from exc
    try:
        write_dims(con, fleet, glossary(root))
    finally:
        con.close()
    return list(DIM_DOCS)


def _source(con: duckdb.DuckDBPyConnection, lake: Lake, layer: str, dataset: str) -> str:
    """SQL for a lake dataset: its files, or an empty table of its schema if it has none; for a
    fleet source, its dim_ table."""
    if layer == FLEET_SOURCE:
        if dataset not in DIM_DOCS:
            raise ConfigError(f"source('{layer}', '{dataset}') is not a dim_ table of the fleet")
        return dataset
    spec = BY_NAME.get(dataset)
    if spec is None or spec.layer != layer:
        raise ConfigError(f"source('{layer}', '{dataset}') is not a lake dataset")
    root = lake.dataset_root(spec)
    if any(f.endswith(".parquet") for f in lake.list_files(spec)):
        glob = f"{root}/**/*.parquet".replace("'", "''")
        return f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    name = f"empty_{layer}_{dataset}"  # a real (empty) table: views over it persist
    fields = [*spec.schema, pa.field("date", pa.date32())]
    if spec.partition_field is not None:
        fields.append(pa.field(spec.partition_field, pa.string()))
    con.register("__empty", pa.schema(fields).empty_table())
    _run(con, f"create or replace table {name} as select * from __empty")
    con.unregister("__empty")
    return name


#: dim_ table comments (their columns come from the glossary).
DIM_DOCS = {
    "dim_site": "Grain: one row per site. Reference data from the fleet file: location, grid "
    "zone, design PUE, capex, opex, and the hyperscale baseline it is compared with.",
    "dim_node": "Grain: one row per node. Reference data: site, rack, cores, power range, capex, "
    "embodied carbon, lifetime.",
    "dim_team": "Grain: one row per team. Cost center and monthly energy budget.",
    "dim_service": "Grain: one row per service x site it runs at. Owning team and SLOs.",
    "dim_tariff": "Grain: one row per site x tariff period. Energy price by local time of day.",
    "dim_fleet": "Grain: one row. Fleet-wide settings: carbon price, idle policy, currency.",
}


def read_yaml(path: Path) -> Any:
    """A YAML file of sql/ (empty: {}); invalid YAML is an error naming the file."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def glossary(root: Path) -> dict[str, str]:
    """`sql/columns.yml`: default comments by column name."""
    path = root / "columns.yml"
    if not path.exists():
        return {}
    loaded = read_yaml(path)
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of column name to description")
    return {str(k): str(v) for k, v in loaded.items()}


def _document_rest(con: duckdb.DuckDBPyConnection, table: str, words: dict[str, str]) -> None:
    """Comment every column of `table` that has none yet, from the glossary."""
    for (column,) in con.execute(
        "select column_name from duckdb_columns() where table_name = ? and comment is null",
        [table],
    ).fetchall():
        if column in words:
            _run(con, f"comment on column {table}.{column} is {_quote(words[column])}")


def _document(con: duckdb.DuckDBPyConnection, model: Model) -> None:
    kind = "table" if model.materialized == "table" else "view"
    if model.description:
        _run(con, f"comment on {kind} {model.name} is {_quote(model.description)}")
    existing = {
        row[0]
        for row in con.execute(
            "select column_name from duckdb_columns() where table_name = ?", [model.name]
        ).fetchall()
    }
    for column, text in model.columns.items():
        if column not in existing:
            raise ModelError(f"{model.path}: @column {column} documents no column of the model")
        _run(con, f"comment on column {model.name}.{column} is {_quote(text)}")


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> None:
    """Execute and consume the result (DuckDB 2.0 keeps an unread result pending otherwise)."""
    con.execute(sql, params).fetchall()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
