"""Latency sketch: quantiles within alpha of the exact "lower" quantile, exact order-free merges,
bounded size, and a JSON wire form that round-trips."""

from __future__ import annotations

import math
import random

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.metrics.sketch import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_BUCKETS,
    ZERO_THRESHOLD,
    LatencySketch,
    SketchWire,
    gamma_of,
)

QS = (0.0, 0.5, 0.95, 0.99, 1.0)
latency = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
latency_or_zero = st.one_of(latency, st.just(0.0))
latencies = st.lists(latency_or_zero, min_size=1, max_size=300)


def sketch_of(
    xs: list[float], alpha: float = DEFAULT_ALPHA, max_buckets: int = DEFAULT_MAX_BUCKETS
) -> LatencySketch:
    sketch = LatencySketch(alpha=alpha, max_buckets=max_buckets)
    sketch.add_many(xs)
    return sketch


def assert_close(estimate: float | None, true: float, alpha: float = DEFAULT_ALPHA) -> None:
    assert estimate is not None
    if true <= ZERO_THRESHOLD:
        assert estimate == 0.0
    else:
        # alpha, plus a few ulps for a value that sits exactly on a bucket boundary
        assert abs(estimate - true) <= alpha * true * (1 + 1e-9), (estimate, true)


@given(latencies)
def test_quantiles_are_within_alpha_of_numpy_lower(xs: list[float]) -> None:
    sketch = sketch_of(xs)
    assert sketch.count == len(xs)
    for q in QS:
        assert_close(sketch.quantile(q), float(np.quantile(xs, q, method="lower")))


@given(latencies, st.sampled_from([0.001, 0.05, 0.2]))
def test_other_alphas_keep_their_own_bound(xs: list[float], alpha: float) -> None:
    # alpha 0.001 needs ln(1e9 / 1e-6) / ln(1.001 / 0.999) = 17269 buckets for this value range.
    sketch = sketch_of(xs, alpha=alpha, max_buckets=20_000)
    for q in QS:
        assert_close(sketch.quantile(q), float(np.quantile(xs, q, method="lower")), alpha)


def test_rank_convention_is_floor_of_q_times_n_minus_1() -> None:
    # n = 4 values 10, 20, 30, 40: q = 0.5 -> rank floor(0.5 * 3) = 1 -> 20 (not 25, not 30)
    sketch = sketch_of([40.0, 10.0, 30.0, 20.0])
    assert_close(sketch.quantile(0.5), 20.0)
    # q = 0.99 -> rank floor(2.97) = 2 -> 30 (the max only at q = 1)
    assert_close(sketch.quantile(0.99), 30.0)
    assert_close(sketch.quantile(1.0), 40.0)


def test_bucket_estimate_is_within_alpha_at_both_bucket_ends() -> None:
    # Bucket k holds (gamma**(k-1), gamma**k]; its estimate 2 gamma**k / (gamma + 1) is alpha
    # below the top end and alpha above the bottom end.
    sketch = LatencySketch()
    gamma = gamma_of(DEFAULT_ALPHA)  # 1.01 / 0.99 = 1.0202...
    top, bottom = gamma**100, gamma**99
    estimate = sketch.value_of(100)
    assert math.isclose((top - estimate) / top, DEFAULT_ALPHA, rel_tol=1e-9)
    assert math.isclose((estimate - bottom) / bottom, DEFAULT_ALPHA, rel_tol=1e-9)


@given(latencies, st.data())
def test_merging_a_split_list_equals_the_whole(xs: list[float], data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(xs)))
    left, right = sketch_of(xs[:cut]), sketch_of(xs[cut:])
    left.merge(right)
    assert left == sketch_of(xs)
    assert left.to_wire() == sketch_of(xs).to_wire()


@given(latencies, st.randoms(use_true_random=False))
def test_order_does_not_matter(xs: list[float], rnd: random.Random) -> None:
    shuffled = list(xs)
    rnd.shuffle(shuffled)
    assert sketch_of(shuffled) == sketch_of(xs)


# Values spanning 1e-6..1e9 need ~1730 buckets at alpha 0.01; 16 forces collapsing.
@given(st.lists(latency, min_size=1, max_size=200), st.data())
def test_collapsing_keeps_size_bounded_and_merges_exactly(
    xs: list[float], data: st.DataObject
) -> None:
    whole = sketch_of(xs, max_buckets=16)
    assert len(whole.bins) <= 16
    assert max(whole.bins) - min(whole.bins) < 16
    cut = data.draw(st.integers(min_value=0, max_value=len(xs)))
    left, right = sketch_of(xs[:cut], max_buckets=16), sketch_of(xs[cut:], max_buckets=16)
    right.merge(left)  # other direction than the test above
    assert right == whole
    # The top of the distribution is never collapsed: the max stays within alpha.
    assert_close(whole.quantile(1.0), max(xs))


