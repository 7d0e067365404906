"""The peerstore extension from real py-libp2p hosts on loopback, and from a bare py-libp2p PeerStore.

The hosts are the five-node swarm of tests/support/libp2p_swarm.py; what the provider reports must
match what each host's own peerstore API says, read on the trio thread.
"""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version
from typing import Any

import pytest

pytest.importorskip("libp2p")

import multiaddr
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore

from exporter.introspector.peerstore_provider import AGENT_KEY, TOP, PeerstoreSampler, peerstore_part
from exporter.model.snapshot import snapshot_of
from exporter.protocol import introspection_pb2 as pb
from tests.support.libp2p_swarm import N, Swarm

AGENT = f"py-libp2p/{version('libp2p')}"


def store_view(store: Any) -> dict[str, Any]:
    """The store through its own public API (nothing here is expired, so the side effects are none)."""
    ids = store.peer_ids()
    protocols: dict[str, int] = {}
    for pid in ids:
        for proto in store.get_protocols(pid):
            protocols[proto] = protocols.get(proto, 0) + 1
    return {
        "known": len(ids),
        "with_addrs": len(store.peers_with_addrs()),
        "with_keys": len(store.peer_with_keys()),
        "with_protocols": sum(1 for pid in ids if store.get_protocols(pid)),
        "addrs": sum(len(store.addrs(pid)) for pid in store.peers_with_addrs()),
        "protocols": protocols,
        "agents": sorted(
            str(store.get(pid, AGENT_KEY)) for pid in ids if AGENT_KEY in store.peer_data_map[pid].metadata
        ),
    }


async def test_each_hosts_peerstore_matches_its_own_api(swarm: Swarm) -> None:
    # identify runs after connecting: wait (bounded, loudly) until every host knows its peers' agents
    deadline = time.monotonic() + 30
    for slot in range(N):
        store = swarm.node(slot).host.get_peerstore()
        conns = swarm.node(slot).host.get_network().connections
        while True:
            view = await swarm.on_trio(lambda store=store: store_view(store))
            connected = await swarm.on_trio(lambda conns=conns: len([p for p, cs in conns.items() if cs]))
            if len(view["agents"]) >= connected > 0:
                break
            assert time.monotonic() < deadline, f"node {slot}: agents of connected peers never all known: {view}"
            await asyncio.sleep(0.1)
        # a latency measured for one peer lands in its bucket (3 ms: <= 0.005)
        peer = next(p for p, cs in conns.items() if cs)
        await swarm.on_trio(lambda store=store, peer=peer: store.record_latency(peer, 0.003))
        state = await swarm.intros[slot].fetch_full_state()
        assert state.subsystems.HasField("peerstore")
        ps = state.subsystems.peerstore
        view = await swarm.on_trio(lambda store=store: store_view(store))
        assert ps.known_peers == view["known"] > connected  # the host itself is in its store
        assert ps.peers_with_addrs == view["with_addrs"] >= connected
        assert ps.peers_with_keys == view["with_keys"]
        assert ps.peers_with_protocols == view["with_protocols"] >= connected
        assert ps.peers_with_records <= ps.known_peers
        assert sum(ps.addrs_per_peer) == ps.known_peers and ps.addrs_total == view["addrs"]
        assert {p.name: p.peers for p in ps.protocols} == view["protocols"] and ps.protocols_other == 0
        assert "/ipfs/kad/1.0.0" in view["protocols"]
        assert [(a.name, a.peers) for a in ps.agents] == [(AGENT, len(view["agents"]))]
        assert set(view["agents"]) == {AGENT}
        assert list(ps.latency_ewma) == [0, 0, 1] + [0] * 11 and ps.latency_ewma_sum_seconds == pytest.approx(0.003)
        assert ps.HasField("max_peers") and ps.max_peers == swarm.node(slot).host.get_peerstore().max_peers
        assert not ps.HasField("evicted_peers")  # py-libp2p does not count them: unknown, not 0
        view_model = snapshot_of(state).peerstore
        assert view_model is not None and view_model.known == ps.known_peers


def _peer() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


def test_a_store_is_read_without_changing_it() -> None:
    store = PeerStore(max_peers=500, max_records=7)
    fresh, expired, bare = _peer(), _peer(), _peer()
    store.add_addrs(fresh, [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{4000 + i}") for i in range(3)], ttl=0)
    store.add_addrs(expired, [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/5000")], ttl=1)
    store.peer_data_map[expired].last_identified -= 10  # its TTL ran out
    store.add_protocols(bare, ["/a/1", "/b/1"])
    store.put(bare, AGENT_KEY, "kubo/0.24.0/")
    store.record_latency(fresh, 20.0)  # past the last bound
    ps = peerstore_part(store)
    assert (ps.known_peers, ps.peers_with_addrs, ps.peers_with_keys, ps.peers_with_records) == (3, 1, 0, 0)
    assert ps.peers_with_protocols == 1
    assert list(ps.addrs_per_peer) == [2, 0, 0, 1, 0, 0, 0, 0, 0] and ps.addrs_total == 3
    assert list(ps.latency_ewma)[-1] == 1 and ps.latency_ewma_sum_seconds == 20.0
    assert (ps.max_peers, ps.max_records) == (500, 7)
    assert [(a.name, a.peers) for a in ps.agents] == [("kubo/0.24.0/", 1)]
    # the expired peer's address is still there: reading did not clear it (store.addrs() would have)
    assert len(store.peer_data_map[expired].addrs) == 1


def test_long_lists_keep_the_top_entries_and_sum_the_rest() -> None:
    store = PeerStore(max_peers=10_000)
    for i in range(TOP + 10):
        for _ in range(1 + (i < 5)):  # five protocols on two peers, the rest on one
            store.add_protocols(_peer(), [f"/p/{i}"])
    ps = peerstore_part(store)
    assert len(ps.protocols) == TOP
    assert {p.name for p in ps.protocols[:5]} == {f"/p/{i}" for i in range(5)}
    assert sum(p.peers for p in ps.protocols) + ps.protocols_other == TOP + 10 + 5
    assert ps.protocols_other == 10
    assert len(pb.State(subsystems=pb.Subsystems(peerstore=ps)).SerializeToString()) < 4096


def test_the_sampler_walks_a_large_store_at_most_once_per_budget() -> None:
    store = PeerStore(max_peers=10_000)
    for _ in range(300):
        store.add_protocols(_peer(), ["/a/1"])
    now = [100.0]
    sampler = PeerstoreSampler(store, budget=1e6, clock=lambda: now[0])  # any walk costs > 1 µs
    first = sampler()
    assert first.known_peers == 300 and sampler.walks == 1
    store.add_protocols(_peer(), ["/a/1"])
    now[0] += 0.001
    again = sampler()  # within budget x cost: the earlier measurement, and its age
    assert again.known_peers == 300 and sampler.walks == 1 and sampler.last_age_s == pytest.approx(0.001)
    again.known_peers = 7  # a copy: the caller cannot change the cached part
    now[0] += 1e6
    assert sampler().known_peers == 301 and sampler.walks == 2 and sampler.last_age_s == 0
