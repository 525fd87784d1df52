"""The report's charts: one plotly figure per function, built from `ReportData` alone.

Every title carries its unit. Colours are fixed per site, per service and per cost part, so the
same thing has the same colour in every chart. Figures hold plain lists (no numpy, no pandas).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

from pipeline.report.data import ReportData, Roi, Site

FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
SITE_COLORS = ("#0e7490", "#c2410c", "#7c3aed", "#15803d", "#be123c", "#a16207", "#1d4ed8")
SERVICE_COLORS = (
    "#2563eb",
    "#db2777",
    "#059669",
    "#d97706",
    "#7c3aed",
    "#0891b2",
    "#65a30d",
    "#dc2626",
)
#: (label, Charge attribute, colour): the stack order of the chargeback bars
COST_PARTS = (
    ("energy", "energy_cost_usd", "#f59e0b"),
    ("carbon", "carbon_cost_usd", "#10b981"),
    ("capex share", "capex_share_usd", "#3b82f6"),
    ("opex share", "opex_share_usd", "#94a3b8"),
)
MICRODC, OPERATING, CLOUD = "#0e7490", "#67c5d6", "#f97316"
ROI_6M, ROI_12M = "#86c5a4", "#15803d"
CLOUD_CAPACITY = "#b45309"  # the same cores rented: a darker shade of the cloud colour
IDLE = "__idle__"
SHARED = "__shared__"
#: rows no team carries (their policy is `separate`): drawn by site, apart from the teams
KEPT = {IDLE: "idle", SHARED: "shared"}
ALL_SITES = "__all__"
_MARGIN = {"l": 64, "r": 64, "t": 72, "b": 64}
_LEGEND_GAP_PX = 44  # from the bottom of the plot area to the legend: room for the tick labels
_LOG_RATIO = 30.0  # a bar axis goes logarithmic when its largest value is this many times the least


@dataclass(frozen=True)
class Chart:
    """A figure and where it goes on the page."""

    chart_id: str  # id of the element the figure is drawn into
    section: str  # id of the page section it belongs to
    figure: Any  # plotly.graph_objects.Figure
    caption: str  # one line under the chart: what exactly is plotted, from which mart

    @property
    def title(self) -> str:
        return str(self.figure.layout.title.text)

    @property
    def traces(self) -> int:
        return len(self.figure.data)


def all_charts(data: ReportData) -> list[Chart]:
    """Every chart the data supports, in page order (a mart without rows gets none)."""
    charts = [energy_latency(data, site) for site in data.sites if _site_hours(data, site)]
    for build in (pue, carbon, slo, chargeback, roi):
        chart = build(data)
        if chart is not None:
            charts.append(chart)
    return charts


def site_label(site: Site) -> str:
    return f"{site.city} ({site.site_id})"


def site_color(data: ReportData, site_id: str) -> str:
    ids = [s.site_id for s in data.sites]
    index = ids.index(site_id) if site_id in ids else len(ids)
    return SITE_COLORS[index % len(SITE_COLORS)]


def energy_latency(data: ReportData, site: Site) -> Chart:
    """Bars: facility Wh per request of the site's services; lines: p95 latency per service."""
    hours = _site_hours(data, site)
    fig = _subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Bar(
            name="energy per request, Wh",
            x=[_iso(h.hour_utc) for h in hours],
            y=[h.facility_wh_per_request for h in hours],
            marker={"color": site_color(data, site.site_id), "opacity": 0.45},
            customdata=[h.requests for h in hours],
            hovertemplate="%{y:.3f} Wh/request (%{customdata:,} requests)",
        ),
        secondary_y=False,
    )
    services = sorted({s.service for s in data.service_hours})
    for service in sorted({s.service for s in data.service_hours if s.site_id == site.site_id}):
        points = [
            s for s in data.service_hours if s.site_id == site.site_id and s.service == service
        ]
        color = SERVICE_COLORS[services.index(service) % len(SERVICE_COLORS)]
        fig.add_trace(
            go.Scatter(
                name=f"p95 {service}",
                x=[_iso(p.hour_utc) for p in points],
                y=[p.latency_p95_ms for p in points],
                mode="lines+markers",
                line={"color": color, "width": 2},
                marker={"size": 4},
                hovertemplate="%{y:,.0f} ms",
            ),
            secondary_y=True,
        )
    title = (
        f"{site_label(site)}: energy per request (facility Wh) and p95 latency (ms), hourly, UTC"
    )
    _style(fig, title, height=380, hovermode="x unified")
    fig.update_layout(margin={**_MARGIN, "r": 88})  # the right axis' title and 4-digit ticks
    fig.update_yaxes(title_text="Wh per request", rangemode="tozero", secondary_y=False)
    latencies = [p.latency_p95_ms for p in data.service_hours if p.site_id == site.site_id]
    fig.update_yaxes(
        title_text="p95 latency, ms (log)",
        type="log",
        showgrid=False,
        tickvals=_log_ticks([v for v in latencies if v]),
        secondary_y=True,
    )
    fig.update_xaxes(hoverformat="%Y-%m-%d %H:%M UTC")
    return Chart(
        f"chart-energy-latency-{_slug(site.site_id)}",
        "energy",
        fig,
        "fct_energy_per_request_hourly: the site's attributed facility Wh (IT x PUE, idle "
        "energy excluded) / its requests, per UTC hour; lines: each service's exact p95 latency.",
    )


