"""`microdc report`: one self-contained, offline HTML file of charts and tables from the warehouse.

    result = build_report(Path("out/warehouse.duckdb"), Path("out/report.html"))
    # ReportResult(path=..., size_bytes=4_9xx_xxx, charts=8, seconds=1.2)

`data` reads the marts (read-only, typed rows), `charts` turns them into plotly figures and
`html` into the page, with plotly.js inlined once. The file is written next to its destination
and renamed into place, so a reader (or a browser reloading it) never sees half of it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.report.charts import Chart, all_charts
from pipeline.report.data import ReportData, WarehouseError, load
from pipeline.report.html import render_page

__all__ = [
    "DEFAULT_TITLE",
    "Chart",
    "ReportData",
    "ReportResult",
    "WarehouseError",
    "build_report",
]

DEFAULT_TITLE = "Micro data centers: energy, carbon, SLOs and cost per request"


@dataclass(frozen=True)
class ReportResult:
    path: Path
    size_bytes: int
    charts: int
    seconds: float


def build_report(
    db: Path,
    out: Path,
    *,
    title: str | None = None,
    generated_at: datetime | None = None,
) -> ReportResult:
    """Write the HTML report of the warehouse `db` to `out`; `generated_at` defaults to now."""
    started = time.perf_counter()
    target = Path(out)
    if target.is_dir():
        raise ConfigError(
            f"{target}: is a directory; give the report's file name, e.g. report.html"
        )
    data = load(Path(db))
    charts = all_charts(data)
    page = render_page(
        data,
        charts,
        title=title or DEFAULT_TITLE,
        generated_at=generated_at or datetime.now(UTC),
    )
    size = _write_atomically(target, page.encode("utf-8"))
    return ReportResult(target, size, len(charts), time.perf_counter() - started)


def _write_atomically(target: Path, payload: bytes) -> int:
    """Temp file in the same folder, fsync, rename over `target`; the temp never outlives us."""
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with temp.open("wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        temp.replace(target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ConfigError(f"{target}: cannot write the report: {exc.strerror or exc}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return len(payload)
