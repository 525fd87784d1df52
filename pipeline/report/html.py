"""The report page: header, headline figures, charts and summary tables in one offline HTML file.

The markup, CSS and JS are Jinja2 templates shipped in `pipeline/report/templates/`; this module
only shapes the data into view models (formatted cells, figures, specs). plotly.js is inlined
once; each figure travels as JSON in a `<script type="application/json" data-chart="...">`
element that one small script draws, so the page needs no network, no CDN and no fonts beyond
the system's. Autoescaping is on: every text from the warehouse is HTML-escaped, and only
plotly.js and the figures' JSON (checked or escaped here) go in as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from jinja2 import Environment, PackageLoader, Template, select_autoescape

from pipeline.report.charts import ALL_SITES, KEPT, SHARED, Chart, months_label, site_label
from pipeline.report.data import Charge, ReportData, Roi, SloStatus

#: (section id, heading, intro), in page order
SECTIONS = (
    ("energy", "Energy per request and latency", "Per site and UTC hour."),
    ("efficiency", "Efficiency and carbon", "PUE per site-local day, SCI per UTC hour."),
    ("slo", "Service levels", "Error budgets and burn rates per service and site."),
    ("chargeback", "Chargeback", "Cost per internal team, split into its parts."),
    ("roi", "ROI vs the hyperscale cloud", "Each site against its cloud baseline region."),
)


@dataclass(frozen=True)
class Cell:
    text: str
    css_class: str  # "" renders as class="" (as the page always had)


@dataclass(frozen=True)
class Row:
    cells: list[Cell]
    is_total: bool = False


@dataclass(frozen=True)
class Table:
    """A summary table's head and rows; its caption and note are in the template."""

    head: list[Cell]
    rows: list[Row]


@dataclass(frozen=True)
class Figure:
    chart_id: str
    height_px: int
    caption: str


@dataclass(frozen=True)
class Spec:
    chart_id: str
    payload: str  # the figure's JSON, '<' escaped: safe inside a script element


@dataclass(frozen=True)
class Header:
    start: str  # of the period, UTC
    end: str
    days: str
    sites: list[str]
    generated: str
    source: str
    carbon_price: str


@dataclass(frozen=True)
class Section:
    section_id: str
    heading: str
    intro: str
    figures: list[Figure]


def render_page(
    data: ReportData, charts: Sequence[Chart], *, title: str, generated_at: datetime
) -> str:
    """The whole page as one string."""
    return _template().render(
        title=title,
        header=_header(data, generated_at),
        kpis=_kpis(data),
        sections={
            sid: Section(sid, heading, intro, [_figure(c) for c in charts if c.section == sid])
            for sid, heading, intro in SECTIONS
        },
        chart_count=len(charts),
        summaries={
            "sites": _sites_table(data),
            "slo": _slo_table(data),
            "charge": _charge_table(data),
            "roi": _roi_table(data),
        },
        shared_kwh_by_site=_shared_kwh_by_site(data),
        months=months_label(data),
        is_many_months=len(data.months) > 1,
        currency=data.currency,
        idle_policy=data.idle_policy,
        shared_policy=data.shared_policy,
        plotly_js=_plotly_js(),
        specs=[_spec(c) for c in charts],
    )


