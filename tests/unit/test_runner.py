"""The embedded runner: the whole core over simulated topics, independent of arrival order."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest

from pipeline.embedded.driver import RunResult, from_envelopes, run_embedded
from pipeline.fleet import Fleet, load_fleet
from pipeline.metrics.energy import IDLE_SERVICE
from pipeline.simulate import Envelope, FaultConfig, SimConfig, Simulator

START = datetime(2026, 3, 2, 13, tzinfo=UTC)
CHECKED = ("mdc.energy-minutes", "mdc.site-minutes", "mdc.slo-burn", "mdc.alerts")


@cache
def fleet() -> Fleet:
    return load_fleet()


@cache
def envelopes(seed: int = 4, minutes: int = 25) -> tuple[Envelope, ...]:
    config = SimConfig(start=START, minutes=minutes, seed=seed, rps_scale=0.03)
    return tuple(Simulator(fleet(), config))


def by_key(result: RunResult, topic: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rec in result.outputs.get(topic, []):
        key = rec.alert_id + "|" + rec.state if topic == "mdc.alerts" else rec.key
        assert key not in out, f"{topic}: {key} emitted twice"
        out[key] = rec
    return out


def test_every_closed_minute_has_every_node_and_conserves_energy() -> None:
    result = run_embedded(fleet(), from_envelopes(envelopes()))
    rows = result.outputs["mdc.energy-minutes"]
    minutes = {r.window_start for r in rows}
    assert len(minutes) >= 25
    per_minute = Counter((r.window_start, r.node_id) for r in rows if r.service == IDLE_SERVICE)
    assert set(per_minute.values()) == {1}
    assert len(per_minute) == len(minutes) * len(fleet().nodes)
    requests = sum(1 for e in envelopes() if e.topic.name == "mdc.request-log")
    assert sum(r.requests for r in rows) == requests
    for site in result.outputs["mdc.site-minutes"]:
        site_rows = [
            r for r in rows if r.site_id == site.site_id and r.window_start == site.window_start
        ]
        assert sum(r.it_energy_wh for r in site_rows) == pytest.approx(site.node_it_energy_wh)
        assert sum(r.facility_energy_wh for r in site_rows) == pytest.approx(
            site.node_it_energy_wh * site.pue
        )
        assert site.pue >= 1.0


def test_metered_minutes_use_meter_pue_and_hourly_grid_values() -> None:
    result = run_embedded(fleet(), from_envelopes(envelopes()))
    full = [s for s in result.outputs["mdc.site-minutes"] if s.window_start > START]
    assert full
    for s in full:
        assert s.pue_source == "metered"
        assert s.facility_energy_wh is not None and s.it_energy_wh is not None
        assert s.pue == pytest.approx(s.facility_energy_wh / s.it_energy_wh)
        assert s.intensity_source == "grid"


@pytest.mark.parametrize("shuffle_seed", [1, 2, 3])
def test_reordering_within_the_lateness_bound_changes_nothing(shuffle_seed: int) -> None:
    clean = list(envelopes())
    rng = random.Random(shuffle_seed)

    # Arrival = emission + a delay under the 120 s lateness (node samples count from their
    # interval start, so keep their delay below lateness minus the 30 s interval).
    def arrival(env: Envelope) -> float:
        bound = 89_000 if env.topic.name == "mdc.node-telemetry" else 119_000
        return env.emit_ms + rng.uniform(0, bound)

    reordered = sorted(clean, key=arrival)
    assert reordered != clean
    expected = run_embedded(fleet(), from_envelopes(clean))
    got = run_embedded(fleet(), from_envelopes(reordered))
    assert not got.outputs.get("mdc.late-events")
    for topic in CHECKED:
        assert by_key(got, topic) == by_key(expected, topic), topic


def test_bad_and_late_records_are_set_aside_and_valid_ones_unaffected() -> None:
    config = SimConfig(
        start=START, minutes=25, seed=4, rps_scale=0.03, faults=FaultConfig(malformed=0.02)
    )
    sim = Simulator(fleet(), config)
    dirty = list(sim)
    result = run_embedded(fleet(), from_envelopes(dirty))
    malformed = sum(n for k, n in sim.stats.faults.items() if k.startswith("malformed"))
    letters = result.outputs["mdc.dead-letters"]
    assert len(letters) == malformed > 0
    assert {d.error_kind for d in letters} <= {"malformed_json", "invalid"}
    assert all(d.error_detail and d.source_topic.startswith("mdc.") for d in letters)
    # malformed copies are extra records: without them, the outputs are the same
    valid = [e for e in dirty if not (e.fault or "").startswith("malformed")]
    clean = run_embedded(fleet(), from_envelopes(valid))
    for topic in CHECKED:
        assert by_key(result, topic) == by_key(clean, topic), topic
