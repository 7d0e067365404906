"""Which buckets and labels each histogram family is exported with: the profiles and their overrides.

Histograms are most of a node's series: one label combination of the connection-duration histogram
costs 28 series (25 bounds, ``+Inf``, ``_count``, ``_sum``), and a busy node has a few dozen
combinations. A *profile* picks, per family, a bucket layout and the labels kept:

- ``default``: go-libp2p's layouts and every label, so its dashboards' bucket queries work unchanged;
- ``lean``: a subset of those bounds (the ``le`` values stay the ones go-libp2p writes, so one
  Prometheus can hold both) and fewer labels on the families that multiply.

A family's dropped labels are summed over (their observations land in the combination of the labels
kept): totals stay exact, only the breakdown is lost. The counters of opened and closed connections
keep every label, so the breakdown the histograms give up is still there as counts.

Families whose buckets come from the producer (the peerstore's) or that are exported once for the
fleet (pubsub's) are not listed: they are not per node, or not ours to re-bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter.model.histogram import (
    AGE_BUCKETS,
    CONNECTION_DURATION_BUCKETS,
    HANDSHAKE_LATENCY_BUCKETS,
    LATENCY_BUCKETS,
    QUERY_DURATION_BUCKETS,
    STREAM_DURATION_BUCKETS,
    Histogram,
)
from exporter.model.native import NativeSpec

CONNECTION_DURATION = "libp2p_swarm_connection_duration_seconds"
HANDSHAKE_LATENCY = "libp2p_swarm_handshake_latency_seconds"
STREAM_DURATION = "libp2p_stream_duration_seconds"
CONNECTION_LATENCY = "libp2p_connection_latency_seconds"
CONNECTION_AGE = "libp2p_connection_age_seconds"
QUERY_DURATION = "libp2p_dht_query_duration_seconds"

CONN_LABELS = ("dir", "transport", "security", "muxer", "ip_version")
HANDSHAKE_LABELS = ("transport", "security", "muxer")

PROFILES = ("default", "lean")
DEFAULT_PROFILE = "default"


class Layout:
    """One family's buckets and kept labels; ``key()`` projects a full label tuple onto the kept ones."""

    __slots__ = ("buckets", "keep", "labels", "native", "whole")

    def __init__(
        self,
        buckets: Sequence[float],
        labels: Sequence[str],
        family_labels: Sequence[str],
        native: NativeSpec | None = None,
    ) -> None:
        self.buckets = tuple(buckets)
        self.native = native  # native buckets kept alongside the classic ones (exposed in protobuf)
        self.keep = tuple(i for i, name in enumerate(family_labels) if name in labels)
        self.labels = tuple(family_labels[i] for i in self.keep)  # the family's order, whatever was asked
        self.whole = len(self.keep) == len(family_labels)

    def key(self, values: tuple[str, ...]) -> tuple[str, ...]:
        """The kept labels' values (all of them, as the same tuple, when nothing is dropped)."""
        return values if self.whole else tuple(values[i] for i in self.keep)

    def label_dict(self, key: tuple[str, ...]) -> dict[str, str]:
        return dict(zip(self.labels, key))

    def new(self) -> Histogram:
        return Histogram(self.buckets, self.native)

    def with_native(self, native: NativeSpec | None) -> Layout:
        out = Layout(self.buckets, (), (), native)
        out.keep, out.labels, out.whole = self.keep, self.labels, self.whole
        return out

    def series(self) -> int:
        """Series one label combination costs: bounds, ``+Inf``, ``_count``, ``_sum``."""
        return len(self.buckets) + 3

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and (self.buckets, self.labels, self.native) == (
            other.buckets,
            other.labels,
            other.native,
        )

    def __hash__(self) -> int:
        return hash((self.buckets, self.labels, self.native))

    def __repr__(self) -> str:
        native = f", native={self.native}" if self.native is not None else ""
        return f"Layout(buckets={list(self.buckets)}, labels={list(self.labels)}{native})"


@dataclass(frozen=True)
class Family:
    """A configurable histogram family: its labels, its go-libp2p layout, the lean one, and what the
    shipped rules and panels read from it."""

    name: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]
    lean_buckets: tuple[float, ...]
    lean_labels: tuple[str, ...]
    needed_bounds: tuple[tuple[float, str], ...] = ()  # (bound, who reads it)
    needed_labels: tuple[tuple[str, str], ...] = ()  # (label, who groups by it)

    def layout(self, buckets: Sequence[float] | None = None, labels: Sequence[str] | None = None) -> Layout:
        return Layout(
            self.buckets if buckets is None else buckets, self.labels if labels is None else labels, self.labels
        )


def _every(bounds: tuple[float, ...], step: int, *also: float) -> tuple[float, ...]:
    """Every ``step``-th default bound (the first included), plus ``also``: the same float objects,
    so the ``le`` values read exactly as the default layout writes them."""
    return tuple(b for i, b in enumerate(bounds) if i % step == 0 or b in also)


