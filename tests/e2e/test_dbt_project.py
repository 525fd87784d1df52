"""sql/ under dbt itself: `dbt build` (models, schema tests, unit tests) over a small simulated
lake, into a warehouse whose dim_ tables `microdc models dims` wrote; its models must hold the
builder's rows (doubles to 1e-9: DuckDB sums floats in parallel, in no fixed order) and the
builder's table and column comments (persist_docs).

dbt-duckdb cannot share the project's environment (dbt-core 1.11 downgrades python-dateutil and
mypy): it runs from `.venv-dbt` (`make dbt-env`, which `make test` and `make e2e` run), or from
the dbt that MICRODC_DBT names.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.resources import sql_dir
from tests.support.factories import simulated_warehouse

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def dbt_executable() -> str:
    """MICRODC_DBT, else the repository's `.venv-dbt`; missing, the test fails saying how."""
    named = os.environ.get("MICRODC_DBT")
    dbt = Path(named) if named else REPO / ".venv-dbt" / "bin" / "dbt"
    if not dbt.exists():
        pytest.fail(
            f"no dbt at {dbt}: run `make dbt-env` (a separate venv with dbt-duckdb), "
            "or set MICRODC_DBT to a dbt executable"
        )
    return str(dbt)


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(the builder's warehouse, dbt's warehouse, dbt's output) over one simulated lake."""
    dbt = dbt_executable()
    root = tmp_path_factory.mktemp("dbt")
    ours = simulated_warehouse(root, 120)
    theirs = root / "dbt.duckdb"
    env = {
        **os.environ,
        "MICRODC_WAREHOUSE": str(theirs),
        "MICRODC_LAKE": str(root / "lake"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    env.pop("MICRODC_FLEET", None)  # simulated_warehouse uses the built-in demo fleet
    dims = run([sys.executable, "-m", "pipeline", "models", "dims"], env, root)
    assert dims.returncode == 0, dims.stdout + dims.stderr
    project = str(sql_dir())
    done = run(
        [
            dbt,
            "build",
            "--project-dir",
            project,
            "--profiles-dir",
            project,
            "--target-path",
            str(root / "target"),
            "--log-path",
            str(root / "logs"),
        ],
        env,
        root,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return ours, theirs, done.stdout


def test_dbt_build_runs_every_model_schema_test_and_unit_test(
    built: tuple[Path, Path, str],
) -> None:
    _, _, output = built
    assert "Completed successfully" in output
    assert "ERROR=0" in output and "WARN=0" in output
    assert " unit tests" in output and " data tests" in output
    assert "assert_chargeback_total_is_its_parts" in output
    assert "assert_chargeback_kwh_is_metered_kwh" in output


def _relations(con: duckdb.DuckDBPyConnection, db: str) -> dict[str, str]:
    rows = con.execute(
        "select table_name, 'table' from duckdb_tables() where database_name = ?"
        " and regexp_matches(table_name, '^(stg|int|fct)_')"
        " union all select view_name, 'view' from duckdb_views() where database_name = ?"
        " and regexp_matches(view_name, '^(stg|int|fct)_')",
        [db, db],
    ).fetchall()
    return {name: kind for name, kind in rows}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def test_dbt_models_hold_the_builders_rows_and_kinds(built: tuple[Path, Path, str]) -> None:
    ours, theirs, _ = built
    con = duckdb.connect()
    con.execute(f"attach '{ours}' as ours (read_only)")
    con.execute(f"attach '{theirs}' as theirs (read_only)")
    relations = _relations(con, "ours")
    assert len(relations) >= 15 and _relations(con, "theirs") == relations
    for name in sorted(relations):
        columns = con.execute(
            "select column_name, data_type from duckdb_columns()"
            " where database_name = 'ours' and table_name = ? order by column_index",
            [name],
        ).fetchall()
        theirs_columns = con.execute(
            "select column_name, data_type from duckdb_columns()"
            " where database_name = 'theirs' and table_name = ? order by column_index",
            [name],
        ).fetchall()
        assert theirs_columns == columns, name
        keys = ", ".join(f'"{c}"' for c, kind in columns if kind not in ("DOUBLE", "FLOAT"))
        a = con.execute(f"select * from ours.{name} order by {keys}").fetchall()
        b = con.execute(f"select * from theirs.{name} order by {keys}").fetchall()
        assert len(a) == len(b), name
        if name.startswith("fct_"):
            assert a, f"{name} is empty: the comparison would prove nothing"
        bad = [(x, y) for x, y in zip(a, b, strict=True) if not all(map(_same, x, y))]
        assert not bad, f"{name}: {len(bad)} rows differ, e.g. {bad[0]}"


def test_dbt_persists_the_builders_comments(built: tuple[Path, Path, str]) -> None:
    ours, theirs, _ = built
    con = duckdb.connect()
    con.execute(f"attach '{ours}' as ours (read_only)")
    con.execute(f"attach '{theirs}' as theirs (read_only)")

    def comments(db: str) -> set[tuple[str, str, str | None]]:
        rows = con.execute(
            "select table_name, column_name, comment from duckdb_columns()"
            " where database_name = ? and regexp_matches(table_name, '^(stg|int|fct)_')"
            " union all select table_name, '', comment from duckdb_tables()"
            " where database_name = ? and regexp_matches(table_name, '^(int|fct)_')"
            " union all select view_name, '', comment from duckdb_views()"
            " where database_name = ? and regexp_matches(view_name, '^(stg|int)_')",
            [db, db, db],
        ).fetchall()
        return set(rows)

    expected = comments("ours")
    assert all(comment for _, _, comment in expected)
    assert comments("theirs") == expected
