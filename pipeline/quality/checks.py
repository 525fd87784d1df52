"""`microdc quality check`: every suite and the reconciliations over a built DuckDB warehouse.

Each table is fetched with a read-only DuckDB connection into a pandas frame and validated by
its suite (`pipeline.quality.suites`) through Great Expectations (`pipeline.quality.gx`); the
invariants (`pipeline.quality.invariants`) are computed in DuckDB SQL and their frame validated
last; the Data Docs HTML is written once at the end.

Tables larger than `sample_rows` are validated on a deterministic sample, their first rows
ordered by the table's key, and the summary says so. The reconciliations always run on all rows
(in DuckDB).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from pipeline.errors import ConfigError
from pipeline.quality.gx import Gx
from pipeline.quality.invariants import reconcile, reconciliation_frame
from pipeline.quality.results import QualityResult, SuiteOutcome
from pipeline.quality.suites import (
    RECONCILIATION_KEY,
    RECONCILIATION_SUITE,
    TABLES,
    TableSpec,
    reconciliation_expectations,
)

SAMPLE_ROWS = 200_000


def _fetch(con: duckdb.DuckDBPyConnection, spec: TableSpec, sample_rows: int) -> tuple[Any, int]:
    count = con.execute(f"select count(*) from {spec.table}").fetchone()
    total = int(count[0]) if count else 0
    order = ", ".join(spec.key)
    frame = con.execute(
        f"select * from {spec.table} order by {order} limit {int(sample_rows)}"
    ).df()
    return frame, total


def run_checks(
    db_path: Path | str,
    docs_dir: Path | str | None = None,
    *,
    sample_rows: int = SAMPLE_ROWS,
    progress: Callable[[str], None] | None = None,
) -> QualityResult:
    """Validate every suite against the warehouse at `db_path` and write Data Docs to `docs_dir`
    (default `<db dir>/quality-docs/`)."""
    started = time.perf_counter()
    db = Path(db_path)
    if not db.is_file():
        raise ConfigError(f"{db}: no warehouse (build one: microdc models build, or microdc demo)")
    docs = Path(docs_dir) if docs_dir is not None else db.parent / "quality-docs"
    docs.mkdir(parents=True, exist_ok=True)
    gx = Gx(docs)
    suites: list[SuiteOutcome] = []
    notes: list[str] = []
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("set enable_progress_bar = false")  # our own progress, not DuckDB's
        tables = {
            name
            for (name,) in con.execute(
                "select table_name from duckdb_tables() union all "
                "select view_name from duckdb_views() where not internal"
            ).fetchall()
        }
        for spec in TABLES:
            if spec.table not in tables:
                if not spec.optional:
                    suites.append(
                        SuiteOutcome(
                            spec.suite, spec.table, 0, 0, error="table missing from the warehouse"
                        )
                    )
                continue
            if progress is not None:
                progress(spec.suite)
            try:
                frame, total = _fetch(con, spec, sample_rows)
            except duckdb.Error as exc:
                suites.append(
                    SuiteOutcome(spec.suite, spec.table, 0, 0, error=f"cannot read: {exc}")
                )
                continue
            outcome = SuiteOutcome(spec.suite, spec.table, len(frame), total)
            outcome.outcomes = gx.validate(
                spec.suite, spec.table, frame, spec.expectations, spec.key
            )
            if outcome.sampled:
                notes.append(
                    f"{spec.table}: validated a sample, the first {len(frame):,} of {total:,} rows "
                    f"ordered by ({', '.join(spec.key)})"
                )
            suites.append(outcome)
        if progress is not None:
            progress(RECONCILIATION_SUITE)
        rows = reconcile(con, tables, notes)
    finally:
        con.close()
    frame = reconciliation_frame(rows)
    recon = SuiteOutcome(RECONCILIATION_SUITE, "(DuckDB SQL)", len(frame), len(frame))
    recon.outcomes = gx.validate(
        RECONCILIATION_SUITE,
        "reconciliation",
        frame,
        reconciliation_expectations(r.invariant for r in rows),
        RECONCILIATION_KEY,
    )
    suites.append(recon)
    gx.build_docs()
    return QualityResult(db, docs, gx.version, suites, notes, time.perf_counter() - started)
