"""The poll loop: sources fail independently, back off, are logged once per state change;
garbage becomes a dead letter; no power is a gap, never an invented sample."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.collect.config import CollectorConfig, NodeSources, PrometheusSource, RedfishSource
from pipeline.collect.ipmi import IpmiDataError, IpmiError
from pipeline.collect.prometheus import PrometheusDataError
from pipeline.collect.readings import Quantity, Reading
from pipeline.collect.redfish import RedfishDataError, RedfishError
from pipeline.collect.service import Collector
from pipeline.collect.snmp import SnmpDataError, SnmpError
from pipeline.collect.sources import Reader
from pipeline.fleet import load_fleet

T0 = 1_772_452_800_000


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


class Script:
    """A reader that answers from a script: readings, or an exception to raise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.answers: list[Callable[[int], list[Reading]] | BaseException] = []
        self.calls = 0

    def reader(self, clock: Clock) -> Reader:
        async def read() -> list[Reading]:
            self.calls += 1
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer(clock.ms)

        async def close() -> None:
            return None

        return Reader(self.label, read, close)


def setup() -> tuple[Collector, Script, Script, Clock, str]:
    fleet = load_fleet()
    node_id = fleet.nodes[0].node_id
    bmc, exporter = Script("redfish:https://bmc"), Script("prometheus:http://node:9100/metrics")
    config = CollectorConfig(
        poll_interval_s=10.0,
        nodes=[
            NodeSources(
                node_id,
                [
                    RedfishSource(url="https://bmc", auth="none"),
                    PrometheusSource(url="http://node"),
                ],
            )
        ],
    )
    clock = Clock()
    scripts = iter([bmc, exporter])
    collector = Collector(
        config, fleet, lambda _source: next(scripts).reader(clock), clock_ms=clock
    )
    return collector, bmc, exporter, clock, node_id


def power(watts: float) -> Callable[[int], list[Reading]]:
    return lambda at: [Reading(Quantity.POWER_W, watts, at, "redfish:https://bmc")]


def energy(joules: float) -> Callable[[int], list[Reading]]:
    return lambda at: [Reading(Quantity.ENERGY_J, joules, at, "prometheus:http://node#pkg0")]


def sample_value(collector: Any, metric: str, **labels: str) -> float:
    return collector.metrics.registry.get_sample_value(metric, labels) or 0.0


def test_sources_fail_independently_back_off_and_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector, bmc, exporter, clock, node_id = setup()
    caplog.set_level(logging.INFO, logger="pipeline.collect.service")
    bmc.answers = [
        power(200.0),
        RedfishError("https://bmc", "timed out"),
        RedfishError("https://bmc", "timed out"),
        power(210.0),
    ]
    exporter.answers = [
        energy(0.0),
        energy(1_500.0),
        energy(3_000.0),
        energy(4_500.0),
        energy(6_000.0),
    ]

    first = asyncio.run(collector.poll())
    assert [s.power_w for s in first.samples] == [200.0]
    clock.ms += 10_000
    second = asyncio.run(collector.poll())  # the BMC is down: the exporter's energy carries on
    assert [s.power_w for s in second.samples] == [pytest.approx(150.0)]
    clock.ms += 10_000
    asyncio.run(collector.poll())  # backoff: one interval after the first failure -> due again
    assert bmc.calls == 3
    clock.ms += 10_000
    asyncio.run(collector.poll())  # two failures: 20 s backoff, not due at +10 s
    assert bmc.calls == 3
    clock.ms += 10_000
    back = asyncio.run(collector.poll())
    assert bmc.calls == 4 and [s.power_w for s in back.samples] == [210.0]
    down = [r for r in caplog.records if "not answering" in r.message]
    up = [r for r in caplog.records if "answering again" in r.message]
    assert len(down) == 1 and len(up) == 1  # once per state change, not once per poll
    label = "redfish:https://bmc"
    assert sample_value(collector, "microdc_collect_polls_total", source=label) == 4
    assert (
        sample_value(
            collector, "microdc_collect_failures_total", source=label, reason="RedfishError"
        )
        == 2
    )
    assert sample_value(collector, "microdc_collect_staleness_seconds", source=label) == 0.0
    assert sample_value(collector, "microdc_collect_samples_total", node=node_id) == 5


def test_no_power_is_a_gap_and_garbage_a_dead_letter() -> None:
    collector, bmc, exporter, _clock, node_id = setup()
    bmc.answers = [RedfishError("https://bmc", "connection refused")]
    exporter.answers = [
        PrometheusDataError("prometheus:http://node:9100/metrics", "line 3: not a number")
    ]
    result = asyncio.run(collector.poll())
    assert result.samples == [] and result.gaps == [node_id]
    (dead,) = result.dead_letters
    assert dead.record_key == b"prometheus:http://node:9100/metrics"
    assert "not a number" in dead.error_detail and dead.error_kind == "invalid"


def test_an_impossible_reading_is_a_dead_letter_not_a_sample() -> None:
    collector, bmc, exporter, _clock, node_id = setup()
    bmc.answers = [power(5e6)]
    exporter.answers = [energy(0.0)]
    result = asyncio.run(collector.poll())
    assert result.samples == []
    (dead,) = result.dead_letters
    assert dead.record_key == node_id.encode() and "power_w" in dead.error_detail


@pytest.mark.parametrize(
    ("error", "dead"),
    [
        (RedfishDataError("https://bmc/redfish/v1", "body is not JSON (line 1)"), True),
        (SnmpDataError("10.0.0.5:161", "wrong type OctetString, need an integer", "1.3.6"), True),
        (IpmiDataError("10.0.0.7:623", "ipmitool printed no the reading state: ..."), True),
        (RedfishError("https://bmc/redfish/v1", "no answer within 5 s"), False),
        (SnmpError("10.0.0.5:161", "no answer within 2 s"), False),
        (IpmiError("10.0.0.7:623", "ipmitool exited 1: ..."), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_garbage_from_any_reader_is_a_dead_letter_and_an_absence_is_not(
    error: Exception, dead: bool
) -> None:
    collector, bmc, exporter, _clock, _node = setup()
    bmc.answers = [error]
    exporter.answers = [energy(0.0)]
    result = asyncio.run(collector.poll())
    assert [d.error_detail for d in result.dead_letters] == ([str(error)] if dead else [])
