"""The Great Expectations 1.x adapter: the only module of the project importing great_expectations.

GX's SQL path against DuckDB fails every expectation (NOTES.md), so each table arrives as a
pandas frame and is validated through GX's pandas data source: one whole-dataframe batch
definition per table, one suite, one validation definition and one checkpoint; the Data Docs
HTML is built once, after the last suite.

Where this module relies on GX structures that are not its documented API (module paths,
serialized row conditions, the shape of `exception_info`, the Data Docs site config), it does so
in one small named function each; tests/unit/quality/test_gx.py exercises every one of them
against the installed GX, so an upgrade that moves one fails there and says which.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.quality.results import ExpectationOutcome
from pipeline.quality.suites import Expectation

#: Unexpected rows quoted per failed expectation.
EXAMPLES = 3

_GX_CLASSES = {
    "not_null": "ExpectColumnValuesToNotBeNull",
    "unique": "ExpectColumnValuesToBeUnique",
    "compound_unique": "ExpectCompoundColumnsToBeUnique",
    "between": "ExpectColumnValuesToBeBetween",
    "in_set": "ExpectColumnValuesToBeInSet",
}


def import_gx() -> Any:
    """The `great_expectations` module, with its usage analytics off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    try:
        import great_expectations as gx
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError(f"great_expectations is not installed: {exc}") from exc
    return gx


# -- GX structures outside its documented API (each one tested in tests/unit/quality/test_gx.py)


def quiet_progress_bars(context: Any) -> None:
    """Turn GX's progress bars off (`ProgressBarsConfig` lives in an internal module)."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)


def data_docs_site(docs_dir: Path) -> dict[str, Any]:
    """A local Data Docs site config writing HTML into `docs_dir` (GX's internal class names)."""
    return {
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir.resolve()),
        },
    }


def row_condition(column: str, value: Any) -> Any:
    """A GX 1.9+ row condition `column == value` (not a pandas query string)."""
    from great_expectations.expectations.row_conditions import Column

    return Column(column) == value


def condition_text(condition: Any) -> str | None:
    """`column op 'value'` of a row condition as GX serializes it into an expectation's kwargs
    (a `{"type": "comparison", "column": {"name": ...}, ...}` dict); other shapes as text."""
    if isinstance(condition, dict) and condition.get("type") == "comparison":
        column = (condition.get("column") or {}).get("name")
        return f"{column} {condition.get('operator')} {condition.get('parameter')!r}"
    return str(condition) if condition else None


def expectation_results(checkpoint_result: Any) -> list[Any]:
    """The per-expectation results of a checkpoint run, over all its validations."""
    return [r for validation in checkpoint_result.run_results.values() for r in validation.results]


def exception_messages(result: Any) -> list[str]:
    """The messages of what an expectation raised: `exception_info` is either one
    `{"raised_exception": ..., "exception_message": ...}` or a dict of them per metric."""
    info = result.exception_info or {}
    messages = []
    if info.get("raised_exception"):
        messages.append(str(info.get("exception_message")))
    else:
        for value in info.values():
            if isinstance(value, dict) and value.get("raised_exception"):
                messages.append(str(value.get("exception_message")))
    return list(dict.fromkeys(messages))


# -- the adapter -----------------------------------------------------------------------------------


def to_gx(gxe: Any, expectation: Expectation) -> Any:
    """The GX expectation object (from `gx.expectations`) of one of our `Expectation`s."""
    kwargs: dict[str, Any] = (
        {"column_list": list(expectation.columns)}
        if expectation.kind == "compound_unique"
        else {"column": expectation.columns[0]}
    )
    if expectation.min_value is not None:
        kwargs["min_value"] = expectation.min_value
    if expectation.max_value is not None:
        kwargs["max_value"] = expectation.max_value
    if expectation.value_set is not None:
        kwargs["value_set"] = list(expectation.value_set)
    if expectation.where is not None:
        kwargs["row_condition"] = row_condition(*expectation.where)
    return getattr(gxe, _GX_CLASSES[expectation.kind])(**kwargs)


