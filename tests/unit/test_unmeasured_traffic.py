"""An empty Traffic, or a DataGauge whose fields are all zero, is unset: nothing is made from it.

A producer that cannot measure a stream's or a connection's traffic (go-libp2p has no per-stream
counts) still sends ``traffic`` with empty DataGauges, because the observer UI reads it unchecked
(docs/go-producer.md). proto3 cannot tell such a gauge from an absent one, so the exporter must not
read it as a measured 0: no series, no sample, no restart guess, no span attribute.
"""

from __future__ import annotations

from exporter.app.runtime import build_hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sinks.otel.config import TracingConfig
from exporter.sinks.otel.install import install_tracing
from tests.support.otlp import MemoryCollector
from tests.support.samples import Series, hub_series, matching

T0 = 1_700_000_000_000
PEER_A = "12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
PEER_B = "12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
TRAFFIC_FAMILIES = (
    "libp2p_traffic_bytes_total",
    "libp2p_traffic_packets_total",
    "libp2p_bandwidth_bytes_per_second",
    "libp2p_protocol_traffic_bytes_total",
    "libp2p_transport_traffic_bytes_total",
)


def empty_traffic() -> pb.Traffic:
    """What producers/go sends where it measured nothing: traffic_in and traffic_out present, empty."""
    t = pb.Traffic()
    t.traffic_in.SetInParent()
    t.traffic_out.SetInParent()
    return t


def state(ts: int, *, empty: bool, in_bytes: int = 0) -> pb.ServerMessage:
    """A node with two connections (one stream each). ``empty``: every Traffic present and empty
    (else absent); ``in_bytes``: connection B and its stream measured bytes in (out unset)."""
    st = pb.State(instant_ts=ts, start_ts=T0)
    if empty:
        st.traffic.CopyFrom(empty_traffic())
    for cid, peer, proto in ((b"A", PEER_A, "/e2e/echo/1.0.0"), (b"B", PEER_B, "/e2e/hold/1.0.0")):
        c = st.subsystems.connections.add(id=cid, peer_id=peer, status=pb.ACTIVE, transport_id=b"ip4+tcp")
        c.endpoints.src_multiaddr = "/ip4/127.0.0.1/tcp/1"
        c.endpoints.dst_multiaddr = "/ip4/127.0.0.1/tcp/2"
        c.timeline.open_ts = T0
        s = c.streams.streams.add(id=cid + b"-s", protocol=proto, status=pb.ACTIVE)
        s.timeline.open_ts = T0
        for msg in (c, s):
            if empty:
                msg.traffic.CopyFrom(empty_traffic())
            if cid == b"B" and in_bytes:
                msg.traffic.traffic_in.cum_bytes = in_bytes
    return pb.ServerMessage(state=st)


def ingest(*msgs: pb.ServerMessage) -> Series:
    hub = build_hub()
    hub.ingest("n", pb.ServerMessage(runtime=pb.Runtime(implementation="go-libp2p", peer_id="12D3KooWSelf")))
    for msg in msgs:
        hub.ingest("n", msg)
    assert hub.nodes["n"].restarts == 0
    return {k: v for k, v in hub_series(hub, ["n"]).items() if not k[0].endswith("scrape_duration_seconds")}


def traffic_samples(samples: Series) -> Series:
    return {k: v for k, v in samples.items() if k[0] in TRAFFIC_FAMILIES}


def test_empty_traffic_reads_as_no_traffic() -> None:
    absent = ingest(state(T0 + 1000, empty=False), state(T0 + 2000, empty=False))
    empty = ingest(state(T0 + 1000, empty=True), state(T0 + 2000, empty=True))
    assert traffic_samples(empty) == {}  # not a measured 0: no series at all
    assert empty == absent


def test_only_the_measured_direction_makes_series() -> None:
    samples = ingest(state(T0 + 1000, empty=True, in_bytes=100), state(T0 + 2000, empty=True, in_bytes=250))
    assert traffic_samples(samples) == {
        (
            "libp2p_protocol_traffic_bytes_total",
            (("direction", "in"), ("node", "n"), ("protocol", "/e2e/hold/1.0.0")),
        ): 250.0,
        ("libp2p_transport_traffic_bytes_total", (("direction", "in"), ("node", "n"), ("transport", "tcp"))): 250.0,
    }, traffic_samples(samples)


def test_node_traffic_that_becomes_unset_is_not_a_restart() -> None:
    measured = state(T0 + 1000, empty=False)
    measured.state.traffic.traffic_in.cum_bytes = 5000
    measured.state.traffic.traffic_out.cum_bytes = 7000
    unmeasured_out = state(T0 + 2000, empty=True)
    unmeasured_out.state.traffic.traffic_in.cum_bytes = 6000
    samples = ingest(measured, unmeasured_out)  # ingest asserts no restart was counted
    assert matching(samples, "libp2p_traffic_bytes_total", direction="in") == [6000.0]
    assert matching(samples, "libp2p_traffic_bytes_total", direction="out") == [7000.0]  # measured once, kept
    assert matching(samples, "libp2p_bandwidth_bytes_per_second", direction="out") == []


def test_spans_carry_only_measured_traffic() -> None:
    hub = build_hub()
    receiver = MemoryCollector()
    handle = install_tracing(hub, cfg=TracingConfig(), send=receiver)
    hub.ingest("n", pb.ServerMessage(runtime=pb.Runtime(implementation="go-libp2p", peer_id="12D3KooWSelf")))
    hub.ingest("n", state(T0 + 1000, empty=True, in_bytes=100))
    hub.ingest("n", state(T0 + 2000, empty=True, in_bytes=100))
    handle.shutdown(timeout_s=20)
    spans = {
        (s.span.name, s.attrs.get("libp2p.connection.id", s.attrs.get("libp2p.stream.id"))): s for s in receiver.spans()
    }
    traffic_keys = {
        name: sorted(
            k for k in s.attrs if k.endswith(("bytes_received", "bytes_sent", "packets_received", "packets_sent"))
        )
        for name, s in spans.items()
    }
    a, b = b"A".hex(), b"B".hex()
    assert traffic_keys[("libp2p.connection", a)] == []
    assert traffic_keys[("libp2p.connection", b)] == [
        "libp2p.connection.bytes_received",
        "libp2p.connection.packets_received",
    ]
    assert spans[("libp2p.connection", b)].attrs["libp2p.connection.bytes_received"] == 100
    streams = [keys for (name, _), keys in traffic_keys.items() if name == "libp2p.stream"]
    assert sorted(streams) == [[], ["libp2p.stream.bytes_received", "libp2p.stream.packets_received"]]
