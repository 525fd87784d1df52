"""The committed data dictionary is what `microdc docs data-dictionary` generates now."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipeline.docs import data_dictionary
from pipeline.lake.datasets import DATASETS

DICTIONARY = Path(__file__).resolve().parents[2] / "docs" / "data-dictionary.md"


@pytest.fixture(scope="module")
def generated() -> str:
    return data_dictionary()


def test_committed_dictionary_is_current(generated: str) -> None:
    assert DICTIONARY.read_text(encoding="utf-8") == generated, (
        "docs/data-dictionary.md is stale: run `microdc docs data-dictionary`"
    )


def test_every_dataset_and_warehouse_object_has_a_section(generated: str, tmp_path: Path) -> None:
    from pipeline.fleet import load_fleet
    from pipeline.lake import Lake
    from pipeline.models.build import build

    for dataset in DATASETS:
        assert f"### {dataset.layer}.{dataset.name}\n" in generated
    db = tmp_path / "w.duckdb"
    build(Lake(tmp_path / "lake"), load_fleet(None), db)
    with duckdb.connect(str(db), read_only=True) as con:
        names = [
            n
            for (n,) in con.execute(
                "select table_name from duckdb_tables() union all "
                "select view_name from duckdb_views() where not internal"
            ).fetchall()
            if not n.startswith("empty_")
        ]
    assert {n for n in names if n.startswith("fct_")} >= {
        "fct_chargeback_monthly",
        "fct_roi_site",
        "fct_energy_per_request_hourly",
    }
    for name in names:
        assert f"### {name}\n" in generated, name


def test_every_documented_column_has_a_meaning(generated: str) -> None:
    blank = [line for line in generated.splitlines() if line.startswith("| `") and "|  |" in line]
    assert blank == []
