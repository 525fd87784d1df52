"""The simulator is deterministic and realistic, and injects exactly the faults asked for."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime
from functools import cache

import msgspec
import pytest

from pipeline.contracts import FacilitySample, NodeSample, RequestLog, decode
from pipeline.contracts.topics import FACILITY_TELEMETRY, NODE_TELEMETRY, REQUEST_LOG
from pipeline.errors import ConfigError, ContractError
from pipeline.fleet import Fleet, load_fleet
from pipeline.simulate import Envelope, FaultConfig, SimConfig, Simulator, profiles

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


@cache
def fleet() -> Fleet:
    return load_fleet()


def run(
    minutes: int,
    seed: int = 7,
    scale: float = 0.02,
    faults: FaultConfig | None = None,
    start: datetime = START,
) -> tuple[list[Envelope], Simulator]:
    sim = Simulator(
        fleet(),
        SimConfig(
            start=start, minutes=minutes, seed=seed, rps_scale=scale, faults=faults or FaultConfig()
        ),
    )
    return list(sim), sim


@cache
def two_days() -> list[Envelope]:
    return run(2 * 1440, seed=11, scale=0.01)[0]


def decoded(envs: list[Envelope], record_type: type[msgspec.Struct]) -> list[msgspec.Struct]:
    return [decode(record_type, e.value) for e in envs if e.topic.record_type is record_type]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    faults = FaultConfig(malformed=0.02, late=0.02, out_of_order=0.05, duplicate=0.02)
    a, _ = run(20, seed=3, scale=0.05, faults=faults)
    b, _ = run(20, seed=3, scale=0.05, faults=faults)
    c, _ = run(20, seed=4, scale=0.05, faults=faults)
    key = [(e.topic.name, e.key, e.value, e.emit_ms, e.fault) for e in a]
    assert key == [(e.topic.name, e.key, e.value, e.emit_ms, e.fault) for e in b]
    assert key != [(e.topic.name, e.key, e.value, e.emit_ms, e.fault) for e in c]


def test_clean_run_emits_only_valid_records_in_event_time_order() -> None:
    envs, sim = run(30, scale=0.05)
    assert all(e.fault is None for e in envs)
    assert [e.emit_ms for e in envs] == sorted(e.emit_ms for e in envs)
    counts = Counter(e.topic.name for e in envs)
    assert counts == sim.stats.valid
    for env in envs:
        assert env.topic.record_type is not None
        record = decode(env.topic.record_type, env.value)
        assert env.key == env.topic.key_of(record)
    assert counts[FACILITY_TELEMETRY.name] == 30 * len(fleet().sites)


def test_diurnal_peak_is_in_local_daytime_for_every_site() -> None:
    per_hour: dict[str, Counter[int]] = defaultdict(Counter)
    for rec in decoded(two_days(), RequestLog):
        assert isinstance(rec, RequestLog)
        site = fleet().site_by_id[rec.site_id]
        per_hour[rec.site_id][rec.finished_at.astimezone(site.tz).hour] += 1
    for site_id, hours in per_hour.items():
        day = sum(hours[h] for h in (10, 11, 12, 19, 20, 21))
        night = sum(hours[h] for h in (2, 3, 4, 5, 6, 7))
        assert day > 4 * night, (site_id, dict(hours))
        peak = max(hours, key=lambda h: hours[h])
        assert 9 <= peak <= 22, (site_id, peak)


def test_node_power_within_idle_and_max_and_follows_utilisation() -> None:
    samples = decoded(two_days(), NodeSample)
    assert samples
    for s in samples:
        assert isinstance(s, NodeSample)
        node = fleet().node_by_id[s.node_id]
        assert node.idle_power_w <= s.power_w <= node.max_power_w, s
        assert (s.gpu_util is not None) == node.has_gpu
        assert s.site_id == node.site_id and s.rack_id == node.rack_id


def test_power_curve_is_concave_monotone_and_bounded() -> None:
    values = [profiles.server_power_w(u / 100, 100.0, 400.0) for u in range(101)]
    assert values[0] == 100.0 and values[-1] == pytest.approx(400.0)
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert values[50] > (100.0 + 400.0) / 2  # concave: above the linear model at half load


def test_pue_is_at_least_one_and_warmer_means_worse() -> None:
    facility = [s for s in decoded(two_days(), FacilitySample) if isinstance(s, FacilitySample)]
    by_site: dict[str, list[FacilitySample]] = defaultdict(list)
    for s in facility:
        assert s.it_power_w > 0
        assert s.facility_power_w >= s.it_power_w
        by_site[s.site_id].append(s)
    for site_id, rows in by_site.items():
        assert all(r.outdoor_temp_c is not None for r in rows)
        rows.sort(key=lambda r: r.outdoor_temp_c or 0.0)
        cold, hot = rows[: len(rows) // 4], rows[-len(rows) // 4 :]
        pue = lambda rs: sum(r.facility_power_w for r in rs) / sum(r.it_power_w for r in rs)  # noqa: E731
        assert pue(hot) > pue(cold), site_id


def test_solar_only_in_local_daylight() -> None:
    for s in decoded(two_days(), FacilitySample):
        assert isinstance(s, FacilitySample)
        local_hour = s.observed_at.astimezone(fleet().site_by_id[s.site_id].tz).hour
        if local_hour < 6 or local_hour >= 19:
            assert s.onsite_renewable_w == 0.0, s


def test_node_outages_leave_telemetry_gaps() -> None:
    times: dict[str, list[datetime]] = defaultdict(list)
    for s in decoded(two_days(), NodeSample):
        assert isinstance(s, NodeSample)
        times[s.node_id].append(s.observed_at)
    gaps = 0
    for series in times.values():
        series.sort()
        gaps += sum(1 for a, b in itertools.pairwise(series) if (b - a).total_seconds() >= 5 * 60)
    assert gaps >= 5


def test_requested_fault_rates_are_honoured() -> None:
    rates = FaultConfig(malformed=0.03, late=0.04, out_of_order=0.10, duplicate=0.05)
    envs, sim = run(60, seed=5, scale=0.05, faults=rates)
    valid = sum(sim.stats.valid.values())
    assert valid > 20_000
    faults = Counter(
        "malformed" if (e.fault or "").startswith("malformed") else e.fault for e in envs
    )
    for kind, rate in (
        ("malformed", 0.03),
        ("late", 0.04),
        ("out_of_order", 0.10),
        ("duplicate", 0.05),
    ):
        assert faults[kind] == pytest.approx(rate * valid, rel=0.1), kind
    assert len(envs) == sim.stats.emitted


def test_injected_faults_behave_as_labelled() -> None:
    lateness_ms = 120_000
    envs, _ = run(
        60,
        seed=9,
        scale=0.05,
        faults=FaultConfig(malformed=0.02, late=0.02, out_of_order=0.05, duplicate=0.02),
    )
    seen_values: Counter[bytes] = Counter()
    max_event = {name: 0 for name in (REQUEST_LOG.name, NODE_TELEMETRY.name)}
    late_checked = 0
    end_ms = int(START.timestamp() * 1000) + 60 * 60_000  # delayed past the end: final flush
    for env in envs:
        record_type = env.topic.record_type
        assert record_type is not None
        if env.fault and env.fault.startswith("malformed"):
            with pytest.raises(ContractError):
                decode(record_type, env.value)
            assert b"\n" not in env.value
            continue
        decode(record_type, env.value)
        seen_values[env.value] += 1
        if env.fault == "late":
            assert env.emit_ms - env.event_ms > lateness_ms
            if env.topic.name in max_event and env.emit_ms < end_ms:
                assert max_event[env.topic.name] - lateness_ms > env.event_ms
                late_checked += 1
        if env.fault == "out_of_order":
            assert 0 < env.emit_ms - env.event_ms <= 0.9 * lateness_ms
        if env.topic.name in max_event:
            max_event[env.topic.name] = max(max_event[env.topic.name], env.event_ms)
    assert late_checked > 100
    duplicates = sum(1 for e in envs if e.fault == "duplicate")
    assert sum(n - 1 for n in seen_values.values()) == duplicates


@pytest.mark.parametrize(
    "kwargs",
    [
        {"minutes": 0},
        {"start": datetime(2026, 3, 2)},
        {"start": datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC)},
        {"rps_scale": -1.0},
        {"node_interval_s": 7},
    ],
)
def test_bad_config_is_a_clear_error(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"start": START, "minutes": 10}
    with pytest.raises(ConfigError):
        SimConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_fault_rates_must_be_probabilities() -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        FaultConfig(late=1.5)
