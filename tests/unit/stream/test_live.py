"""The live view's rolling state: hand-computed window numbers, eviction, alert fire/resolve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from pipeline.contracts.outputs import AlertEvent, NodeMinute, PartitionMark, SloBurn
from pipeline.fleet import load_fleet
from pipeline.metrics.sketch import LatencySketch
from pipeline.stream import live
from pipeline.stream.live import LiveState, LiveView, NodeLatency, NodeMark, NodeMinuteItem
from tests.support.factories import site_minute

FLEET = load_fleet()
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MS0 = int(T0.timestamp() * 1000)
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def sketch_of(values: list[float]) -> LatencySketch:
    sketch = LatencySketch()
    sketch.add_many(values)
    return sketch


def latency(
    minute: int, node: str, values: list[float], service: str = "checkout-api"
) -> NodeLatency:
    return NodeLatency(
        key=f"{at(minute):%Y-%m-%dT%H:%M:%SZ}|{node}|{service}",
        window_start=at(minute),
        site_id=node[:4],
        service=service,
        latency=sketch_of(values).to_wire() if values else None,
    )


def burn(
    minute: int, service: str, site: str, avail_1h: float, lat_1h: float, **kw: Any
) -> SloBurn:
    avail = {w: 0.0 for w in WINDOWS} | {"1h": avail_1h, "5m": kw.get("avail_5m", 0.0)}
    lat = {w: 0.0 for w in WINDOWS} | {"1h": lat_1h, "5m": kw.get("lat_5m", 0.0)}
    return SloBurn(
        key=f"{at(minute):%Y-%m-%dT%H:%M:%SZ}|{service}|{site}",
        window_start=at(minute),
        service=service,
        site_id=site,
        requests=100,
        bad_availability=0,
        bad_latency=0,
        availability_burn=avail,
        latency_burn=lat,
        availability_budget_remaining=0.9,
        latency_budget_remaining=0.8,
    )


def alert(
    fired: int, state: str, at_minute: int, *, site: str = "bog1", rule: str = "page-1h", **kw: Any
) -> AlertEvent:
    fired_ms = MS0 + fired * 60_000
    values: dict[str, Any] = {
        "alert_id": f"slo:availability:checkout-api:{site}:{rule}:{fired_ms}",
        "kind": "slo",
        "rule": rule,
        "severity": "page" if rule.startswith("page") else "ticket",
        "state": state,
        "at_ms": MS0 + at_minute * 60_000,
        "fired_at_ms": fired_ms,
        "value": 20.0,
        "threshold": 14.4,
        "service": "checkout-api",
        "site_id": site,
        "sli": "availability",
        "long_window": "1h",
        "short_window": "5m",
        "burn_long": 20.0,
        "burn_short": 30.0,
    }
    values.update(kw)
    return AlertEvent(**values)


def site(view: LiveView, site_id: str) -> live.SiteView:
    return next(s for s in view.sites if s.site_id == site_id)


# -- numbers -----------------------------------------------------------------------------------


def test_energy_per_request_and_pue_are_sums_over_the_window() -> None:
    state = LiveState(FLEET, window_minutes=15)
    # Minute 0, metered: facility 150 Wh / IT 100 Wh = PUE 1.5; node IT 90 Wh -> 135 Wh facility.
    state.add_site_minute(
        site_minute(
            at(0), "bog1", facility_energy_wh=150.0, it_energy_wh=100.0,
            node_it_energy_wh=90.0, pue=1.5, pue_source="metered", requests=300,
        )
    )  # fmt: skip
    # Minute 1, no meters: design PUE 1.6 on node IT 50 Wh -> 80 Wh facility.
    state.add_site_minute(
        site_minute(
            at(1), "bog1", node_it_energy_wh=50.0, pue=1.6, pue_source="design", requests=100
        )
    )
    bog = site(state.view(), "bog1")
    assert bog.minutes == 2
    assert bog.requests == 400
    assert bog.facility_energy_wh == pytest.approx(135.0 + 80.0)
    assert bog.node_it_energy_wh == pytest.approx(140.0)
    assert bog.wh_per_request == pytest.approx(215.0 / 400)  # 0.5375, not mean(0.45, 0.8)
    assert bog.pue == pytest.approx((150.0 + 80.0) / (100.0 + 50.0))  # 1.5333, not mean 1.55
    assert bog.pue_source == "mixed"
    points = {p.minute: p for p in bog.series}
    assert points["2026-03-02T12:00:00Z"].wh_per_request == pytest.approx(0.45)
    assert points["2026-03-02T12:01:00Z"].pue == pytest.approx(1.6)
    assert len(bog.series) == 15 and bog.series[-1].minute == "2026-03-02T12:01:00Z"
    assert bog.series[0].wh_per_request is None  # 11:47: before the data

    mex = site(state.view(), "mex1")
    assert (mex.minutes, mex.requests, mex.wh_per_request, mex.pue) == (0, 0, None, None)


def test_fleet_row_sums_the_sites() -> None:
    state = LiveState(FLEET)
    state.add_site_minute(
        site_minute(
            at(0), "bog1", node_it_energy_wh=100.0, pue=1.5, pue_source="design", requests=100
        )
    )
    state.add_site_minute(
        site_minute(
            at(0), "mex1", node_it_energy_wh=300.0, pue=1.2, pue_source="design", requests=900
        )
    )
    fleet = state.view().fleet
    assert fleet.site_id == "__all__"
    assert fleet.requests == 1000
    assert fleet.wh_per_request == pytest.approx((150.0 + 360.0) / 1000)
    assert fleet.pue == pytest.approx((150.0 + 360.0) / 400.0)  # 1.275
    assert fleet.pue_source == "design"


def test_p95_merges_the_sites_node_sketches_and_skips_reemissions() -> None:
    state = LiveState(FLEET)
    state.add_site_minute(site_minute(at(0), "bog1", requests=100))
    state.add_site_minute(site_minute(at(1), "bog1", requests=100))
    # 95 requests of 10 ms and 5 of 100 ms: p95 is the value at rank floor(0.95 * 99) = 94 -> 10.
    a = latency(0, "bog1-r1-n01", [10.0] * 60)
    b = latency(1, "bog1-r1-n02", [10.0] * 35 + [100.0] * 5)
    for row in (a, b, b):  # b twice: a re-emission must not count twice (105 values -> 100 ms)
        state.add_node_minute(row)
    state.add_node_minute(latency(1, "bog1-r1-n03", [5000.0] * 50, service="__idle__"))
    state.add_node_minute(latency(1, "bog1-r1-n04", []))  # no requests: no sketch
    state.add_node_minute(
        NodeMark()  # partition marks carry no latency
    )
    bog = site(state.view(), "bog1")
    assert bog.p95_latency_ms == pytest.approx(10.0, rel=0.01)
    assert bog.p95_latency_ms == sketch_of([10.0] * 95 + [100.0] * 5).quantile(0.95)
    # Minute 1 alone: 40 values, rank floor(0.95 * 39) = 37 >= 35 -> 100 ms.
    assert bog.series[-1].p95_latency_ms == pytest.approx(100.0, rel=0.01)
    assert bog.series[-2].p95_latency_ms == pytest.approx(10.0, rel=0.01)
    assert state.view().fleet.p95_latency_ms == bog.p95_latency_ms
    assert site(state.view(), "sao1").p95_latency_ms is None


def test_burn_is_the_latest_minute_per_service_and_the_headline_the_worst_1h() -> None:
    state = LiveState(FLEET)
    state.add_slo_burn(burn(0, "checkout-api", "bog1", avail_1h=50.0, lat_1h=0.0))
    state.add_slo_burn(burn(1, "checkout-api", "bog1", avail_1h=2.0, lat_1h=0.5, avail_5m=3.0))
    state.add_slo_burn(burn(1, "auth", "bog1", avail_1h=0.1, lat_1h=7.5, lat_5m=9.0))
    state.add_slo_burn(burn(1, "auth", "__all__", avail_1h=0.2, lat_1h=4.0))
    bog = site(state.view(), "bog1")
    assert [s.service for s in bog.services] == ["auth", "checkout-api"]
    checkout = bog.services[1]
    assert (checkout.availability_1h, checkout.availability_5m, checkout.latency_1h) == (
        2.0,
        3.0,
        0.5,
    )
    assert bog.burn == live.WorstBurn(service="auth", sli="latency", burn_1h=7.5, burn_5m=9.0)
    assert [p.burn_1h for p in bog.series[-2:]] == [50.0, 7.5]  # worst per minute
    fleet = state.view().fleet
    assert fleet.burn == live.WorstBurn(service="auth", sli="latency", burn_1h=4.0, burn_5m=0.0)


# -- the window ----------------------------------------------------------------------------------


def test_window_moves_with_the_latest_closed_minute_and_evicts_older_minutes() -> None:
    state = LiveState(FLEET, window_minutes=3)
    for minute in range(5):
        state.add_site_minute(site_minute(at(minute), "bog1", node_it_energy_wh=10.0, requests=10))
        state.add_slo_burn(burn(minute, "auth", "bog1", avail_1h=float(minute), lat_1h=0.0))
        state.add_node_minute(latency(minute, "bog1-r1-n01", [float(minute + 1)]))
    view = state.view()
    assert (view.as_of, view.window_start) == ("2026-03-02T12:04:00Z", "2026-03-02T12:02:00Z")
    bog = site(view, "bog1")
    assert bog.minutes == 3 and bog.requests == 30
    assert [p.minute[11:16] for p in bog.series] == ["12:02", "12:03", "12:04"]
    assert bog.p95_latency_ms == pytest.approx(4.0, rel=0.01)  # values 3, 4, 5 -> rank 1
    assert sorted(state._site_minutes["bog1"]) == [MS0 + m * 60_000 for m in (2, 3, 4)]
    assert sorted(state._burns["bog1"]) == [MS0 + m * 60_000 for m in (2, 3, 4)]
    assert sorted(state._latency["bog1"]) == [MS0 + m * 60_000 for m in (2, 3, 4)]

    # A minute older than the window (a late re-emission) changes nothing.
    state.add_site_minute(site_minute(at(1), "bog1", requests=1000))
    state.add_node_minute(latency(1, "bog1-r1-n02", [1.0]))
    assert site(state.view(), "bog1").requests == 30
    assert MS0 + 60_000 not in state._latency["bog1"]


def test_latency_ahead_of_the_closed_minutes_waits_bounded() -> None:
    state = LiveState(FLEET, window_minutes=3)
    state.add_site_minute(site_minute(at(0), "bog1", requests=1))
    # Stage 1 is ahead: its minute 5 is not in the window yet, but kept for when it closes.
    state.add_node_minute(latency(5, "bog1-r1-n01", [42.0]))
    assert site(state.view(), "bog1").p95_latency_ms is None
    state.add_site_minute(site_minute(at(5), "bog1", requests=1))
    assert site(state.view(), "bog1").p95_latency_ms == pytest.approx(42.0, rel=0.01)
    # Far ahead (stage 2 stuck): at most window + AHEAD_MINUTES minutes are kept.
    far = 5 + 3 + live.AHEAD_MINUTES + 1
    state.add_node_minute(latency(far, "bog1-r1-n01", [1.0]))
    assert sorted(state._latency["bog1"]) == [MS0 + far * 60_000]
    for minute in range(far + 1, far + 400):
        state.add_node_minute(latency(minute, "bog1-r1-n01", [1.0]))
    assert len(state._latency["bog1"]) == 3 + live.AHEAD_MINUTES + 1


def test_view_is_cached_until_an_input_changes_it_and_encodes_to_json() -> None:
    state = LiveState(FLEET)
    empty = state.view()
    assert empty.as_of is None and empty.firing == [] and len(empty.sites) == len(FLEET.sites)
    assert empty.sites[0].series == [] and empty.fleet.label == "all sites"
    assert state.view() is empty
    state.add_site_minute(site_minute(at(0), "bog1", requests=1))
    assert state.view() is not empty
    data = msgspec.json.decode(msgspec.json.encode(state.view()))
    assert data["as_of"] == "2026-03-02T12:00:00Z"
    assert data["sites"][0]["label"] == "Bogotá, CO"


# -- alerts ----------------------------------------------------------------------------------------


def test_alerts_fire_resolve_and_a_replayed_firing_does_not_come_back() -> None:
    state = LiveState(FLEET, window_minutes=15)
    state.add_site_minute(site_minute(at(10), "bog1"))
    fired = alert(2, "firing", 2)
    ticket = alert(5, "firing", 5, site="mex1", rule="ticket-3d")
    state.add_alert(fired)
    state.add_alert(ticket)
    view = state.view()
    assert [a.alert_id for a in view.firing] == [fired.alert_id, ticket.alert_id]
    assert view.firing[0].fired_at == "2026-03-02T12:02:00Z"
    assert (site(view, "bog1").alerts_firing, site(view, "mex1").alerts_firing) == (1, 1)
    assert view.fleet.alerts_firing == 2

    state.add_alert(alert(2, "resolved", 8))
    state.add_alert(fired)  # replayed after a failover: older than the resolution
    view = state.view()
    assert [a.rule for a in view.firing] == ["ticket-3d"]
    assert [(a.alert_id, a.at) for a in view.resolved] == [(fired.alert_id, "2026-03-02T12:08:00Z")]
    # The same rule firing again later is a new alert (its id ends with the new firing minute).
    again = alert(9, "firing", 9)
    state.add_alert(again)
    assert [a.alert_id for a in state.view().firing] == [again.alert_id, ticket.alert_id]


def test_pages_are_listed_first_then_the_longest_firing() -> None:
    state = LiveState(FLEET)
    state.add_alert(alert(1, "firing", 1, rule="ticket-3d"))
    state.add_alert(alert(3, "firing", 3, rule="page-1h"))
    state.add_alert(alert(2, "firing", 2, rule="page-6h"))
    assert [a.rule for a in state.firing()] == ["page-6h", "page-1h", "ticket-3d"]


def test_alert_memory_is_bounded() -> None:
    state = LiveState(FLEET)
    state.add_alert(alert(0, "firing", 0))
    state.add_alert(alert(0, "resolved", 1))
    keep = live.RESOLVED_KEEP_MINUTES
    state.add_alert(alert(keep + 2, "firing", keep + 2, site="mex1"))
    assert [a.site_id for a in state._alerts.values()] == ["mex1"]  # old resolution forgotten
    for i in range(live.MAX_ALERTS + 10):  # the cap drops the longest firing first
        state.add_alert(alert(keep + 3 + i, "firing", keep + 3 + i, alert_id=f"x{i}"))
    assert len(state._alerts) == live.MAX_ALERTS
    assert "x9" not in state._alerts and "x10" in state._alerts


# -- the contract subset ---------------------------------------------------------------------------


def test_node_latency_reads_node_minutes_records() -> None:
    wire = sketch_of([3.0, 4.0]).to_wire()
    row = NodeMinute(
        key="2026-03-02T12:00:00Z|bog1-r1-n01|auth", window_start=T0, site_id="bog1",
        rack_id="bog1-r1", node_id="bog1-r1-n01", service="auth", team="identity",
        requests=2, errors_5xx=0, slow=0, busy_ms=7.0, bytes_in=0, bytes_out=0,
        it_energy_wh=1.0, node_energy_wh=1.0, coverage=1.0, embodied_gco2e=0.1,
        max_inlet_c=None, latency=msgspec.to_builtins(wire), partition=2,
    )  # fmt: skip
    mark = PartitionMark(partition=2, partitions=4, closed_before=T0)
    decode = msgspec.json.Decoder(NodeMinuteItem).decode
    got = decode(msgspec.json.encode(row))
    assert got == NodeLatency(
        key=row.key, window_start=T0, site_id="bog1", service="auth", latency=wire
    )
    assert isinstance(decode(msgspec.json.encode(mark)), NodeMark)