_SHORT_LIVED = "the Libp2pShortLivedConnections rule and the Churn dashboard's short-lived panel (le=8)"

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            CONNECTION_DURATION,
            CONN_LABELS,
            CONNECTION_DURATION_BUCKETS,
            # 1/16 s x 4^n up to 12 days, and 8 s for the short-lived rule: 14 bounds instead of 25.
            _every(CONNECTION_DURATION_BUCKETS, 2, 8.0),
            ("dir", "transport"),
            needed_bounds=((8.0, _SHORT_LIVED),),
        ),
        Family(
            HANDSHAKE_LATENCY,
            HANDSHAKE_LABELS,
            HANDSHAKE_LATENCY_BUCKETS,
            _every(HANDSHAKE_LATENCY_BUCKETS, 3),  # 1 ms x 1.3^3n, 12 bounds instead of 35
            ("transport",),
        ),
        Family(
            STREAM_DURATION,
            ("protocol",),
            STREAM_DURATION_BUCKETS,
            _every(STREAM_DURATION_BUCKETS, 2),  # 1/16 s x 4^n, 10 bounds instead of 20
            ("protocol",),
            needed_labels=(("protocol", "the Streams dashboard's duration panel (by protocol)"),),
        ),
        Family(
            CONNECTION_LATENCY,
            (),
            LATENCY_BUCKETS,
            _every(LATENCY_BUCKETS, 2),  # 0.5 ms x 4^n, 7 bounds instead of 14
            (),
        ),
        Family(CONNECTION_AGE, (), AGE_BUCKETS, AGE_BUCKETS, ()),
        Family(
            QUERY_DURATION,
            ("direction", "result"),
            QUERY_DURATION_BUCKETS,
            _every(QUERY_DURATION_BUCKETS, 2),  # 5 ms x 4^n, 7 bounds instead of 14
            ("direction", "result"),
            needed_labels=(("direction", "the DHT dashboard's query-duration panel (by direction)"),),
        ),
    )
}


class HistogramProfile:
    """The layout of every configurable family, under a name (``default``, ``lean``, or ``custom``
    once a family was overridden)."""

    __slots__ = ("layouts", "name")

    def __init__(self, name: str, layouts: Mapping[str, Layout]) -> None:
        self.name = name
        self.layouts = dict(layouts)

    @property
    def native(self) -> NativeSpec | None:
        """The native bucketing every family gets (``--histograms.native``), or None."""
        return next(iter(self.layouts.values())).native if self.layouts else None

    def with_native(self, native: NativeSpec | None) -> HistogramProfile:
        """A copy whose families keep native buckets alongside their classic ones (None: classic only).
        The labels kept and the classic bounds stay the profile's."""
        return HistogramProfile(self.name, {n: layout.with_native(native) for n, layout in self.layouts.items()})

    def layout(self, family: str) -> Layout:
        return self.layouts[family]

    def override(self, family: str, buckets: Sequence[float] | None, labels: Sequence[str] | None) -> HistogramProfile:
        """A copy with one family's buckets and/or labels replaced (each None: as in this profile).
        Checked values only: see ``check_buckets`` and ``check_labels``."""
        base = self.layouts[family]
        fam = FAMILIES[family]
        layout = fam.layout(base.buckets if buckets is None else buckets, base.labels if labels is None else labels)
        layout = layout.with_native(base.native)
        if layout == base:
            return self
        name = self.name if self.name.endswith("+custom") else f"{self.name}+custom"
        return HistogramProfile(name, {**self.layouts, family: layout})

    def warnings(self) -> list[str]:
        """What a shipped rule or panel loses under this profile (a bound or a label it reads)."""
        out = []
        for name, layout in self.layouts.items():
            fam = FAMILIES[name]
            for bound, who in fam.needed_bounds:
                if bound not in layout.buckets:
                    out.append(f"{name} has no {bound:g} s bound: {who} will show no data")
            for label, who in fam.needed_labels:
                if label not in layout.labels:
                    out.append(f"{name} drops the {label} label: {who} shows one line")
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HistogramProfile) and self.layouts == other.layouts

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.layouts.items())))

    def __repr__(self) -> str:
        return f"HistogramProfile({self.name!r})"


def profile(name: str = DEFAULT_PROFILE) -> HistogramProfile:
    """A built-in profile by name (ValueError naming the choices otherwise)."""
    if name == "default":
        return HistogramProfile(name, {n: f.layout() for n, f in FAMILIES.items()})
    if name == "lean":
        return HistogramProfile(name, {n: f.layout(f.lean_buckets, f.lean_labels) for n, f in FAMILIES.items()})
    raise ValueError(f"unknown histogram profile {name!r} (one of {', '.join(PROFILES)})")


def check_family(name: object) -> str:
    if not isinstance(name, str) or name not in FAMILIES:
        raise ValueError(f"not a configurable histogram family (one of {', '.join(FAMILIES)})")
    return name


def check_buckets(values: object) -> tuple[float, ...]:
    """A bucket layout: a non-empty list of finite, positive, strictly increasing numbers."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError("expected a non-empty list of bucket bounds (seconds), e.g. [0.1, 1, 8, 60]")
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{v!r} is not a number")
        f = float(v)
        if not math.isfinite(f) or f <= 0:
            raise ValueError(f"{v!r}: bounds must be finite and positive (+Inf is always added)")
        if out and f <= out[-1]:
            raise ValueError(f"must be strictly increasing ({v!r} after {out[-1]:g})")
        out.append(f)
    return tuple(out)


def check_labels(family: str, values: object) -> tuple[str, ...]:
    """Labels to keep: a list (possibly empty) of the family's own labels, each once."""
    allowed = FAMILIES[family].labels
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"expected a list of labels to keep, from: {', '.join(allowed) or '(none)'}")
    seen: list[str] = []
    for v in values:
        if v not in allowed:
            raise ValueError(f"{v!r} is not a label of this family (its labels: {', '.join(allowed) or 'none'})")
        if v in seen:
            raise ValueError(f"{v!r} is listed twice")
        seen.append(v)
    return tuple(seen)


def with_overrides(
    base: HistogramProfile, overrides: Iterable[tuple[str, tuple[float, ...] | None, tuple[str, ...] | None]]
) -> HistogramProfile:
    """``base`` with checked per-family overrides applied in order."""
    out = base
    for family, buckets, labels in overrides:
        out = out.override(family, buckets, labels)
    return out
