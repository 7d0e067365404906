"""The peerstore extension (Subsystems field 100) as metrics: counts, gauge histograms, bounded labels."""

from __future__ import annotations

import math
from pathlib import Path

from exporter.app.runtime import build_hub
from exporter.model.labels import Cardinality, parse_agent
from exporter.pipeline.hub import Hub
from exporter.protocol import pb
from exporter.sources.capture import format_summary, summarize, write_capture
from tests.support import samples as lookup
from tests.support.reference import HubCollector
from tests.support.samples import hub_series


def samples(hub: Hub) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample the hub exposes now, keyed by name and its labels other than ``node``."""
    return {(name, frozenset(p for p in labels if p[0] != "node")): v for (name, labels), v in hub_series(hub).items()}


def total(hub: Hub, name: str, **labels: str) -> float:
    return lookup.total(hub_series(hub), name, **labels)


def state(ts: int, ps: pb.PeerStore | None = None) -> pb.ServerMessage:
    msg = pb.ServerMessage()
    msg.version.version = 1
    msg.state.instant_ts = ts
    msg.state.start_ts = 1
    if ps is not None:
        msg.state.subsystems.peerstore.CopyFrom(ps)
    return msg


def store(**fields: object) -> pb.PeerStore:
    ps = pb.PeerStore(
        known_peers=100,
        peers_with_addrs=80,
        peers_with_keys=90,
        peers_with_records=40,
        peers_with_protocols=70,
        addrs_per_peer=[20, 30, 30, 10, 5, 5, 0, 0, 0],
        addrs_total=211,
        latency_ewma=[0] * 4 + [10, 20] + [0] * 8,
        latency_ewma_sum_seconds=1.5,
        max_peers=1000,
    )
    ps.protocols.add(name="/ipfs/kad/1.0.0", peers=60)
    ps.protocols.add(name="/my/private/1.0.0", peers=5)
    ps.protocols_other = 7
    for name, n in (("kubo/0.24.0/", 30), ("kubo/0.24.1/", 5), ("Lighthouse/v4.5.0-441fc16/x86_64", 10)):
        ps.agents.add(name=name, peers=n)
    ps.agents.add(name="homegrown/1.0", peers=3)
    ps.agents_other = 2
    for key, value in fields.items():
        setattr(ps, key, value)
    return ps


def feed(*msgs: pb.ServerMessage, card: Cardinality | None = None) -> Hub:
    hub = build_hub(card)
    for m in msgs:
        hub.ingest("n", m)
    return hub


def names(hub: Hub) -> set[str]:
    return {fam.name for fam in HubCollector(hub).collect()}


def test_counts_histograms_and_lists() -> None:
    hub = feed(state(1000, store(evicted_peers=4)))
    got = samples(hub)
    kinds = {dict(lbl)["kind"]: v for (n, lbl), v in got.items() if n == "libp2p_peerstore_peers"}
    assert kinds == {"known": 100, "with_addrs": 80, "with_keys": 90, "with_records": 40, "with_protocols": 70}
    assert total(hub, "libp2p_peerstore_addresses_per_peer_bucket", le="0.0") == 20
    assert total(hub, "libp2p_peerstore_addresses_per_peer_bucket", le="2.0") == 80
    assert total(hub, "libp2p_peerstore_addresses_per_peer_bucket", le="+Inf") == 100
    assert total(hub, "libp2p_peerstore_addresses_per_peer_gsum") == 211
    assert total(hub, "libp2p_peerstore_latency_ewma_seconds_bucket", le="0.025") == 10
    assert total(hub, "libp2p_peerstore_latency_ewma_seconds_gcount") == 30
    assert total(hub, "libp2p_peerstore_latency_ewma_seconds_gsum") == 1.5
    assert total(hub, "libp2p_peerstore_protocol_peers", protocol="/ipfs/kad/1.0.0") == 60
    assert total(hub, "libp2p_peerstore_protocol_peers", protocol="/my/private/1.0.0") == 5  # under the cap
    assert total(hub, "libp2p_peerstore_protocol_peers", protocol="other") == 7
    assert total(hub, "libp2p_peerstore_agent_peers", agent="kubo", version="0.24") == 35  # patch folded
    assert total(hub, "libp2p_peerstore_agent_peers", agent="lighthouse", version="4.5") == 10
    assert total(hub, "libp2p_peerstore_agent_peers", agent="other", version="other") == 5
    assert total(hub, "libp2p_peerstore_max_peers") == 1000
    assert total(hub, "libp2p_peerstore_evictions_total") == 4
    assert "libp2p_peerstore_max_records" not in names(hub)  # not sent: unknown, not 0
    assert total(hub, "libp2p_exporter_label_values_folded_total", label="agent") == 1  # homegrown


def test_unset_counts_are_left_out_and_no_extension_exports_nothing() -> None:
    ps = pb.PeerStore(known_peers=7)
    hub = feed(state(1000, ps))
    got = samples(hub)
    assert {dict(lbl)["kind"] for (n, lbl), _ in got.items() if n == "libp2p_peerstore_peers"} == {"known"}
    assert {n for n in names(hub) if n.startswith("libp2p_peerstore")} == {"libp2p_peerstore_peers"}
    plain = feed(state(1000))
    assert not {n for n in names(plain) if n.startswith("libp2p_peerstore")}
    folded = {dict(lbl)["label"] for (n, lbl), _ in samples(plain).items() if n.startswith("libp2p_exporter_label")}
    assert folded == {"protocol", "transport", "security", "muxer", "event_type"}  # as before the extension


def test_a_new_state_replaces_the_lists_and_evictions_only_rise() -> None:
    hub = feed(state(1000, store(evicted_peers=10)), state(2000, store(evicted_peers=15)))
    assert total(hub, "libp2p_peerstore_evictions_total") == 15
    second = store(evicted_peers=3)  # the store restarted: its count begins again
    del second.agents[:]
    second.agents_other = 0
    hub.ingest("n", state(3000, second))
    assert total(hub, "libp2p_peerstore_evictions_total") == 18
    assert total(hub, "libp2p_peerstore_agent_peers") == 0
    hub.ingest("n", state(4000))  # the producer stopped sending the extension
    assert not {n for n in names(hub) if n.startswith("libp2p_peerstore")}


def test_hostile_agents_and_protocols_stay_bounded() -> None:
    card = Cardinality(protocol_cap=4, agent_version_cap=3)
    hub = build_hub(card)
    for i in range(50):
        ps = pb.PeerStore(known_peers=1000)
        for j in range(20):
            ps.agents.add(name=f"go-libp2p/{i}.{j}", peers=1)
            ps.agents.add(name=f"evil-{i}-{j}/1.0", peers=1)
            ps.protocols.add(name=f"/evil/{i}/{j}", peers=1)
        hub.ingest("n", state(1000 + i, ps))
    got = samples(hub)
    agents = {lbl for (n, lbl), _ in got.items() if n == "libp2p_peerstore_agent_peers"}
    protocols = {lbl for (n, lbl), _ in got.items() if n == "libp2p_peerstore_protocol_peers"}
    assert len(agents) <= 3 + 2 and len(protocols) <= 4 + 1
    assert frozenset({("agent", "other"), ("version", "other")}) in agents
    assert total(hub, "libp2p_peerstore_agent_peers") == 40  # every peer still counted once
    assert card.agent.folded == 50 * 20 and card.agent_version.folded > 0


def test_layouts_and_broken_numbers_from_a_producer() -> None:
    ps = store(latency_ewma_sum_seconds=math.nan)
    ps.addrs_per_peer.extend([3, 4])  # two entries past the layout: counted in the last bucket
    hub = feed(state(1000, ps))
    assert total(hub, "libp2p_peerstore_addresses_per_peer_bucket", le="+Inf") == 107
    assert total(hub, "libp2p_peerstore_addresses_per_peer_bucket", le="64.0") == 100
    assert "libp2p_peerstore_latency_ewma_seconds" not in names(hub)  # no made-up sum


def test_agent_parsing() -> None:
    assert parse_agent("go-libp2p/0.33.2") == ("go-libp2p", "0.33")
    assert parse_agent("lotus-1.25.0+mainnet+git.1") == ("lotus", "1.25")
    assert parse_agent("Prysm/v4.1.1/abc") == ("prysm", "4.1")
    assert parse_agent("js-libp2p/1.0.0 UserAgent=v20.9.0") == ("js-libp2p", "1.0")
    assert parse_agent("nimbus") == ("nimbus", "unknown")
    assert parse_agent("") == ("other", "other")
    assert parse_agent("other/1.0") == ("other", "other")
    assert parse_agent("myclient/2.0") == ("other", "other")


def test_inspect_reports_the_extension_only_when_present(tmp_path: Path) -> None:
    with_ext, without = tmp_path / "with.mock", tmp_path / "without.mock"
    write_capture(with_ext, [state(1000, store())])
    write_capture(without, [state(1000)])
    assert "peerstore: 100 known peers (80 with addresses), 2 protocols and 4 agents listed" in format_summary(
        "f", summarize(with_ext)
    )
    assert "peerstore" not in format_summary("f", summarize(without))
