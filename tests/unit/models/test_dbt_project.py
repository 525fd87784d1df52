"""sql/ as a dbt project, in-process: the builder's Jinja (ref, source, config, macros), the
property files generated from the header comments, the dbt unit tests (`_unit_tests.yml`: given
rows -> expected rows) and the singular invariant tests (`sql/tests/`) run against the builder's
rendering of the same SQL. `tests/e2e/test_dbt_project.py` runs the same files under dbt."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from pipeline.errors import ConfigError, PipelineError
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.models.build import LAYERS, build, load_models
from pipeline.models.dbt_props import render_properties
from pipeline.models.export import FOCUS_COLUMNS, FOCUS_MART
from pipeline.models.jinja import load_macros, render
from pipeline.resources import sql_dir
from tests.support.factories import simulated_warehouse

SQL = sql_dir()
_INPUT = re.compile(r"^\s*(ref|source)\(\s*'(\w+)'\s*(?:,\s*'(\w+)'\s*)?\)\s*$")


@pytest.fixture(scope="module")
def empty_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every model built over a lake with no files: the schemas, and the builder's comments."""
    root = tmp_path_factory.mktemp("empty")
    db = root / "w.duckdb"
    build(Lake(root / "lake"), load_fleet(), db)
    return db


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_warehouse(tmp_path_factory.mktemp("simulated"), 90)


# --- the builder's Jinja ------------------------------------------------------------------------


def test_ref_source_and_config_render_as_dbt_does() -> None:
    text = (
        "{{ config(materialized='table') }}\n"
        "select * from {{ ref('stg_a') }} join {{ source('fleet', 'dim_site') }} using (site_id)"
    )
    out = render(text, where="m.sql", models={"stg_a"}, source=lambda layer, name: name)
    assert out.sql == "\nselect * from stg_a join dim_site using (site_id)"
    assert (out.refs, out.sources, out.materialized) == (
        {"stg_a"},
        {("fleet", "dim_site")},
        "table",
    )


def test_a_ref_to_no_model_and_unknown_jinja_are_errors_naming_the_file() -> None:
    with pytest.raises(ConfigError, match=r"m\.sql: ref\('stg_typo'\) names no model"):
        render("select * from {{ ref('stg_typo') }}", where="m.sql", models={"stg_a"})
    with pytest.raises(ConfigError, match=r"m\.sql.*no_such_macro"):
        render("{{ no_such_macro('x') }}", where="m.sql")
    with pytest.raises(ConfigError, match="materialized='ephemeral'"):
        render("{{ config(materialized='ephemeral') }}", where="m.sql")


def test_the_dedup_macro_renders_one_qualify_per_key() -> None:
    macros = load_macros(SQL)
    silver = render("{{ dedup('source', 'key') }}", where="m.sql", macros=macros).sql
    assert " ".join(silver.split()) == (
        "select * from source qualify row_number() over"
        " (partition by key order by _kafka_timestamp, _partition, _offset) = 1"
    )
    bronze = render(
        "{{ dedup('source', 'request_id', order_by='_partition, _offset') }}",
        where="m.sql",
        macros=macros,
    ).sql
    assert "partition by request_id order by _partition, _offset)" in bronze


def test_every_staging_model_deduplicates_with_the_macro() -> None:
    for path in sorted((SQL / "staging").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        assert "{{ dedup(" in text and "row_number()" not in text, path.name


def test_models_are_ordered_by_ref_and_a_bare_model_name_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "sql"
    (root / "staging").mkdir(parents=True)
    (root / "marts").mkdir()
    (root / "staging" / "stg_a.sql").write_text("select 1 as x")
    (root / "marts" / "fct_b.sql").write_text(
        "{{ config(materialized='table') }}\nselect x from {{ ref('stg_a') }}"
    )
    models = load_models(root)
    assert [(m.name, m.materialized) for m in models] == [("stg_a", "view"), ("fct_b", "table")]
    (root / "marts" / "fct_b.sql").write_text("select x from stg_a")
    with pytest.raises(PipelineError, match=r"fct_b\.sql: name the models.*ref\('stg_a'\)"):
        load_models(root)


def test_every_mart_is_a_table_and_the_project_covers_the_layers() -> None:
    project = yaml.safe_load((SQL / "dbt_project.yml").read_text(encoding="utf-8"))
    assert project["model-paths"] == list(LAYERS)
    assert project["macro-paths"] == ["macros"]
    marts = [m for m in load_models(SQL) if m.layer == "marts"]
    assert marts and all(m.materialized == "table" for m in marts)


# --- docs: one home ------------------------------------------------------------------------------


def test_the_dbt_property_files_match_the_header_comments(empty_warehouse: Path) -> None:
    with duckdb.connect(str(empty_warehouse), read_only=True) as con:
        files = render_properties(con)
    assert sorted(p.relative_to(SQL).as_posix() for p in files) == [
        f"{layer}/_models.yml" for layer in sorted(LAYERS)
    ]
    stale = [p.name for p, text in files.items() if p.read_text(encoding="utf-8") != text]
    assert not stale, (
        f"{stale}: stale; run `python -m pipeline.models.dbt_props --db out/warehouse.duckdb`"
    )


def test_the_focus_mart_has_the_export_columns_in_order(empty_warehouse: Path) -> None:
    with duckdb.connect(str(empty_warehouse), read_only=True) as con:
        columns = con.execute(
            "select column_name from duckdb_columns() where table_name = ? order by column_index",
            [FOCUS_MART],
        ).fetchall()
    assert [c for (c,) in columns] == list(FOCUS_COLUMNS)


# --- dbt unit tests, run here -------------------------------------------------------------------


def _unit_tests() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(SQL.glob("*/_unit_tests.yml")):
        cases.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["unit_tests"])
    return cases