def pue(data: ReportData) -> Chart | None:
    """Grouped bars: PUE per site and local day; dotted lines: each site's design PUE."""
    if not data.site_days:
        return None
    fig = go.Figure()
    days = len({d.local_date for d in data.site_days})
    values: list[float] = []
    for site in data.sites:
        rows = [d for d in data.site_days if d.site_id == site.site_id]
        if not rows:
            continue
        color = site_color(data, site.site_id)
        fig.add_trace(
            go.Bar(
                name=site_label(site),
                x=[d.local_date.isoformat() for d in rows],
                y=[d.pue for d in rows],
                marker={"color": color},
                text=[_fixed(d.pue, 2) for d in rows] if days <= 14 else None,
                textposition="outside",
                customdata=[[d.minutes, d.it_energy_kwh, d.facility_energy_kwh] for d in rows],
                hovertemplate="PUE %{y:.3f}<br>%{customdata[0]:,} minutes of data<br>"
                "IT %{customdata[1]:,.1f} kWh, facility %{customdata[2]:,.1f} kWh",
            )
        )
        fig.add_hline(y=site.design_pue, line={"color": color, "dash": "dot", "width": 1.5})
        values += [d.pue for d in rows if d.pue is not None] + [site.design_pue]
    _style(fig, "PUE by site and local day (facility energy / IT energy, ratio)", height=380)
    top = max(values, default=2.0)
    fig.update_yaxes(title_text="PUE", range=[min(1.0, *values), top + (top - 1) * 0.12 + 0.03])
    fig.update_xaxes(title_text="site-local day", type="category")
    fig.update_layout(barmode="group", bargap=0.3)
    return Chart(
        "chart-pue",
        "efficiency",
        fig,
        "fct_site_efficiency_daily: facility / IT energy of each site-local day (sum over sum); "
        "dotted lines: each site's design PUE; a first or last day only partly covered shows "
        "fewer minutes of data (hover).",
    )


def carbon(data: ReportData) -> Chart | None:
    """Lines: SCI gCO2e per request per site and UTC hour."""
    fig = go.Figure()
    for site in data.sites:
        hours = _site_hours(data, site)
        if not hours:
            continue
        fig.add_trace(
            go.Scatter(
                name=site_label(site),
                x=[_iso(h.hour_utc) for h in hours],
                y=[h.gco2e_per_request for h in hours],
                mode="lines+markers",
                line={"color": site_color(data, site.site_id), "width": 2},
                marker={"size": 5},
                hovertemplate="%{y:.4f} gCO2e/request",
            )
        )
    if not fig.data:
        return None
    _style(fig, "Carbon per request, SCI (gCO2e per request), hourly, UTC", height=380)
    fig.update_layout(hovermode="x unified")
    fig.update_yaxes(title_text="gCO2e per request", rangemode="tozero")
    fig.update_xaxes(hoverformat="%Y-%m-%d %H:%M UTC")
    return Chart(
        "chart-carbon",
        "efficiency",
        fig,
        "fct_energy_per_request_hourly: (operational + embodied gCO2e) / requests of the "
        "site's services per UTC hour (GSF SCI, location-based; idle energy excluded).",
    )


