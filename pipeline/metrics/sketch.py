"""Mergeable latency quantile sketch (DDSketch): p50/p95/p99 per window with bounded relative error.

Source: Masson, Rim, Lee, "DDSketch: A Fast and Fully-Mergeable Quantile Sketch with
Relative-Error Guarantees", VLDB 2019 (and the reference `ddsketch` Python package).

- Mapping: `gamma = (1 + alpha) / (1 - alpha)`; a value `x > 0` goes to bucket
  `key = ceil(ln(x) / ln(gamma))`, i.e. the interval `(gamma**(key-1), gamma**key]`.
- Estimate of a bucket: `2 * gamma**key / (gamma + 1)`, within relative error `alpha` of every
  value in the bucket (at both ends the error is `(gamma - 1) / (gamma + 1) = alpha`).
- Values `<= ZERO_THRESHOLD` (and exact zeros) are counted in a separate zero bucket and read back
  as `0.0`. Latency is never negative, so there is no negative store; a negative, NaN or infinite
  value is a caller bug and raises `ValueError`.
- Bounded size, like DDSketch's "collapsing lowest" store: keys are kept within
  `[high_key - max_buckets + 1, high_key]`; lower keys are folded into the lowest kept bucket.
  The final buckets equal `max(key, high_key_final - max_buckets + 1)` for every value, whatever
  the order of `add` and `merge` calls, so merging is exact and deterministic. With the defaults
  (alpha 0.01, 2048 buckets) the kept range spans a factor `gamma**2048 ~ 6e17`, e.g. 1 ns to
  19 years in ms: collapsing never happens for real latencies; if it does, only the quantiles that
  fall in the lowest bucket lose their guarantee (they are over-estimated).

Quantile convention (the "lower" rank, as DDSketch and `numpy.quantile(method="lower")`): for `n`
values sorted ascending, `quantile(q)` estimates `sorted[floor(q * (n - 1))]`.

Deliberately no sum/min/max: float sums depend on the order of addition and would make merged
sketches differ bit for bit; keep a mean as (sum, count) elsewhere if needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from math import ceil, log
from typing import Annotated

import msgspec

DEFAULT_ALPHA = 0.01
DEFAULT_MAX_BUCKETS = 2048
#: Values at or below this (in the sketch's unit, e.g. ms) are counted in the zero bucket.
ZERO_THRESHOLD = 1e-9

# "No key yet": below any real key (ln(5e-324) / ln(1.0001) is about -7.4e6), so the first
# positive value raises `high_key` and nothing is ever clamped up to the empty range.
_NO_KEY = -(2**62)
_INF = math.inf

Alpha = Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)]
PosInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]


class SketchWire(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Compact JSON form: `{"a": alpha, "m": max_buckets, "z": zeros, "k": keys, "c": counts}`.

    `k` is ascending and `c[i]` is the count of bucket `k[i]`; `m` and `z` are omitted at their
    defaults. Example: `{"a":0.01,"k":[115,116],"c":[3,1]}` is four values near 10.
    """

    a: Alpha
    k: list[int]
    c: list[Annotated[int, msgspec.Meta(ge=1)]]
    z: NonNegInt = 0
    m: PosInt = DEFAULT_MAX_BUCKETS


