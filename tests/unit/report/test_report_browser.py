"""The report in a real browser: a simulated run's warehouse, drawn offline without an error.

A few simulated hours of the demo fleet go through the stream core into a lake and a warehouse
(as `microdc demo` does), the report is opened from disk in headless Chromium with every
non-file request blocked and recorded, and each chart must have drawn its data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.report import build_report
from tests.support.browser import open_page
from tests.support.factories import simulated_warehouse

pytestmark = pytest.mark.browser

# per chart: traces in gd.data, points in each, and the drawn SVG marks (bars and lines)
_DRAWN = """
() => Array.from(document.querySelectorAll(".js-plotly-plot")).map((gd) => ({
  id: gd.id,
  traces: gd.data.length,
  points: gd.data.map((t) => (t.orientation === "h" ? t.x : t.y).filter((v) => v != null).length),
  bars: gd.querySelectorAll(".barlayer .point path").length,
  lines: gd.querySelectorAll(".scatterlayer .trace path.js-line").length,
  title: gd.layout.title.text,
}))
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("report-browser")
    result = build_report(simulated_warehouse(root, 180), root / "report.html")
    return result.path, result.charts


def test_the_report_draws_every_chart_offline_without_errors(report: tuple[Path, int]) -> None:
    path, charts = report
    assert charts == 3 + 5  # energy and latency for each of the 3 sites, then 5 fleet charts
    outside: list[str] = []

    def route(r: Any) -> None:  # playwright.sync_api.Route
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    # open_page navigates at once; start blank so the route is in place before the report loads
    with open_page("about:blank") as loaded:
        page = loaded.page
        page.route("**/*", route)
        page.on(
            "request",
            lambda req: None if req.url.startswith("file://") else outside.append(req.url),
        )
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function(
            f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}"
        )
        drawn = page.evaluate(_DRAWN)
        shot = loaded.screenshot("report.png")
        errors = list(loaded.errors)
        requested = list(outside)
        # the trap itself works: a request to the network is seen and refused
        page.evaluate("fetch('https://cdn.example.com/plotly.min.js').catch(() => null)")

    assert requested == []
    assert set(outside) == {"https://cdn.example.com/plotly.min.js"}
    assert errors == []
    assert len(drawn) == charts
    assert [d["id"] for d in drawn][:3] == [
        "chart-energy-latency-bog1",
        "chart-energy-latency-mex1",
        "chart-energy-latency-sao1",
    ]
    for chart in drawn:
        assert chart["traces"] >= 1 and all(n >= 1 for n in chart["points"]), chart
        assert chart["bars"] + chart["lines"] > 0, chart
    by_id = {d["id"]: d for d in drawn}
    assert by_id["chart-energy-latency-bog1"]["bars"] == 3  # one bar per simulated hour
    assert by_id["chart-carbon"]["lines"] == 3  # one line per site
    assert shot.is_file() and shot.stat().st_size > 50_000