def slo(data: ReportData) -> Chart | None:
    """Horizontal bars per service and site: budget left, and the worst burn rate reached."""
    rows = [s for s in data.slo if s.site_id != ALL_SITES]
    if not rows:
        return None
    labels = [f"{s.service} · {s.site_id}" for s in rows]
    fig = _subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.05,
        subplot_titles=(
            "Error budget remaining at the end of the period, %",
            "Worst burn rate in the period, x budget rate (log; dashed: page at 14.4x)",
        ),
    )
    sli = (
        (
            "availability",
            "#2563eb",
            [s.availability_budget_remaining for s in rows],
            [s.worst_availability_burn for s in rows],
        ),
        (
            "latency",
            "#d97706",
            [s.latency_budget_remaining for s in rows],
            [s.worst_latency_burn for s in rows],
        ),
    )
    for name, color, budgets, burns in sli:
        fig.add_trace(
            go.Bar(
                name=name,
                legendgroup=name,
                orientation="h",
                y=labels,
                x=[None if b is None else b * 100 for b in budgets],
                marker={"color": color},
                hovertemplate="%{y}: %{x:.1f}% of the budget left",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                name=name,
                legendgroup=name,
                showlegend=False,
                orientation="h",
                y=labels,
                x=burns,
                marker={"color": color},
                hovertemplate="%{y}: worst burn %{x:.1f}x",
            ),
            row=1,
            col=2,
        )
    burns_seen = [b for *_, bs in sli for b in bs if b]
    if burns_seen:
        high = max(max(burns_seen), 14.4)
        fig.update_xaxes(type="log", range=[-1, math.log10(high * 2)], dtick=1, row=1, col=2)
        # (an annotation on a log axis would need log10(x); the subplot title names the line)
        fig.add_vline(x=14.4, line={"color": "#b91c1c", "dash": "dash", "width": 1}, row=1, col=2)
    last = max(s.last_date for s in rows)
    _style(
        fig,
        f"SLO error budget (% of the SLO period's budget) and burn rate (x), up to {last}",
        height=max(300, 120 + 26 * len(rows)),
    )
    fig.update_layout(barmode="group", bargap=0.25, bargroupgap=0.05)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_xaxes(zeroline=True, zerolinecolor="#6b7280", zerolinewidth=1.5, row=1, col=1)
    return Chart(
        "chart-slo",
        "slo",
        fig,
        "fct_slo_daily: budget left = 1 - bad / ((1 - target) x requests) over the SLO period, "
        "at the last day's last minute (below 0 = overspent); burn = highest rate any window "
        "(5m..3d) reached; paging starts at 14.4x (1h and 5m windows).",
    )


def chargeback(data: ReportData) -> Chart | None:
    """Stacked bars by cost part: teams (all sites), and the idle capacity and the shared
    infrastructure kept separate, by site."""
    if not data.charges:
        return None
    teams = sorted({c.team for c in data.charges if c.team not in KEPT})
    kept = [c for c in data.charges if c.team in KEPT]
    team_totals = {t: sum(c.total_usd for c in data.charges if c.team == t) for t in teams}
    teams.sort(key=lambda t: -team_totals[t])
    panels: list[tuple[list[str], dict[str, dict[str, float]]]] = []
    if teams:
        panels.append((teams, {t: _parts([c for c in data.charges if c.team == t]) for t in teams}))
    if kept:
        keys = [f"{c.site_id} {KEPT[c.team]}" for c in kept]
        panels.append((keys, {k: _parts([c]) for k, c in zip(keys, kept, strict=True)}))
    titles = (["Teams, all sites, USD"] if teams else []) + (
        [f"Kept separate by site: idle capacity ({IDLE}), shared infrastructure ({SHARED}), USD"]
        if kept
        else []
    )
    widths = [0.62, 0.38] if len(panels) == 2 else [1.0]
    fig = _subplots(
        rows=1,
        cols=len(panels),
        column_widths=widths,
        horizontal_spacing=0.09,
        subplot_titles=titles,
    )
    for col, (keys, parts) in enumerate(panels, start=1):
        for label, attr, color in COST_PARTS:
            fig.add_trace(
                go.Bar(
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    x=keys,
                    y=[parts[k][attr] for k in keys],
                    marker={"color": color},
                    hovertemplate="%{x}: %{y:,.2f} USD " + label,
                ),
                row=1,
                col=col,
            )
        for key in keys:
            total = sum(parts[key].values())
            fig.add_annotation(
                x=key,
                y=total,
                text=f"{total:,.0f}",
                showarrow=False,
                yshift=9,
                font={"size": 11},
                row=1,
                col=col,
            )
    _style(fig, f"Chargeback by team, {months_label(data)} ({data.currency})", height=420)
    fig.update_layout(barmode="stack", bargap=0.35)
    fig.update_yaxes(title_text=data.currency, row=1, col=1)
    return Chart(
        "chart-chargeback",
        "chargeback",
        fig,
        f"fct_chargeback_monthly, every site and month summed: energy at local tariffs, carbon "
        f"at {data.carbon_price_usd_per_tonne:g} {data.currency}/tCO2e, capex and opex shared "
        f"by facility energy; idle policy '{data.idle_policy}', shared policy "
        f"'{data.shared_policy}' (shared infrastructure: the metered IT load no server "
        "reported, and its overhead).",
    )