@cache
def _template() -> Template:
    env = Environment(
        loader=PackageLoader("pipeline.report", "templates"),
        autoescape=select_autoescape(("html", "html.j2"), ("css", "js"), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2")


@cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    js = str(get_plotlyjs())
    if "</script" in js.lower():  # would end the inline script early
        raise RuntimeError("plotly.js contains </script>; it cannot be inlined as is")
    return js


def _spec(chart: Chart) -> Spec:
    # '<' escaped as \u003c: the JSON stays valid and cannot close the script element
    return Spec(chart.chart_id, str(chart.figure.to_json()).replace("<", "\\u003c"))


def _figure(chart: Chart) -> Figure:
    return Figure(chart.chart_id, int(chart.figure.layout.height), chart.caption)


def _header(data: ReportData, generated_at: datetime) -> Header:
    days = (data.period_end - data.period_start).total_seconds() / 86400
    return Header(
        start=f"{data.period_start:%Y-%m-%d %H:%M}",
        end=f"{data.period_end:%Y-%m-%d %H:%M}",
        days=f"{days:,.1f}",
        sites=[f"{site_label(s)}, {s.country}" for s in data.sites],
        generated=f"{generated_at:%Y-%m-%d %H:%M:%S %Z}".strip(),
        source=str(data.db.resolve()),
        carbon_price=f"{data.carbon_price_usd_per_tonne:g}",
    )


def _kpis(data: ReportData) -> dict[str, str]:
    """The headline figures, formatted; labels and units are in the template."""
    requests = sum(r.requests for r in data.roi) or sum(h.requests for h in data.site_hours)
    it_kwh = sum(d.it_energy_kwh for d in data.site_days)
    facility_kwh = sum(d.facility_energy_kwh for d in data.site_days)
    services = [s for s in data.slo if s.site_id == ALL_SITES]
    healthy = sum(
        1
        for s in services
        if (s.availability_budget_remaining or 0) >= 0 and (s.latency_budget_remaining or 0) >= 0
    )
    return {
        "requests": f"{requests:,}",
        "facility_kwh": f"{facility_kwh:,.1f}",
        "it_kwh": f"{it_kwh:,.1f}",
        "pue": _num(facility_kwh / it_kwh if it_kwh else None, 3),
        "facility_wh": _num(_weighted(data.roi, "facility_wh_per_request"), 3),
        "gco2e": _num(_weighted(data.roi, "gco2e_per_request"), 3),
        "slos_healthy": f"{healthy} of {len(services)}" if services else "–",
        "charge_usd": f"{sum(c.total_usd for c in data.charges):,.0f}",
    }


def _sites_table(data: ReportData) -> Table:
    roi = {r.site_id: r for r in data.roi}
    rows = []
    for site in data.sites:
        days = [d for d in data.site_days if d.site_id == site.site_id]
        it_kwh = sum(d.it_energy_kwh for d in days)
        facility_kwh = sum(d.facility_energy_kwh for d in days)
        r = roi.get(site.site_id)
        rows.append(
            [
                site_label(site),
                _int(r.requests if r else None),
                _num(it_kwh, 1),
                _num(facility_kwh, 1),
                _num(facility_kwh / it_kwh if it_kwh else None, 3),
                _num(site.design_pue, 2),
                _num(r.facility_wh_per_request if r else None, 3),
                _num(r.gco2e_per_request if r else None, 3),
                _num(r.latency_p95_ms if r else None, 0),
            ]
        )
    return _table(
        [
            "site",
            "requests",
            "IT kWh",
            "facility kWh",
            "PUE",
            "design PUE",
            "Wh/request",
            "gCO2e/request",
            "p95 ms",
        ],
        rows,
    )


def _slo_table(data: ReportData) -> Table:
    def row(s: SloStatus) -> list[str]:
        site = "all sites" if s.site_id == ALL_SITES else s.site_id
        return [
            s.service,
            site,
            _int(s.requests),
            _pct(s.availability_sli, 3, s.availability_target),
            _budget(s.availability_budget_remaining),
            _num(s.worst_availability_burn, 1),
            _pct(s.latency_sli, 3, s.latency_target),
            _budget(s.latency_budget_remaining),
            _num(s.worst_latency_burn, 1),
        ]

    return _table(
        [
            "service",
            "site",
            "requests",
            "availability (target)",
            "budget left",
            "worst burn",
            "latency (target)",
            "budget left",
            "worst burn",
        ],
        [row(s) for s in data.slo],
    )


def _charge_table(data: ReportData) -> Table:
    teams: dict[str, list[Charge]] = {}
    for c in data.charges:
        teams.setdefault(c.team, []).append(c)

    def row(name: str, cost_center: str, charges: Iterable[Charge]) -> list[str]:
        items = list(charges)
        requests = sum(c.requests for c in items)
        total = sum(c.total_usd for c in items)
        return [
            name,
            cost_center,
            _int(requests),
            _num(sum(c.facility_energy_kwh for c in items), 2),
            _num(sum(c.shared_facility_energy_kwh for c in items), 2),
            _num(sum(c.energy_cost_usd for c in items), 2),
            _num(sum(c.carbon_cost_usd for c in items), 2),
            _num(sum(c.capex_share_usd for c in items), 2),
            _num(sum(c.opex_share_usd for c in items), 2),
            _num(total, 2),
            _num(total / requests * 1000 if requests else None, 3),
        ]

    order = sorted(teams, key=lambda t: (t in KEPT, -sum(c.total_usd for c in teams[t])))
    labels = {SHARED: f"Shared infrastructure ({SHARED})"}
    rows = [row(labels.get(t, t), teams[t][0].cost_center or "–", teams[t]) for t in order]
    if rows:
        rows.append(row("total", "", data.charges))
    cur = data.currency
    return _table(
        [
            "team",
            "cost center",
            "requests",
            "facility kWh",
            "of which shared kWh",
            f"energy {cur}",
            f"carbon {cur}",
            f"capex {cur}",
            f"opex {cur}",
            f"total {cur}",
            f"{cur} per 1k requests",
        ],
        rows,
        total_row=bool(rows),
    )


def _shared_kwh_by_site(data: ReportData) -> list[str]:
    """Shared kWh of every site, wherever the policy put them (own row or the teams' rows)."""
    by_site: dict[str, float] = {}
    for c in data.charges:
        by_site[c.site_id] = by_site.get(c.site_id, 0.0) + c.shared_facility_energy_kwh
    return [f"{site} {_num(kwh, 2)}" for site, kwh in sorted(by_site.items())]


def _roi_table(data: ReportData) -> Table:
    def row(r: Roi) -> list[str]:
        return [
            r.site_id,
            r.baseline_region,
            _num(r.pilot_days, 2),
            _num(r.microdc_usd_per_month, 0),
            _num(r.operating_usd_per_month, 0),
            _num(r.cloud_usd_per_month, 0),
            _num(r.cloud_capacity_usd_per_month, 0),
            _num(r.monthly_savings_usd, 0),
            _num(r.investment_usd, 0),
            "none" if r.payback_months is None else _num(r.payback_months, 1),
            _pct(None if r.roi_6m_pct is None else r.roi_6m_pct / 100, 1),
            _pct(None if r.roi_12m_pct is None else r.roi_12m_pct / 100, 1),
            _pct(None if r.capacity_roi_12m_pct is None else r.capacity_roi_12m_pct / 100, 1),
            "none" if r.capacity_payback_months is None else _num(r.capacity_payback_months, 1),
        ]

    cur = data.currency
    return _table(
        [
            "site",
            "cloud baseline",
            "pilot days",
            f"micro-DC {cur}/month",
            f"operating {cur}/month",
            f"cloud {cur}/month",
            f"same cores {cur}/month",
            f"savings {cur}/month",
            f"investment {cur}",
            "payback months",
            "ROI 6 months",
            "ROI 12 months",
            "ROI 12 mo, same cores",
            "payback, same cores",
        ],
        [row(r) for r in data.roi],
    )


def _table(head: list[str], rows: list[list[str]], *, total_row: bool = False) -> Table:
    """Cells with their classes: a column is numeric if any of its cells (but the first) is."""
    numeric = [j > 0 and any(_is_number(r[j]) for r in rows) for j in range(len(head))]
    return Table(
        head=[Cell(h, "num" if numeric[j] else "") for j, h in enumerate(head)],
        rows=[
            Row(
                [Cell(value, _cell_class(numeric[j], value)) for j, value in enumerate(cells)],
                is_total=total_row and i == len(rows) - 1,
            )
            for i, cells in enumerate(rows)
        ],
    )


def _is_number(text: str) -> bool:
    return text[:1].isdigit() or (text[:1] == "-" and text[1:2].isdigit())


def _cell_class(numeric: bool, value: str) -> str:
    classes = ["num"] if numeric else []
    if value.startswith("-") and _is_number(value):
        classes.append("neg")
    return " ".join(classes)


def _weighted(rows: Sequence[Roi], attr: str) -> float | None:
    """Sum over sum: per-request values weighted back by requests."""
    pairs = [(getattr(r, attr), r.requests) for r in rows if getattr(r, attr) is not None]
    requests = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / requests if requests else None


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _pct(value: float | None, digits: int, target: float | None = None) -> str:
    if value is None:
        return "–"
    text = f"{value * 100:,.{digits}f} %"
    return f"{text} ({target * 100:g} %)" if target is not None else text


def _budget(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:,.1f} %"
