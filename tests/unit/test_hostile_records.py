"""Hostile input through the embedded runner: no record crashes it, poisons its state or changes
a valid number; every bad record is a dead letter with its reason (issue 11).

Each hostile record is made from a valid record of the stream and inserted right after it, so
it lands on the same partition, among the records it could disturb. The reference is the same
run without the hostile records: the four result topics must be identical.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from functools import cache
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contracts.topics import INPUT_TOPICS
from pipeline.embedded.driver import EmbeddedPipeline, RunResult, from_envelopes, run_embedded
from pipeline.fleet import Fleet, load_fleet
from pipeline.simulate import Envelope, SimConfig, Simulator
from pipeline.simulate.hostile import KIND_BY_NAME, KINDS, expected_of, mix_hostile
from pipeline.stream.node_stage import NodeStage
from pipeline.stream.site_stage import SiteStage

START = datetime(2026, 3, 2, 13, 50, tzinfo=UTC)
RESULTS = ("mdc.energy-minutes", "mdc.site-minutes", "mdc.slo-burn", "mdc.alerts")


@cache
def fleet() -> Fleet:
    return load_fleet()


@cache
def valid(minutes: int = 20) -> tuple[Envelope, ...]:
    config = SimConfig(start=START, minutes=minutes, seed=21, rps_scale=0.03)
    return tuple(Simulator(fleet(), config))


@cache
def reference(minutes: int = 20) -> RunResult:
    return run_embedded(fleet(), from_envelopes(valid(minutes)))


def results(result: RunResult) -> dict[str, list[bytes]]:
    """The result topics as encoded records, sorted: equal means equal in every field."""
    return {t: sorted(msgspec.json.encode(r) for r in result.outputs.get(t, [])) for t in RESULTS}


def dead_letter_kinds(result: RunResult) -> Counter[tuple[bytes, str]]:
    return Counter((d.value, d.error_kind) for d in result.outputs.get("mdc.dead-letters", []))


def expected_letters(mixed: list[Envelope]) -> Counter[tuple[bytes, str]]:
    return Counter((e.value, kind) for e in mixed if (kind := expected_of(e)) not in (None, "late"))


@pytest.mark.parametrize("kind", [k.name for k in KINDS])
def test_each_hostile_kind_becomes_what_it_must_and_changes_no_number(kind: str) -> None:
    count = 3 if kind in ("nested_100k", "huge_string") else 25
    mixed = mix_hostile(valid(), fleet(), count, seed=hash(kind) % 1000, kinds=[kind])
    result = run_embedded(fleet(), from_envelopes(mixed))
    assert results(result) == results(reference())
    assert result.internal_errors == 0
    if KIND_BY_NAME[kind].expected == "late":
        late = len(result.outputs["mdc.late-events"]) - len(reference().outputs["mdc.late-events"])
        assert late == count
        assert "mdc.dead-letters" not in result.outputs
    else:
        assert dead_letter_kinds(result) == expected_letters(mixed)
        for letter in result.outputs["mdc.dead-letters"]:
            assert letter.error_detail, letter


def test_fuzz_campaign_of_100k_hostile_records_through_the_embedded_runner() -> None:
    """100,000 hostile records of every kind mixed into valid traffic: no crash, every one a
    dead letter (or a late event) with its reason, every valid number unchanged, and both
    stages' snapshots still serialize and restore."""
    mixed = mix_hostile(valid(), fleet(), 100_000, seed=7)
    tried = Counter(e.fault for e in mixed if e.fault)
    assert sum(tried.values()) == 100_000
    assert len(tried) == len(KINDS)
    pipeline = EmbeddedPipeline(fleet())
    pipeline.feed(from_envelopes(mixed))
    for stage in pipeline.stage_one:
        restored = NodeStage.restore(fleet(), stage.snapshot())
        assert restored.snapshot() == stage.snapshot()
    assert SiteStage.restore(fleet(), pipeline.stage_two.snapshot()).state is not None
    result = pipeline.close()
    assert result.internal_errors == 0
    assert results(result) == results(reference())
    assert dead_letter_kinds(result) == expected_letters(mixed)
    late = len(result.outputs["mdc.late-events"]) - len(reference().outputs["mdc.late-events"])
    assert late == tried["hostile:year_1971"]


def test_an_exception_inside_the_core_is_an_internal_error_dead_letter_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defence in depth: whatever a record makes the core raise, the driver dead-letters it as
    `internal_error` (naming the exception) and goes on."""
    original = NodeStage.on_request

    def on_request(self: NodeStage, req: Any, **kwargs: Any) -> None:
        if req.request_id.startswith("boom"):
            raise ZeroDivisionError("a bug that only this record triggers")
        original(self, req, **kwargs)

    monkeypatch.setattr(NodeStage, "on_request", on_request)
    base = list(valid())
    victim = next(i for i, e in enumerate(base) if e.topic.name == "mdc.request-log")
    doc = msgspec.json.decode(base[victim].value)
    boom = msgspec.json.encode({**doc, "request_id": "boom-1"})
    mixed = [*base[: victim + 1], Envelope(base[victim].topic, base[victim].key, boom, 0, 0)]
    mixed += base[victim + 1 :]
    result = run_embedded(fleet(), from_envelopes(mixed))
    assert result.internal_errors == 1
    (letter,) = result.outputs["mdc.dead-letters"]
    assert letter.error_kind == "internal_error"
    assert "ZeroDivisionError" in letter.error_detail
    assert letter.value == boom
    assert results(result) == results(reference())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    junk=st.lists(
        st.tuples(
            st.sampled_from(range(len(INPUT_TOPICS))),
            st.binary(max_size=200) | JSON.map(lambda d: msgspec.json.encode(d)),
            st.integers(0, 10**6),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_arbitrary_bytes_and_json_anywhere_are_dead_letters(
    junk: list[tuple[int, bytes, int]],
) -> None:
    base = list(valid(6))
    mixed = list(base)
    for topic, value, where in sorted(junk, key=lambda j: -j[2]):
        spec = INPUT_TOPICS[topic]
        at = where % (len(mixed) + 1)
        mixed.insert(at, Envelope(spec, random.Random(where).choice([None, b"k"]), value, 0, 0))
    result = run_embedded(fleet(), from_envelopes(mixed))
    assert result.internal_errors == 0
    assert results(result) == results(reference(6))
    letters = Counter(d.value for d in result.outputs.get("mdc.dead-letters", []))
    assert letters == Counter(value for _, value, _ in junk)