def roi(data: ReportData) -> Chart | None:
    """Six panels per site: monthly and projected cost, ROI, latency, energy and carbon."""
    rows = data.roi
    if not rows:
        return None
    sites = [r.site_id for r in rows]
    money = data.currency
    titles = (
        f"Cost per month, {money}",
        f"Projected cost at 6 and 12 months, {money}",
        "ROI vs cloud at 6 and 12 months, %",
        "p95 latency seen by users, ms",
        "Energy per request, Wh",
        "Carbon per request, gCO2e",
    )
    fig = _subplots(
        rows=2, cols=3, subplot_titles=titles, vertical_spacing=0.2, horizontal_spacing=0.07
    )
    seen: set[str] = set()

    def bars(name: str, color: str, x: Any, y: list[float | None], row: int, col: int) -> None:
        fig.add_trace(
            go.Bar(
                name=name,
                legendgroup=name,
                showlegend=name not in seen,
                x=x,
                y=y,
                marker={"color": color},
                text=[_short(v) for v in y],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{x}: %{y:,.4~f}",
            ),
            row=row,
            col=col,
        )
        seen.add(name)

    bars("micro-DC", MICRODC, sites, [r.microdc_usd_per_month for r in rows], 1, 1)
    bars(
        "micro-DC operating (no capex)",
        OPERATING,
        sites,
        [r.operating_usd_per_month for r in rows],
        1,
        1,
    )
    bars("cloud baseline", CLOUD, sites, [r.cloud_usd_per_month for r in rows], 1, 1)
    capacity = [r.cloud_capacity_usd_per_month for r in rows]
    bars("cloud, the same cores rented", CLOUD_CAPACITY, sites, capacity, 1, 1)
    horizon = [[s for s in sites for _ in (6, 12)], [f"{m} mo" for _ in sites for m in (6, 12)]]
    bars(
        "micro-DC",
        MICRODC,
        horizon,
        [v for r in rows for v in (r.microdc_usd_6m, r.microdc_usd_12m)],
        1,
        2,
    )
    bars(
        "cloud baseline",
        CLOUD,
        horizon,
        [v for r in rows for v in (r.cloud_usd_6m, r.cloud_usd_12m)],
        1,
        2,
    )
    paid = [f"{r.site_id}<br>{_payback(r)}" for r in rows]
    bars("ROI at 6 months", ROI_6M, paid, [r.roi_6m_pct for r in rows], 1, 3)
    bars("ROI at 12 months", ROI_12M, paid, [r.roi_12m_pct for r in rows], 1, 3)
    capacity_roi = [r.capacity_roi_12m_pct for r in rows]
    bars("ROI at 12 months vs the same cores", CLOUD_CAPACITY, paid, capacity_roi, 1, 3)
    bars("micro-DC", MICRODC, sites, [r.latency_p95_ms for r in rows], 2, 1)
    bars("cloud baseline", CLOUD, sites, [r.baseline_latency_p95_ms for r in rows], 2, 1)
    bars("micro-DC", MICRODC, sites, [r.facility_wh_per_request for r in rows], 2, 2)
    bars("cloud baseline", CLOUD, sites, [r.baseline_wh_per_request for r in rows], 2, 2)
    bars("micro-DC", MICRODC, sites, [r.gco2e_per_request for r in rows], 2, 3)
    bars("cloud baseline", CLOUD, sites, [r.baseline_gco2e_per_request for r in rows], 2, 3)
    for col in (1, 2):
        costs = [
            v
            for r in rows
            for v in (
                (
                    r.microdc_usd_per_month,
                    r.operating_usd_per_month,
                    r.cloud_usd_per_month,
                    r.cloud_capacity_usd_per_month,
                )
                if col == 1
                else (r.microdc_usd_6m, r.microdc_usd_12m, r.cloud_usd_6m, r.cloud_usd_12m)
            )
            if v is not None and v > 0
        ]
        if costs and max(costs) / min(costs) > _LOG_RATIO:
            low, high = math.log10(min(costs) / 2), math.log10(max(costs) * 4)
            fig.update_yaxes(type="log", range=[low, high], dtick=1, row=1, col=col)
            fig.layout.annotations[col - 1].text += " (log)"
    fig.add_hline(y=0, line={"color": "#6b7280", "width": 1}, row=1, col=3)
    rois = [
        v
        for r in rows
        for v in (r.roi_6m_pct, r.roi_12m_pct, r.capacity_roi_12m_pct)
        if v is not None
    ]
    if rois:
        low, high = min(0.0, *rois), max(0.0, *rois)
        pad = (high - low) * 0.18 or 10.0
        fig.update_yaxes(range=[low - (pad if low < 0 else 0), high + pad], row=1, col=3)
    _style(
        fig, f"ROI of the micro data centers vs the hyperscale cloud baseline ({money})", height=700
    )
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(rangemode="tozero", row=2)
    return Chart(
        "chart-roi",
        "roi",
        fig,
        "fct_roi_site: pilot cost scaled to a month (micro-DC with and without capex) vs the "
        "cloud cost of the same core-hours and egress; ROI = (N x monthly savings - investment) "
        "/ investment; cloud latency adds the baseline round trip; energy and carbon per request "
        "include idle energy here, vs the cloud at its PUE and grid plus network transport.",
    )


