"""DHT: parameters, routing-table buckets and peers, query counters and routing-table churn."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.mappers.base import Monotonic
from exporter.model.catalogue import Family, Writer
from exporter.model.labels import OTHER, UNKNOWN
from exporter.model.snapshot import DHT_STATUS_NAMES
from exporter.pipeline.lean import StateStep
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState

ENABLED = Family("libp2p_dht_enabled", "gauge", "1 when the node's DHT is enabled.")
PARAMS = tuple(
    (param, Family(f"libp2p_dht_{param}", "gauge", f"DHT parameter {param} ({what})."))
    for param, what in (
        ("k", "bucket size"),
        ("alpha", "query concurrency"),
        ("beta", "resiliency"),
        ("disjoint_paths", "disjoint query paths"),
    )
)
BUCKETS = Family("libp2p_dht_buckets", "gauge", "Buckets in the routing table.")
BUCKET_PEERS = Family(
    "libp2p_dht_bucket_peers",
    "gauge",
    "Peers per routing-table bucket (cpl = common prefix length with our id) and status.",
    ("cpl", "status"),
)
PEERS = Family(
    "libp2p_dht_peers",
    "gauge",
    "Peers known to the routing table by status (active and missing ones sit in a bucket).",
    ("status",),
)
QUERIES = Family(
    "libp2p_dht_queries",
    "counter",
    "DHT queries by direction and result (from QueryGauge), accumulated from the first snapshot seen.",
    ("direction", "result"),
)
UPDATES = Family(
    "libp2p_dht_routing_table_updates",
    "counter",
    "Routing-table changes seen between snapshots: peers added to or removed from a bucket, or changing status.",
    ("action",),
)

RESULTS = ("success", "error", "timeout")
# Kademlia keys are SHA-256 digests, so a common prefix length is 0..256; anything above is bogus.
MAX_CPL = 256


_CPL_LABELS = (*(str(cpl) for cpl in range(MAX_CPL + 1)), OTHER)  # by sort order: 0..256, then other


@dataclass
class DhtAcc:
    queries: Monotonic = field(default_factory=Monotonic)
    updates: Counter[str] = field(default_factory=Counter)


class Dht(Mapper):
    name = "dht"

    def new_accumulator(self) -> DhtAcc:
        return DhtAcc()

    def on_state(self, acc: DhtAcc, step: StateStep) -> None:
        dht = step.dht
        if dht is not None:
            for direction, gauge in (("inbound", dht.incoming), ("outbound", dht.outgoing)):
                for result, value in zip(RESULTS, gauge):
                    acc.queries.add((direction, result), (direction, result), value)
        acc.updates["added"] += step.dht_added
        acc.updates["removed"] += step.dht_removed
        acc.updates["status_changed"] += step.dht_changed

    def collect(self, acc: DhtAcc, node: NodeState, out: Writer) -> None:
        snap = node.last_step
        dht = snap.dht if snap is not None else None
        if dht is None:
            return
        out.gauge(ENABLED, 1.0 if dht.enabled else 0.0)
        values = {"k": dht.k, "alpha": dht.alpha, "beta": dht.beta, "disjoint_paths": dht.disjoint_paths}
        for param, family in PARAMS:
            out.gauge(family, values[param])
        out.gauge(BUCKETS, len(dht.bucket_cpls))
        # Keyed by label values, not raw numbers: open proto3 enums and arbitrary cpls must neither
        # repeat a series (two unknown statuses) nor multiply series (a cpl beyond any key length).
        # A cpl is kept as its sort order (MAX_CPL + 1 for 'other') until it is written.
        status_names = list(DHT_STATUS_NAMES.values())
        # Every bucket's every status, 0 until counted.
        per_bucket = dict.fromkeys(
            [(cpl, status) for cpl in {min(c, MAX_CPL + 1) for c in dht.bucket_cpls} for status in status_names], 0
        )
        per_status = dict.fromkeys(status_names, 0)
        # Counted by raw (cpl, status) first: far fewer distinct pairs than peers to label.
        for (cpl, raw_status), n in Counter([(p.cpl, p.status) for p in dht.peers.values()]).items():
            status = DHT_STATUS_NAMES.get(raw_status, UNKNOWN)
            key = (min(cpl, MAX_CPL + 1), status)
            per_bucket[key] = per_bucket.get(key, 0) + n
            per_status[status] = per_status.get(status, 0) + n
        for (cpl, status), n in sorted(per_bucket.items()):
            out.gauge(BUCKET_PEERS, n, {"cpl": _CPL_LABELS[cpl], "status": status})
        for status, n in sorted(per_status.items()):
            out.gauge(PEERS, n, {"status": status})
        for direction in ("inbound", "outbound"):
            for result in RESULTS:
                out.counter(
                    QUERIES, acc.queries.totals.get((direction, result), 0), {"direction": direction, "result": result}
                )
        for action in ("added", "removed", "status_changed"):
            out.counter(UPDATES, acc.updates[action], {"action": action})
