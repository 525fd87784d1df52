"""`microdc models build`: the lake and the fleet file -> a DuckDB warehouse of documented tables.

Models are the `.sql` files under `sql/` (DESIGN.md §8): `staging/stg_*.sql` become views over the
lake, `intermediate/int_*.sql` views, `marts/*.sql` tables; the file name is the table name. A
model reads a lake dataset with `{{ source('silver', 'energy_minutes') }}` and other models by
their name; the build orders them by those references (a cycle is an error naming it). Datasets
with no files yet read as empty tables with their declared Arrow schema, so a fresh lake builds.

Documentation lives in each file's header comment:

    -- Grain: one row per site x service x team x UTC hour.
    -- Energy per request by hour: ...
    -- @column requests: requests that finished in the hour

The first lines become the table comment, each `@column` line a column comment (`COMMENT ON`),
so an analyst sees them in `duckdb warehouse.duckdb` (`select * from duckdb_columns()`). An
`-- @materialized: table` line makes an intermediate model a table (one that several marts read,
small enough to store), `-- @materialized: view` a mart a view.
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
from pipeline.resources import sql_dir

LAYERS = ("staging", "intermediate", "marts")
_SOURCE = re.compile(r"\{\{\s*source\(\s*'(\w+)'\s*,\s*'(\w+)'\s*\)\s*\}\}")
_COLUMN_DOC = re.compile(r"^--\s*@column\s+(\w+)\s*:\s*(.+)$")
_MATERIALIZED = re.compile(r"^--\s*@materialized\s*:\s*(table|view)\s*$")


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
    #: `-- @materialized: table` in the header overrides the layer's default
    materialized_as: str | None = None

    @property
    def materialized(self) -> str:
        if self.materialized_as is not None:
            return self.materialized_as
        return "table" if self.layer == "marts" else "view"


def load_models(root: Path) -> list[Model]:
    """Every model under `root`, in an order that respects their references."""
    models: dict[str, Model] = {}
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
                elif kind := _MATERIALIZED.match(line):
                    model.materialized_as = kind[1]
                else:
                    header.append(line.removeprefix("--").strip())
            model.description = " ".join(h for h in header if h)
            if model.name in models:
                raise ConfigError(f"{path}: model {model.name} is defined twice")
            models[model.name] = model
    names = set(models)
    for model in models.values():
        body = "\n".join(ln for ln in model.sql.splitlines() if not ln.lstrip().startswith("--"))
        words = set(re.findall(r"\b\w+\b", body))
        model.depends_on = (words & names) - {model.name}
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
        for name, table in dim_tables(fleet).items():
            con.register(f"__{name}", table)
            _run(con, f"create or replace table {name} as select * from __{name}")
            con.unregister(f"__{name}")
            _run(con, f"comment on table {name} is {_quote(DIM_DOCS[name])}")
            _document_rest(con, name, words)
        for i, model in enumerate(models):
            if progress is not None:
                progress(model, i, len(models))
            t0 = time.perf_counter()
            sql = _SOURCE.sub(lambda m: _source(con, lake, m[1], m[2]), model.sql)
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


def _source(con: duckdb.DuckDBPyConnection, lake: Lake, layer: str, dataset: str) -> str:
    """SQL for a lake dataset: its files, or an empty table of its schema if it has none."""
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


def glossary(root: Path) -> dict[str, str]:
    """`sql/columns.yml`: default comments by column name."""
    path = root / "columns.yml"
    if not path.exists():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
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