def _site_hours(data: ReportData, site: Site) -> list[Any]:
    return [h for h in data.site_hours if h.site_id == site.site_id]


def _parts(charges: list[Any]) -> dict[str, float]:
    return {attr: sum(getattr(c, attr) for c in charges) for _, attr, _ in COST_PARTS}


def months_label(data: ReportData) -> str:
    """The chargeback's site-local months: `2026-03`, or `2026-03 to 2026-05`."""
    if not data.months:
        return "no months"
    first, last = data.months[0].strftime("%Y-%m"), data.months[-1].strftime("%Y-%m")
    return first if first == last else f"{first} to {last}"


def _payback(row: Roi) -> str:
    if row.payback_months is None:
        return "no payback"
    return f"payback {row.payback_months:,.1f} mo"


def _style(fig: Any, title: str, *, height: int, hovermode: str = "closest") -> None:
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        font={"family": FONT, "size": 12, "color": "#1f2937"},
        height=height,
        margin=_MARGIN,
        legend={
            "orientation": "h",
            "x": 0,
            "xanchor": "left",
            "y": -_LEGEND_GAP_PX / max(100, height - _MARGIN["t"] - _MARGIN["b"]),
            "yanchor": "top",
        },
        hovermode=hovermode,
        hoverlabel={"font": {"family": FONT}},
    )


def _subplots(**kw: Any) -> Any:
    """`make_subplots` with subplot titles at the page's text size (they are annotations)."""
    fig = make_subplots(**kw)
    fig.update_annotations(font_size=12)
    return fig


def _log_ticks(values: list[float]) -> list[float]:
    """1-2-5 ticks covering `values` (plotly's own log ticks label 2 and 5 as bare digits)."""
    if not values:
        return []
    low, high = min(values) / 1.5, max(values) * 1.5
    ticks = [m * 10.0**e for e in range(-3, 7) for m in (1, 2, 5)]
    return [t for t in ticks if low <= t <= high]


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def _fixed(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _short(value: float | None) -> str:
    """A bar label that fits a narrow bar: 3 significant digits, k and M for thousands."""
    if value is None:
        return ""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text)
