"""Per-site totals of an embedded run, read from its output records (`microdc process`)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from pipeline.contracts.outputs import NodeMinute
from pipeline.embedded.driver import RunResult
from pipeline.metrics.energy import IDLE_SERVICE
from pipeline.metrics.sketch import LatencySketch, SketchWire


@dataclass(frozen=True)
class SiteSummary:
    """Totals of one site over the run (ratios re-derived as sum/sum)."""

    site_id: str
    requests: int
    it_kwh: float
    facility_kwh: float
    pue: float
    wh_per_request: float | None
    gco2e_per_request: float | None
    p95_latency_ms: float | None
    alerts: int


def summarize(result: RunResult) -> list[SiteSummary]:
    """Per-site totals: facility kWh, PUE, Wh and gCO2e per request, p95 latency, alerts fired."""
    acc: dict[str, dict[str, float]] = {}
    for row in result.outputs.get("mdc.energy-minutes", []):
        a = acc.setdefault(row.site_id, {"req": 0, "it": 0.0, "fac": 0.0, "co2": 0.0})
        a["req"] += row.requests
        a["it"] += row.it_energy_wh
        a["fac"] += row.facility_energy_wh
        a["co2"] += row.operational_gco2e + row.embodied_gco2e
    sketches: dict[str, LatencySketch] = {}
    for item in result.outputs.get("mdc.node-minutes", []):
        if isinstance(item, NodeMinute) and item.latency and item.service != IDLE_SERVICE:
            sketch = LatencySketch.from_wire(msgspec.convert(item.latency, SketchWire))
            sketches.setdefault(item.site_id, LatencySketch()).merge(sketch)
    alerts: dict[str, int] = {}
    for alert in result.outputs.get("mdc.alerts", []):
        if alert.state == "firing" and alert.site_id:
            alerts[alert.site_id] = alerts.get(alert.site_id, 0) + 1
    out = []
    for site_id, a in sorted(acc.items()):
        requests = int(a["req"])
        site_sketch = sketches.get(site_id)
        out.append(
            SiteSummary(
                site_id=site_id,
                requests=requests,
                it_kwh=a["it"] / 1000,
                facility_kwh=a["fac"] / 1000,
                pue=a["fac"] / a["it"] if a["it"] else 0.0,
                wh_per_request=a["fac"] / requests if requests else None,
                gco2e_per_request=a["co2"] / requests if requests else None,
                p95_latency_ms=site_sketch.quantile(0.95) if site_sketch else None,
                alerts=alerts.get(site_id, 0),
            )
        )
    return out
