"""The Great Expectations adapter against the installed GX, on a four-row frame (no warehouse).

Each test guards one GX structure `pipeline.quality.gx` relies on beyond GX's documented API:
when an upgrade moves it, the test naming it fails."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import pipeline
from pipeline.quality.gx import (
    Gx,
    condition_text,
    describe,
    exception_messages,
    expectation_results,
    import_gx,
    to_gx,
)
from pipeline.quality.results import ExpectationOutcome
from pipeline.quality.suites import TABLES, Expectation, reconciliation_expectations

FRAME = {"k": ["a", "b", "c", "d"], "v": [0.5, 2.0, 3.0, None], "src": ["m", "m", "x", "m"]}
EXPECTATIONS = [
    Expectation("not_null", ("k",)),
    Expectation("between", ("v",), 0, 1),
    Expectation("between", ("v",), 1, where=("src", "x")),
    Expectation("in_set", ("src",), value_set=("m",), where=("k", "c")),
    Expectation("not_null", ("missing",)),
    Expectation("compound_unique", ("k", "src")),
]


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gx") / "docs"


@pytest.fixture(scope="module")
def gx(docs: Path) -> Gx:
    return Gx(docs)


@pytest.fixture(scope="module")
def outcomes(gx: Gx) -> dict[str, ExpectationOutcome]:
    found = gx.validate("tiny.frame", "tiny", pd.DataFrame(FRAME), EXPECTATIONS, ("k",))
    return {o.expectation: o for o in found}


def _gx_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    return [name for name in names if name.split(".")[0] == "great_expectations"]


def test_only_the_adapter_imports_great_expectations() -> None:
    root = Path(pipeline.__file__).parent
    importers = {p.relative_to(root).as_posix() for p in root.rglob("*.py") if _gx_imports(p)}
    assert importers == {"quality/gx.py"}


def test_progress_bars_are_off(gx: Gx) -> None:
    # quiet_progress_bars: ProgressBarsConfig in great_expectations.data_context.types.base
    bars = gx.context.variables.progress_bars
    assert (bars.globally, bars.metric_calculations) == (False, False)


def test_a_row_condition_reads_back_from_the_expectation_config() -> None:
    # row_condition (great_expectations.expectations.row_conditions.Column) and condition_text
    # (the dict GX serializes it into)
    gxe = import_gx().expectations
    config = to_gx(gxe, Expectation("between", ("pue",), 1, where=("pue_source", "metered")))
    config = config.configuration
    assert condition_text(config.kwargs["row_condition"]) == "pue_source == 'metered'"
    assert describe(config) == "column_values_to_be_between(pue >= 1 where pue_source == 'metered')"


def test_every_suite_expectation_becomes_a_gx_expectation() -> None:
    gxe = import_gx().expectations
    specs = [e for t in TABLES for e in t.expectations] + reconciliation_expectations(["x"])
    described = [describe(to_gx(gxe, e).configuration) for e in specs]
    assert len(described) == len(specs)
    assert "column_values_to_be_in_set(ok in {True} where invariant == 'x')" in described
    assert "compound_columns_to_be_unique(node_id, observed_at)" in described
    assert "column_values_to_be_between(status >= 100 and <= 599)" in described


def test_outcomes_of_a_small_validation(outcomes: dict[str, ExpectationOutcome]) -> None:
    # expectation_results: CheckpointResult.run_results -> validation.results
    assert set(outcomes) == {
        "column_values_to_not_be_null(k)",
        "column_values_to_be_between(v >= 0 and <= 1)",
        "column_values_to_be_between(v >= 1 where src == 'x')",
        "column_values_to_be_in_set(src in {m} where k == 'c')",
        "column_values_to_not_be_null(missing)",
        "compound_columns_to_be_unique(k, src)",
    }
    passed = {name for name, o in outcomes.items() if o.success}
    assert passed == {
        "column_values_to_not_be_null(k)",
        "column_values_to_be_between(v >= 1 where src == 'x')",
        "compound_columns_to_be_unique(k, src)",
    }
    between = outcomes["column_values_to_be_between(v >= 0 and <= 1)"]
    assert (between.detail, between.examples) == ("2 of 4 rows unexpected", "v=2 k=b; v=3 k=c")
    in_set = outcomes["column_values_to_be_in_set(src in {m} where k == 'c')"]
    assert (in_set.detail, in_set.examples) == ("1 of 1 rows unexpected", "src=x k=c")


def test_what_an_expectation_raised_is_its_detail(outcomes: dict[str, ExpectationOutcome]) -> None:
    # exception_messages: the shape of ExpectationValidationResult.exception_info
    missing = outcomes["column_values_to_not_be_null(missing)"]
    assert missing.detail.startswith("error: ")
    assert '"missing"' in missing.detail and "does not exist" in missing.detail
    assert missing.examples == ""


def test_exception_info_shapes() -> None:
    one = {"raised_exception": True, "exception_message": "boom"}
    assert exception_messages(SimpleNamespace(exception_info=one)) == ["boom"]
    per_metric = {"m1": one, "m2": {"raised_exception": False}, "m3": one}
    assert exception_messages(SimpleNamespace(exception_info=per_metric)) == ["boom"]
    assert exception_messages(SimpleNamespace(exception_info=None)) == []


def test_data_docs_are_built_into_the_site(
    gx: Gx, docs: Path, outcomes: dict[str, ExpectationOutcome]
) -> None:
    # data_docs_site: SiteBuilder / DefaultSiteIndexBuilder / TupleFilesystemStoreBackend
    assert outcomes
    gx.build_docs()
    assert (docs / "index.html").is_file()
    assert any((docs / "validations").rglob("*.html"))


def test_no_results_without_validations() -> None:
    assert expectation_results(SimpleNamespace(run_results={})) == []