class Gx:
    """An ephemeral GX context writing Data Docs into `docs_dir`."""

    def __init__(self, docs_dir: Path) -> None:
        gx = import_gx()
        self.gx = gx
        self.gxe = gx.expectations
        self.version = str(gx.__version__)
        self.context = gx.get_context(mode="ephemeral")
        quiet_progress_bars(self.context)
        for name in list(self.context.list_data_docs_sites()):
            self.context.delete_data_docs_site(name)
        self.context.add_data_docs_site("local_site", data_docs_site(docs_dir))
        self.source = self.context.data_sources.add_pandas("warehouse")

    def validate(
        self,
        suite_name: str,
        asset: str,
        frame: Any,  # pandas.DataFrame (pandas ships no type stubs here)
        expectations: Iterable[Expectation],
        index: Sequence[str],
    ) -> list[ExpectationOutcome]:
        """Validate `frame` against `expectations` as suite `suite_name`; failures quote up to
        `EXAMPLES` unexpected rows by their `index` columns."""
        gx = self.gx
        batch = self.source.add_dataframe_asset(name=asset).add_batch_definition_whole_dataframe(
            f"{asset}_whole"
        )
        suite = self.context.suites.add(gx.ExpectationSuite(name=suite_name))
        for expectation in expectations:
            suite.add_expectation(to_gx(self.gxe, expectation))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch, suite=suite)
        )
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=f"{suite_name}_checkpoint",
                validation_definitions=[definition],
                actions=[],  # Data Docs are built once, after the last suite (build_docs)
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": EXAMPLES,
                    "unexpected_index_column_names": [c for c in index if c in frame.columns],
                },
            )
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = checkpoint.run(batch_parameters={"dataframe": frame})
        outcomes: list[ExpectationOutcome] = []
        for r in expectation_results(result):
            outcome = ExpectationOutcome(describe(r.expectation_config), bool(r.success))
            if not outcome.success:
                outcome.detail, outcome.examples = failure_detail(r)
            outcomes.append(outcome)
        return outcomes

    def build_docs(self) -> None:
        """Render every stored validation result into the Data Docs site, once."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.context.build_data_docs()


def describe(config: Any) -> str:
    """`column_values_to_be_between(pue >= 1 where pue_source == 'metered')` of a GX config."""
    kwargs = dict(config.kwargs)
    name = str(config.type).removeprefix("expect_")
    what = kwargs.get("column") or ", ".join(kwargs.get("column_list") or [])
    bounds = []
    if kwargs.get("min_value") is not None:
        bounds.append(f">= {kwargs['min_value']:g}")
    if kwargs.get("max_value") is not None:
        bounds.append(f"<= {kwargs['max_value']:g}")
    if kwargs.get("value_set") is not None:
        bounds.append("in {" + ", ".join(map(str, kwargs["value_set"])) + "}")
    condition = condition_text(kwargs.get("row_condition"))
    text = " ".join([what, " and ".join(bounds)] if bounds else [what])
    if condition:
        text += f" where {condition}"
    return f"{name}({text})"


def failure_detail(r: Any) -> tuple[str, str]:
    """(why it failed, a few unexpected rows) of one failed expectation result."""
    messages = exception_messages(r)
    if messages:
        return "error: " + "; ".join(messages), ""
    res = r.result or {}
    count, total = res.get("unexpected_count"), res.get("element_count")
    parts = []
    if count is not None:
        parts.append(
            f"{count:,} of {total:,} rows unexpected" if total else f"{count:,} unexpected"
        )
    if res.get("observed_value") is not None:
        parts.append(f"observed {res['observed_value']}")
    examples = res.get("partial_unexpected_index_list") or res.get("partial_unexpected_list") or []
    return ", ".join(parts) or "failed", "; ".join(_example(e) for e in examples[:EXAMPLES])


def _example(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return _plain(value)


def _plain(value: Any) -> str:
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        with contextlib.suppress(TypeError, ValueError):
            value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):  # pandas Timestamps too; DuckDB DATEs arrive as midnight
        if value.tzinfo is None and value.time() == dt_time(0):
            return value.date().isoformat()
        return value.isoformat()
    return str(value)
