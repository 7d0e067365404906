"""Issue 13, defect 3: label caps alone do not bound series, because labels multiply. One State of
6,160 connections, each a distinct dir/transport/security/muxer/ip_version combination, costs at
most the node's series budget; what is folded keeps the totals and is reported."""

from __future__ import annotations

import itertools
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from exporter.app.runtime import build_hub
from exporter.defaults import SERIES_PER_FAMILY, SERIES_PER_NODE
from exporter.model.families import FOLDED, Families
from exporter.model.histogram import Histogram
from exporter.model.labels import Cardinality
from exporter.protocol import introspection_pb2 as pb
from exporter.sinks.prometheus import HubCollector, render

TRANSPORTS = ["/tcp/4001", "/tcp/4001/ws", "/tcp/443/tls/ws", "/udp/4001/quic-v1", "/udp/4001/quic",
              "/udp/4001/quic-v1/webtransport", "/udp/4001/webrtc-direct", "/tcp/4001/p2p-circuit",
              "/udp/9/utp", "/sctp/5"]  # fmt: skip
IPS = ["/ip4/10.1.2.3", "/ip6/fd00::1"]
SECURITY = ["/noise", "/tls/1.0.0", "/secio/1.0.0", *(f"/evil-sec-{i}/1" for i in range(11))]
MUXERS = ["/yamux/1.0.0", "/mplex/6.7.0", *(f"/evil-mux-{i}/1" for i in range(9))]


def hostile_state(ts: int, closed: bool) -> pb.ServerMessage:
    msg = pb.ServerMessage()
    st = msg.state
    st.instant_ts = ts
    st.traffic.traffic_in.cum_bytes = st.traffic.traffic_out.cum_bytes = 1
    combos = itertools.product((pb.INITIATOR, pb.RESPONDER), TRANSPORTS, IPS, SECURITY, MUXERS)
    for i, (role, transport, ip, sec, mux) in enumerate(itertools.islice(combos, 6160)):
        c = st.subsystems.connections.add()
        c.id = i.to_bytes(4, "big")
        c.peer_id = f"peer{i}"
        c.role = role
        c.status = pb.CLOSED if closed else pb.ACTIVE
        c.endpoints.src_multiaddr = ip + transport
        c.endpoints.dst_multiaddr = ip + transport
        c.attribs.encryption = sec
        c.attribs.multiplexer = mux
        c.timeline.open_ts = 1000
        c.timeline.upgraded_ts = 1000 + i % 500
        if closed:
            c.timeline.close_ts = ts
    return msg


def series(body: bytes) -> tuple[Counter[str], dict[str, float]]:
    per_family: Counter[str] = Counter()
    values: dict[str, float] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.labels.get("node") == "n":
                per_family[fam.name] += 1
                if fam.name in ("libp2p_connections", FOLDED):
                    values[fam.name] = values.get(fam.name, 0.0) + s.value
    return per_family, values


def test_a_6160_connection_state_costs_at_most_the_budget() -> None:
    hub = build_hub()
    hub.ingest("n", hostile_state(2000, closed=False))
    body, _ = render(HubCollector(hub))
    per_family, values = series(body)
    assert sum(per_family.values()) <= SERIES_PER_NODE, sum(per_family.values())
    assert max(per_family.values()) <= SERIES_PER_FAMILY, per_family.most_common(3)
    assert values["libp2p_connections"] == 6160  # folding sums: the total is unchanged
    assert values[FOLDED] > 0
    hub.ingest("n", hostile_state(3000, closed=True))  # every connection closes: the duration histograms
    body, _ = render(HubCollector(hub))
    per_family, values = series(body)
    assert sum(per_family.values()) <= SERIES_PER_NODE, sum(per_family.values())
    assert max(per_family.values()) <= SERIES_PER_FAMILY, per_family.most_common(3)


def test_a_smaller_configured_budget_is_kept_and_histograms_merge() -> None:
    hub = build_hub(Cardinality(series_per_family=100, series_per_node=400))
    hub.ingest("n", hostile_state(2000, closed=False))
    hub.ingest("n", hostile_state(3000, closed=True))
    body, _ = render(HubCollector(hub))
    per_family, _ = series(body)
    assert sum(per_family.values()) <= 400 + 28 * len(per_family)  # plus one 'other' combination each
    assert max(per_family.values()) <= 100
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    count = sum(s.value for s in fams["libp2p_swarm_connection_duration_seconds"].samples if s.name.endswith("_count"))
    assert count == 6160  # every closed connection is in some combination, folded or not


def test_fold_sums_counters_and_merges_histograms() -> None:
    fams = Families(series_per_family=10, series_per_node=100)
    out = fams.scoped({"node": "n"})
    for i in range(12):
        out.counter("c", "doc", 1.0, {"a": str(i)})
    h1, h2 = Histogram((1.0, 2.0)), Histogram((1.0, 2.0))
    h1.observe(0.5)
    h2.observe(1.5)
    out.histogram("h", "doc", h1, {"a": "x"})
    out.histogram("h", "doc", h2, {"a": "y"})  # 5 series each: the second folds
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in fams.metrics() for s in m.samples}
    assert got[("c_total", (("a", "0"), ("node", "n")))] == 1.0
    assert got[("c_total", (("a", "other"), ("node", "n")))] == 3.0  # 9 kept (one kept back for other), 3 folded
    assert got[("h_count", (("a", "other"), ("node", "n")))] == 1.0
    assert got[("h_bucket", (("a", "other"), ("le", "2.0"), ("node", "n")))] == 1.0
    assert h1.count == 1 and h2.count == 1  # the mappers' histograms are never written into
    assert got[(FOLDED, (("node", "n"),))] == 4


def test_folds_join_an_existing_other_combination_never_a_duplicate() -> None:
    fams = Families(series_per_family=4, series_per_node=100)
    out = fams.scoped({"node": "n"})
    out.counter("c", "doc", 5.0, {"a": "other", "b": "other"})  # a mapper's own 'other' (a capped label)
    for i in range(6):
        out.counter("c", "doc", 1.0, {"a": str(i), "b": "x"})
    samples = [
        (s.name, tuple(sorted(s.labels.items()))) for m in fams.metrics() for s in m.samples if s.name == "c_total"
    ]
    assert len(samples) == len(set(samples)) == 3  # 'other' + 2 kept (one slot kept back)
