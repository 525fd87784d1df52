"""The report page: header, headline figures, charts and summary tables in one offline HTML file.

plotly.js is inlined once; each figure travels as JSON in a `<script type="application/json"
data-chart="...">` element that one small script draws, so the page needs no network, no CDN
and no fonts beyond the system's. Every text from the warehouse is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from pipeline.report.charts import ALL_SITES, KEPT, SHARED, Chart, months_label, site_label
from pipeline.report.data import Charge, ReportData, Roi, SloStatus

#: (section id, heading, intro)
SECTIONS = (
    ("energy", "Energy per request and latency", "Per site and UTC hour."),
    ("efficiency", "Efficiency and carbon", "PUE per site-local day, SCI per UTC hour."),
    ("slo", "Service levels", "Error budgets and burn rates per service and site."),
    ("chargeback", "Chargeback", "Cost per internal team, split into its parts."),
    ("roi", "ROI vs the hyperscale cloud", "Each site against its cloud baseline region."),
)
_DRAW = """
(function () {
  var config = {displaylogo: false, responsive: true,
                modeBarButtonsToRemove: ["lasso2d", "select2d"]};
  document.querySelectorAll("script[data-chart]").forEach(function (spec) {
    var figure = JSON.parse(spec.textContent);
    Plotly.newPlot(spec.getAttribute("data-chart"), figure.data, figure.layout, config);
  });
})();
"""


def render_page(
    data: ReportData, charts: Sequence[Chart], *, title: str, generated_at: datetime
) -> str:
    """The whole page as one string."""
    body = [_header(data, title, generated_at), _kpis(data), _nav(charts)]
    tables: dict[str, Callable[[ReportData], str]] = {
        "efficiency": _sites_table,
        "slo": _slo_table,
        "chargeback": _charge_table,
        "roi": _roi_table,
    }
    for section, heading, intro in SECTIONS:
        parts = [f"<h2>{_e(heading)}</h2>", f'<p class="intro">{_e(intro)}</p>']
        mine = [c for c in charts if c.section == section]
        parts += [_figure(c) for c in mine]
        if not mine:
            parts.append('<p class="empty">No data for this section in the warehouse.</p>')
        if section in tables:
            parts.append(tables[section](data))
        body.append(f'<section id="{section}">\n' + "\n".join(parts) + "\n</section>")
    body.append(
        "<footer>Definitions: DESIGN.md §5 of microdc-pipeline. Ratios are sums over sums. "
        "Times are UTC unless marked site-local.</footer>"
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="microdc report">',
            f"<title>{_e(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            "<main>",
            *body,
            "</main>",
            "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
            f"<script>{_plotly_js()}</script>",
            *[_spec(c) for c in charts],
            f"<script>{_DRAW}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


@cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    js = str(get_plotlyjs())
    if "</script" in js.lower():  # would end the inline script early
        raise RuntimeError("plotly.js contains </script>; it cannot be inlined as is")
    return js


def _spec(chart: Chart) -> str:
    # '<' escaped as \u003c: the JSON stays valid and cannot close the script element
    payload = str(chart.figure.to_json()).replace("<", "\\u003c")
    return f'<script type="application/json" data-chart="{_e(chart.chart_id)}">{payload}</script>'


def _figure(chart: Chart) -> str:
    return (
        f'<figure class="chart">\n<div id="{_e(chart.chart_id)}" class="plot" '
        f'style="height:{int(chart.figure.layout.height)}px"></div>\n'
        f"<figcaption>{_e(chart.caption)}</figcaption>\n</figure>"
    )


def _header(data: ReportData, title: str, generated_at: datetime) -> str:
    days = (data.period_end - data.period_start).total_seconds() / 86400
    period = (
        f"{data.period_start:%Y-%m-%d %H:%M} to {data.period_end:%Y-%m-%d %H:%M} UTC "
        f"({days:,.1f} days)"
    )
    sites = ", ".join(f"{site_label(s)}, {s.country}" for s in data.sites)
    meta = [
        ("Period", period),
        ("Sites", sites),
        ("Generated", f"{generated_at:%Y-%m-%d %H:%M:%S %Z}".strip()),
        ("Source", str(data.db.resolve())),
        (
            "Settings",
            f"idle policy {data.idle_policy}; shared policy {data.shared_policy}; carbon price "
            f"{data.carbon_price_usd_per_tonne:g} {data.currency}/tCO2e; costs in {data.currency}",
        ),
    ]
    rows = "\n".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta)
    return f'<header>\n<h1>{_e(title)}</h1>\n<dl class="meta">\n{rows}\n</dl>\n</header>'


def _kpis(data: ReportData) -> str:
    requests = sum(r.requests for r in data.roi) or sum(h.requests for h in data.site_hours)
    it_kwh = sum(d.it_energy_kwh for d in data.site_days)
    facility_kwh = sum(d.facility_energy_kwh for d in data.site_days)
    facility_wh = _weighted(data.roi, "facility_wh_per_request")
    gco2e = _weighted(data.roi, "gco2e_per_request")
    services = [s for s in data.slo if s.site_id == ALL_SITES]
    healthy = sum(
        1
        for s in services
        if (s.availability_budget_remaining or 0) >= 0 and (s.latency_budget_remaining or 0) >= 0
    )
    total_usd = sum(c.total_usd for c in data.charges)
    # (label, value, unit, note)
    cards = [
        ("Requests", f"{requests:,}", "", "served at the micro data centers"),
        ("Facility energy", f"{facility_kwh:,.1f}", "kWh", f"IT {it_kwh:,.1f} kWh"),
        ("PUE", _num(facility_kwh / it_kwh if it_kwh else None, 3), "", "facility / IT energy"),
        ("Energy / request", _num(facility_wh, 3), "Wh", "facility, idle included"),
        ("Carbon / request", _num(gco2e, 3), "gCO2e", "SCI, idle and embodied included"),
        (
            "SLOs within budget",
            f"{healthy} of {len(services)}" if services else "–",
            "",
            "services, all sites",
        ),
        ("Chargeback", f"{total_usd:,.0f}", data.currency, _charge_period(data)),
    ]
    items = "\n".join(
        f'<div class="kpi"><div class="kpi-label">{_e(label)}</div>'
        f'<div class="kpi-value">{_e(value)} <span class="unit">{_e(unit)}</span></div>'
        f'<div class="kpi-note">{_e(note)}</div></div>'
        for label, value, unit, note in cards
    )
    return f'<section class="kpis" aria-label="headline figures">\n{items}\n</section>'


def _nav(charts: Sequence[Chart]) -> str:
    links = " ".join(f'<a href="#{sid}">{_e(heading)}</a>' for sid, heading, _ in SECTIONS)
    return f'<nav>{links}<span class="count">{len(charts)} charts</span></nav>'


def _sites_table(data: ReportData) -> str:
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
        "Sites over the period",
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
        note="Energy and carbon per request here include idle energy (fct_roi_site); the "
        "hourly charts show the services' attributed energy only.",
    )


def _slo_table(data: ReportData) -> str:
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
        "SLOs over the period",
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
        note="Budget left at the end of the last day, over the SLO period; below 0 % the budget "
        "is overspent. Worst burn: the highest rate any window reached.",
    )


def _charge_table(data: ReportData) -> str:
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
    # shared kWh of every site, wherever the policy put them (own row or the teams' rows)
    by_site: dict[str, float] = {}
    for c in data.charges:
        by_site[c.site_id] = by_site.get(c.site_id, 0.0) + c.shared_facility_energy_kwh
    per_site = ", ".join(f"{site} {_num(kwh, 2)}" for site, kwh in sorted(by_site.items()))
    return _table(
        f"Chargeback by team, {_charge_period(data)} ({cur})",
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
        note="All sites summed; per team x site x month: `microdc export chargeback`. Shared "
        "kWh: the metered IT load no server reported (network, storage, power distribution) "
        f"and its overhead, on its own row or in the teams' (shared policy {data.shared_policy}); "
        f"shared kWh by site: {per_site}. Per site-month the facility kWh equal the facility "
        "meter's (fct_meter_reconciliation_monthly).",
    )


def _roi_table(data: ReportData) -> str:
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
        f"ROI per site ({cur})",
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
        note="Cloud = the CPU time the requests used + egress; same cores = renting the site's "
        "cores around the clock + egress (like for like). Savings = cloud - operating cost (no "
        "capex); payback = investment / savings; a short pilot is scaled to a month, so read "
        "the figures as a rate, not a forecast.",
    )


def _table(
    caption: str,
    head: list[str],
    rows: list[list[str]],
    *,
    note: str = "",
    total_row: bool = False,
) -> str:
    if not rows:
        return f'<p class="empty">{_e(caption)}: no rows.</p>'
    numeric = [j > 0 and any(_is_number(r[j]) for r in rows) for j in range(len(head))]
    ths = "".join(
        f'<th class="{"num" if numeric[j] else ""}">{_e(h)}</th>' for j, h in enumerate(head)
    )
    trs = []
    for i, cells in enumerate(rows):
        tds = "".join(
            f'<td class="{_cell_class(numeric[j], value)}">{_e(value)}</td>'
            for j, value in enumerate(cells)
        )
        total = ' class="total"' if total_row and i == len(rows) - 1 else ""
        trs.append(f"<tr{total}>{tds}</tr>")
    foot = f'<p class="note">{_e(note)}</p>' if note else ""
    return (
        f'<div class="table-wrap"><table>\n<caption>{_e(caption)}</caption>\n'
        f"<thead><tr>{ths}</tr></thead>\n<tbody>\n" + "\n".join(trs) + f"\n</tbody></table>"
        f"{foot}</div>"
    )


def _is_number(text: str) -> bool:
    return text[:1].isdigit() or (text[:1] == "-" and text[1:2].isdigit())


def _cell_class(numeric: bool, value: str) -> str:
    classes = ["num"] if numeric else []
    if value.startswith("-") and _is_number(value):
        classes.append("neg")
    return " ".join(classes)


def _charge_period(data: ReportData) -> str:
    plural = "s" if len(data.months) > 1 else ""
    return f"site-local month{plural} {months_label(data)}"


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


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


CSS = """
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --panel: #f8fafc; --accent: #0e7490; }
* { box-sizing: border-box; }
body { margin: 0; background: #f1f5f9; color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 48px; }
header { background: #fff; border: 1px solid var(--line); border-top: 4px solid var(--accent);
  border-radius: 8px; padding: 18px 22px; }
h1 { margin: 0 0 10px; font-size: 24px; font-weight: 650; }
h2 { margin: 0 0 2px; font-size: 19px; font-weight: 650; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 12px;
  margin: 16px 0; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.kpi-label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.kpi-value { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums;
  margin: 2px 0; }
.kpi-value .unit { font-size: 14px; font-weight: 500; color: var(--muted); }
.kpi-note { color: var(--muted); font-size: 12px; }
nav { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: baseline; margin: 0 0 16px;
  padding: 10px 14px; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
nav a { color: var(--accent); text-decoration: none; font-weight: 550; }
nav a:hover { text-decoration: underline; }
nav .count { margin-left: auto; color: var(--muted); font-size: 12px; }
section:not(.kpis) { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 18px 22px; margin: 0 0 16px; }
p.intro { margin: 0 0 12px; color: var(--muted); }
figure.chart { margin: 0 0 18px; }
.plot { width: 100%; }
figcaption, p.note { color: var(--muted); font-size: 12px; margin: 4px 0 0; }
p.empty { color: var(--muted); font-style: italic; }
.table-wrap { overflow-x: auto; margin: 8px 0 4px; }
table { border-collapse: collapse; width: 100%; font-size: 13px;
  font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 0 0 6px; }
th { text-align: left; font-weight: 600; color: var(--muted); border-bottom: 2px solid var(--line);
  padding: 6px 8px; vertical-align: bottom; }
th.num { text-align: right; }
td { padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.num { text-align: right; }
td.neg { color: #b91c1c; }
tbody tr:nth-child(even) { background: var(--panel); }
tr.total td { font-weight: 650; border-top: 2px solid var(--line); }
footer { color: var(--muted); font-size: 12px; text-align: center; }
@media print { body { background: #fff; } section, figure.chart { break-inside: avoid; } }
"""
