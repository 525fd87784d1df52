"""The dbt subset of Jinja the models use, rendered without dbt: `source()`, `ref()`, `config()`
and the project's macros (`sql/macros/*.sql`), so one text builds under `microdc models build`
and under `dbt build` alike (DESIGN.md §8).

    {{ config(materialized='table') }}            -- records the materialization, renders ''
    select * from {{ ref('stg_energy_minutes') }} -- the model's name (a view or table in main)
    select * from {{ source('silver', 'site_minutes') }}  -- what the caller's resolver returns
    {{ dedup('source', 'key') }}                  -- a macro of sql/macros/

Only what dbt has is offered (no project-specific globals), and an unknown name is an error
(StrictUndefined), so a model that renders here also compiles under dbt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from pipeline.errors import ConfigError

#: source(layer, name) -> the SQL relation that reads it
SourceResolver = Callable[[str, str], str]
_MATERIALIZATIONS = ("table", "view")


@dataclass
class Rendered:
    """A model's SQL after Jinja, and what the Jinja said about it."""

    sql: str
    refs: set[str] = field(default_factory=set)
    sources: set[tuple[str, str]] = field(default_factory=set)
    #: `config(materialized=...)`, None when the model does not say
    materialized: str | None = None


def render(
    text: str,
    *,
    where: Path | str,
    macros: str = "",
    models: set[str] | None = None,
    source: SourceResolver | None = None,
) -> Rendered:
    """Render one model. `models` (when given) are the names `ref()` may name; `source`
    resolves `source()` (default: `<layer>.<name>`, enough to find the dependencies)."""
    out = Rendered("")

    def ref_(name: str, *more: str) -> str:
        if more:
            raise ConfigError(f"{where}: ref({name!r}, ...) names another project: not supported")
        if models is not None and name not in models:
            raise ConfigError(f"{where}: ref({name!r}) names no model of sql/ (a typo?)")
        out.refs.add(name)
        return name

    def source_(layer: str, name: str) -> str:
        out.sources.add((layer, name))
        return source(layer, name) if source is not None else f"{layer}.{name}"

    def config_(**options: Any) -> str:
        kind = options.get("materialized")
        if kind is not None:
            if kind not in _MATERIALIZATIONS:
                raise ConfigError(
                    f"{where}: config(materialized={kind!r}): expected one of "
                    f"{', '.join(_MATERIALIZATIONS)}"
                )
            out.materialized = str(kind)
        return ""

    context: dict[str, Any] = {"ref": ref_, "source": source_, "config": config_}
    env = _environment()
    try:
        if macros:
            module = env.from_string(macros, globals=context).make_module(vars=context)
            context.update(
                {name: getattr(module, name) for name in dir(module) if not name.startswith("_")}
            )
        out.sql = env.from_string(text, globals=context).render()
    except jinja2.TemplateError as exc:
        line = f" line {exc.lineno}" if isinstance(exc, jinja2.TemplateSyntaxError) else ""
        raise ConfigError(f"{where}{line}: {type(exc).__name__}: {exc}") from exc
    return out


def load_macros(root: Path) -> str:
    """The text of every `macros/*.sql` under `root`, as one Jinja template of definitions."""
    return "\n".join(
        path.read_text(encoding="utf-8") for path in sorted((root / "macros").glob("*.sql"))
    )


@cache
def _environment() -> jinja2.Environment:
    # SQL is not HTML: no autoescape. keep_trailing_newline: the text is the model's as written.
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