class LatencySketch(msgspec.Struct, kw_only=True):
    """A DDSketch over non-negative values; `add` is O(1), `merge` is exact and order-free.

    Mutable on purpose (a hot-path accumulator): in a Faust table, assign it back after `add`.
    `log_gamma`, `low_key` and `high_key` are derived in `__post_init__` from `alpha`,
    `max_buckets` and `bins`; values passed for them are ignored. They are fields (not properties)
    only because slot access keeps `add` fast. Use `to_wire` / `from_wire` for records.
    """

    alpha: Alpha = DEFAULT_ALPHA
    max_buckets: PosInt = DEFAULT_MAX_BUCKETS
    zero_count: NonNegInt = 0
    bins: dict[int, int] = msgspec.field(default_factory=dict)
    log_gamma: float = 0.0
    low_key: int = _NO_KEY
    high_key: int = _NO_KEY

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.max_buckets < 1:
            raise ValueError(f"max_buckets must be >= 1, got {self.max_buckets}")
        self.log_gamma = math.log(gamma_of(self.alpha))
        self.high_key = _NO_KEY
        self.low_key = _NO_KEY - self.max_buckets + 1
        if self.bins:
            if min(self.bins.values()) < 1:
                raise ValueError("sketch bucket counts must be >= 1")
            self._raise_high(max(self.bins))  # also folds keys below the kept range

    # -- adding -----------------------------------------------------------------------------------

    def add(self, x: float) -> None:
        """Count one value `x >= 0` (e.g. a latency in ms)."""
        if ZERO_THRESHOLD < x < _INF:
            key = ceil(log(x) / self.log_gamma)
            if key > self.high_key:
                self._raise_high(key)
            elif key < self.low_key:
                key = self.low_key
            bins = self.bins
            bins[key] = bins.get(key, 0) + 1
        elif 0.0 <= x <= ZERO_THRESHOLD:
            self.zero_count += 1
        else:
            raise ValueError(f"a latency sketch takes finite values >= 0, got {x!r}")

    def add_many(self, xs: Iterable[float]) -> None:
        """Count every value of `xs`; same result as calling `add` for each.

        `add` inlined with locals (about 20% faster per value than calling `add`).
        """
        bins, get, log_gamma = self.bins, self.bins.get, self.log_gamma
        low, high = self.low_key, self.high_key
        for x in xs:
            if ZERO_THRESHOLD < x < _INF:
                key = ceil(log(x) / log_gamma)
                if key > high:
                    self._raise_high(key)
                    low, high = self.low_key, self.high_key
                elif key < low:
                    key = low
                bins[key] = get(key, 0) + 1
            else:
                self.add(x)  # zero bucket, or the error for a bad value

    def merge(self, other: LatencySketch) -> None:
        """Add `other`'s counts into this sketch (in place); both must share alpha and size."""
        if other.alpha != self.alpha or other.max_buckets != self.max_buckets:
            raise ValueError(
                "cannot merge sketches with different parameters: "
                f"alpha {self.alpha} vs {other.alpha}, "
                f"max_buckets {self.max_buckets} vs {other.max_buckets}"
            )
        if other.high_key > self.high_key:
            self._raise_high(other.high_key)
        bins, low = self.bins, self.low_key
        for key, count in other.bins.items():
            k = key if key >= low else low
            bins[k] = bins.get(k, 0) + count
        self.zero_count += other.zero_count

    def _raise_high(self, key: int) -> None:
        """Move the kept key range up so that `key` is its top; fold keys that fall below it."""
        old_low = self.low_key
        self.high_key = key
        self.low_key = new_low = key - self.max_buckets + 1
        if new_low <= old_low or not self.bins:
            return
        if new_low - old_low < len(self.bins):
            # Cheaper to visit the keys that just left the range than every bucket.
            folded = sum(self.bins.pop(k, 0) for k in range(old_low, new_low))
            if folded:
                self.bins[new_low] = self.bins.get(new_low, 0) + folded
        else:
            self._collapse_all()

    def _collapse_all(self) -> None:
        """Fold every bucket below `low_key` into `low_key` (used when decoding or a big jump)."""
        low = self.low_key
        below = [k for k in self.bins if k < low]
        if below:
            folded = sum(self.bins.pop(k) for k in below)
            self.bins[low] = self.bins.get(low, 0) + folded

    # -- reading ----------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of values added (zeros included)."""
        return self.zero_count + sum(self.bins.values())

    def quantile(self, q: float) -> float | None:
        """Estimate of `sorted[floor(q * (n - 1))]` within relative error alpha; None if empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        n = self.count
        if n == 0:
            return None
        rank = math.floor(q * (n - 1))  # same product as numpy's "lower" method
        if rank < self.zero_count:
            return 0.0
        seen = self.zero_count
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen > rank:
                return self.value_of(key)
        raise AssertionError("unreachable: rank < count")  # pragma: no cover

    def value_of(self, key: int) -> float:
        """Representative value of bucket `key`: `2 * gamma**key / (gamma + 1)` (DDSketch §2)."""
        gamma = gamma_of(self.alpha)
        return 2.0 * math.exp(key * self.log_gamma) / (gamma + 1.0)

    # -- wire -------------------------------------------------------------------------------------

    def to_wire(self) -> SketchWire:
        """The compact, canonical (keys ascending) form to put inside a JSON record."""
        keys = sorted(self.bins)
        return SketchWire(
            a=self.alpha,
            # The default object itself: msgspec's omit_defaults compares large ints by
            # identity, and a decoded 2048 is another object (the wire form would then differ).
            m=DEFAULT_MAX_BUCKETS if self.max_buckets == DEFAULT_MAX_BUCKETS else self.max_buckets,
            z=self.zero_count,
            k=keys,
            c=[self.bins[k] for k in keys],
        )

    @classmethod
    def from_wire(cls, wire: SketchWire) -> LatencySketch:
        """Rebuild a sketch from `to_wire` output; rejects malformed key/count lists."""
        if len(wire.k) != len(wire.c):
            raise ValueError(f"sketch wire has {len(wire.k)} keys but {len(wire.c)} counts")
        if any(b <= a for a, b in zip(wire.k, wire.k[1:], strict=False)):
            raise ValueError("sketch wire keys must be strictly ascending")
        return cls(
            alpha=wire.a,
            max_buckets=wire.m,
            zero_count=wire.z,
            bins=dict(zip(wire.k, wire.c, strict=True)),
        )


def gamma_of(alpha: float) -> float:
    """Bucket growth factor for relative accuracy alpha: `(1 + alpha) / (1 - alpha)` (DDSketch)."""
    return (1.0 + alpha) / (1.0 - alpha)
