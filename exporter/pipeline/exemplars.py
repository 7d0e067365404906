"""Which connections, streams and DHT queries have a span the collector accepted: the link from a
histogram bucket to a trace (exemplars).

The tracing sink tells a node's ``ExportedSpans`` when it ends a span (``ended``: the span id and
what it traced) and when an export batch succeeded (``exported``: span and trace ids). Only then is
the trace id known to a mapper (``trace_id``): a span sampled out was never started, one shed at
the full export queue or lost in a failed batch never reaches ``exported``. A mapper keeps the last
few observations of each histogram combination (``Recent``) and, when it writes the histogram, picks
the newest one whose span was exported as the exemplar.

Both maps are bounded (oldest first out), and the object is safe to share between the ingest
thread, the export thread and scrapes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

from exporter.model.histogram import Histogram

KINDS = ("connection", "stream", "dht_query")
_Key = tuple[str, Hashable]
K = TypeVar("K", bound=Hashable)


class ExportedSpans:
    __slots__ = ("_cap", "_exported", "_lock", "_pending", "on_change")

    def __init__(self, cap: int = 4096, on_change: Callable[[], None] | None = None) -> None:
        self._cap = cap
        self._pending: OrderedDict[int, _Key] = OrderedDict()  # span id -> what it traced, until exported
        self._exported: OrderedDict[_Key, str] = OrderedDict()  # what it traced -> trace id (32 hex)
        self._lock = threading.Lock()
        self.on_change = on_change  # the node's touch(): a scrape renders the new exemplar

    def ended(self, span_id: int, kind: str, key: Hashable) -> None:
        with self._lock:
            self._pending[span_id] = (kind, key)
            while len(self._pending) > 2 * self._cap:  # shed at the queue or never exported
                self._pending.popitem(last=False)

    def exported(self, span_id: int, trace_id: int) -> None:
        with self._lock:
            what = self._pending.pop(span_id, None)
            if what is None:
                return
            self._exported[what] = format(trace_id, "032x")
            self._exported.move_to_end(what)
            while len(self._exported) > self._cap:
                self._exported.popitem(last=False)
        if self.on_change is not None:
            self.on_change()

    def failed(self, span_id: int) -> None:
        with self._lock:
            self._pending.pop(span_id, None)

    def trace_id(self, kind: str, key: Hashable) -> str | None:
        with self._lock:
            return self._exported.get((kind, key))


class Recent:
    """The last few observations of one histogram combination: (value, kind, key, Unix time)."""

    __slots__ = ("items", "size")

    def __init__(self, size: int = 8) -> None:
        self.size = size
        # A short list, not a deque(maxlen=size): a deque takes 600 bytes however little it holds, and
        # every node has one per histogram combination (issue 20).
        self.items: list[tuple[float, str, Hashable, float]] = []

    def add(self, value: float, kind: str, key: Hashable, ts: float) -> None:
        items = self.items
        items.append((value, kind, key, ts))
        if len(items) > self.size:
            del items[0]

    def pick(self, spans: ExportedSpans | None) -> tuple[float, str, float] | None:
        """The newest observation whose span was exported, as an exemplar (value, trace id, time)."""
        if spans is None:
            return None
        for value, kind, key, ts in reversed(self.items):
            trace_id = spans.trace_id(kind, key)
            if trace_id is not None:
                return value, trace_id, ts
        return None


def attach(hists: Mapping[K, Histogram], recent: Mapping[K, Recent], spans: ExportedSpans | None) -> None:
    """Set (or clear) each histogram's exemplar from its combination's recent observations."""
    for key, hist in hists.items():
        held = recent.get(key)
        hist.exemplar = held.pick(spans) if held is not None else None