def test_collapsed_values_fold_into_the_lowest_kept_bucket() -> None:
    sketch = LatencySketch(max_buckets=2)
    sketch.add_many([1.0, 1e3, 1e6])  # keys 0, 346, 691: ln x / 0.0200007 = 0, 345.4, 690.8
    assert sketch.bins == {690: 2, 691: 1}
    assert sketch.count == 3


@given(latencies)
def test_wire_round_trips_through_msgspec_json(xs: list[float]) -> None:
    sketch = sketch_of(xs)
    raw = msgspec.json.encode(sketch.to_wire())
    back = LatencySketch.from_wire(msgspec.json.decode(raw, type=SketchWire))
    assert back == sketch
    assert back.quantile(0.95) == sketch.quantile(0.95)


def test_wire_is_compact_and_omits_defaults() -> None:
    sketch = sketch_of([0.0, 10.0, 10.0, 10.0])
    wire = msgspec.json.decode(msgspec.json.encode(sketch.to_wire()))
    # ln 10 / ln(1.01 / 0.99) = 115.13 -> key 116
    assert wire == {"a": 0.01, "k": [116], "c": [3], "z": 1}


def test_wire_nested_in_a_record_round_trips() -> None:
    class Row(msgspec.Struct):
        service: str
        latency_sketch: SketchWire

    sketch = sketch_of([1.5, 2.5, 300.0])
    raw = msgspec.json.encode(Row("api", sketch.to_wire()))
    row = msgspec.json.decode(raw, type=Row)
    assert LatencySketch.from_wire(row.latency_sketch) == sketch


def test_malformed_wire_is_rejected() -> None:
    with pytest.raises(ValueError, match="2 keys but 1 counts"):
        LatencySketch.from_wire(SketchWire(a=0.01, k=[1, 2], c=[1]))
    with pytest.raises(ValueError, match="strictly ascending"):
        LatencySketch.from_wire(SketchWire(a=0.01, k=[2, 2], c=[1, 1]))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"a": 1.5, "k": [], "c": []}', type=SketchWire)
    with pytest.raises(ValueError, match="counts must be >= 1"):
        LatencySketch.from_wire(SketchWire(a=0.01, k=[1], c=[0]))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"a": 0.01, "k": [1], "c": [0]}', type=SketchWire)


def test_empty_sketch() -> None:
    sketch = LatencySketch()
    assert sketch.count == 0
    assert sketch.quantile(0.5) is None
    assert LatencySketch.from_wire(sketch.to_wire()) == sketch
    other = LatencySketch()
    other.merge(sketch)
    assert other == LatencySketch()


def test_zeros_and_tiny_values_go_to_the_zero_bucket() -> None:
    sketch = sketch_of([0.0, -0.0, ZERO_THRESHOLD, 0.0, 5.0])
    assert sketch.zero_count == 4
    assert sketch.count == 5
    assert sketch.quantile(0.5) == 0.0  # rank floor(0.5 * 4) = 2 -> a zero
    assert_close(sketch.quantile(1.0), 5.0)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
def test_bad_values_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="finite values >= 0"):
        LatencySketch().add(bad)
    with pytest.raises(ValueError, match="finite values >= 0"):
        LatencySketch().add_many([1.0, bad])


def test_add_many_equals_repeated_add() -> None:
    xs = [0.0, 3.0, 1e-3, 7e5, 3.0, 12.5]
    one_by_one = LatencySketch()
    for x in xs:
        one_by_one.add(x)
    assert sketch_of(xs) == one_by_one


def test_mismatched_parameters_do_not_merge() -> None:
    with pytest.raises(ValueError, match="different parameters"):
        LatencySketch().merge(LatencySketch(alpha=0.02))
    with pytest.raises(ValueError, match="different parameters"):
        LatencySketch().merge(LatencySketch(max_buckets=10))


@pytest.mark.parametrize("q", [-0.1, 1.1, math.nan])
def test_quantile_outside_0_1_is_rejected(q: float) -> None:
    with pytest.raises(ValueError, match="quantile must be in"):
        sketch_of([1.0]).quantile(q)


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="alpha"):
        LatencySketch(alpha=0.0)
    with pytest.raises(ValueError, match="max_buckets"):
        LatencySketch(max_buckets=0)
