"""Read-only queries over a built warehouse that are not models (the report's, the demo's
summary): each is one file in `sql/analyses/` (dbt's word for them), read into typed rows by
column name, never by position.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from functools import cache
from typing import Any, TypeVar

import duckdb

from pipeline.errors import PipelineError
from pipeline.resources import sql_dir

T = TypeVar("T")


@cache
def analysis_sql(name: str) -> str:
    """The SQL of `sql/analyses/<name>.sql`."""
    path = sql_dir() / "analyses" / f"{name}.sql"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read the query: {exc}") from exc


def rows_as(con: duckdb.DuckDBPyConnection, name: str, row_type: type[T]) -> list[T]:
    """Run the analysis `name` and build one `row_type` (a dataclass) per row from the columns
    of the same names; a column the class does not have, or a field without a default the query
    does not return, is an error naming both."""
    cursor = con.execute(analysis_sql(name))
    columns = [d[0] for d in cursor.description or ()]
    convert = _converters(row_type)
    unknown = [c for c in columns if c not in convert]
    required = {
        f.name
        for f in fields(row_type)  # type: ignore[arg-type]
        if f.default is MISSING and f.default_factory is MISSING
    }
    missing = sorted(required - set(columns))
    if unknown or missing:
        raise PipelineError(
            f"sql/analyses/{name}.sql does not match {row_type.__name__}: "
            f"unknown columns {unknown}, missing {missing}"
        )
    return [
        row_type(**{c: convert[c](v) for c, v in zip(columns, row, strict=True)})
        for row in cursor.fetchall()
    ]


def _converters(row_type: type[Any]) -> dict[str, Any]:
    """Per field: the plain Python value of a DuckDB one (Decimal → float, and so on)."""
    if not is_dataclass(row_type):
        raise TypeError(f"{row_type!r} is not a dataclass")
    hints = typing.get_type_hints(row_type)
    return {f.name: _converter(hints[f.name]) for f in fields(row_type)}


def _converter(hint: Any) -> Any:
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if base in (float, int, str):
        if optional:
            return lambda v: None if v is None else base(v)
        return base
    return lambda v: v