def _relation(spec: str) -> tuple[str, str]:
    """`ref('m')` / `source('a', 'b')` -> (the table the test creates, the warehouse's twin)."""
    match = _INPUT.match(spec)
    assert match, f"unit test input {spec!r}: expected ref('...') or source('...', '...')"
    kind, first, second = match.groups()
    if kind == "ref":
        return first, first
    if first == "fleet":
        return second, second
    return f"src_{first}_{second}", ""


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        names = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join("?" for _ in row)
        con.execute(f"insert into {table} ({names}) values ({marks})", list(row.values()))


@pytest.mark.parametrize("case", _unit_tests(), ids=lambda c: c["name"])
def test_dbt_unit_test_passes_under_the_builder(
    case: dict[str, Any], empty_warehouse: Path
) -> None:
    models = {m.name: m for m in load_models(SQL)}
    model = models[case["model"]]
    con = duckdb.connect()
    con.execute(f"attach '{empty_warehouse}' as w (read_only)")
    sources: dict[tuple[str, str], str] = {}
    for given in case["given"]:
        table, twin = _relation(given["input"])
        match = _INPUT.match(given["input"])
        assert match is not None
        if match[1] == "source":
            sources[(match[2], match[3])] = table
        if given.get("format") == "sql":
            con.execute(f"create table {table} as {given['rows']}")
        else:
            assert twin, f"{given['input']}: give a lake source as format: sql"
            con.execute(f"create table {table} as select * from w.main.{twin} limit 0")
            _insert(con, table, given["rows"])
    sql = render(
        model.sql,
        where=model.path,
        macros=load_macros(SQL),
        models=set(models),
        source=lambda layer, name: sources[(layer, name)],
    ).sql
    con.execute(f"create table actual as {sql.strip().rstrip(';')}")
    expected_rows = case["expect"]["rows"]
    columns = ", ".join(f'"{c}"' for c in expected_rows[0])
    con.execute(f"create table expected as select {columns} from actual limit 0")
    _insert(con, "expected", expected_rows)
    missing = con.execute(
        f"select * from expected except all select {columns} from actual"
    ).fetchall()
    extra = con.execute(
        f"select {columns} from actual except all select * from expected"
    ).fetchall()
    assert (missing, extra) == ([], []), f"{case['name']}: expected but missing / not expected"


# --- singular tests (invariants), run here ------------------------------------------------------


def _render_test(path: Path, models: set[str] | None) -> str:
    """A singular test as the builder renders a model: with the project's macros, and the
    fleet source's dim_ tables by their names."""
    text = path.read_text(encoding="utf-8")
    source = lambda _layer, name: name  # noqa: E731
    return render(text, where=path, macros=load_macros(SQL), models=models, source=source).sql


@pytest.mark.parametrize("path", sorted((SQL / "tests").glob("*.sql")), ids=lambda p: p.stem)
def test_invariant_holds_on_a_simulated_warehouse(path: Path, simulated: Path) -> None:
    names = {m.name for m in load_models(SQL)}
    sql = _render_test(path, names)
    with duckdb.connect(str(simulated), read_only=True) as con:
        row = con.execute("select count(*) from fct_chargeback_monthly").fetchone()
        assert row is not None and row[0] > 0  # the invariant is not vacuous
        failures = con.execute(sql).fetchall()
    assert failures == []


def test_an_invariant_catches_a_broken_total(simulated: Path, tmp_path: Path) -> None:
    path = SQL / "tests" / "assert_chargeback_total_is_its_parts.sql"
    sql = _render_test(path, None)
    con = duckdb.connect()
    con.execute(f"attach '{simulated}' as w (read_only)")
    con.execute("create table fct_chargeback_monthly as select * from w.fct_chargeback_monthly")
    assert con.execute(sql).fetchall() == []
    # one row of one site-month off by a cent: that site-month fails, with one mismatched row
    con.execute(
        "update fct_chargeback_monthly set total_usd = total_usd + 0.01 where rowid = "
        "(select min(rowid) from fct_chargeback_monthly)"
    )
    failures = con.execute(sql).df()
    assert len(failures) == 1 and failures["mismatched"].tolist() == [1]
