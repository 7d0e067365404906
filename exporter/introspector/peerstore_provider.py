"""The peerstore extension (``Subsystems.peerstore``, field 100) from a py-libp2p host's peerstore.

``peerstore_part(store)`` walks the store once and returns counts only (no peer ids), so the State
stays small with 100k known peers. It reads the store's data directly instead of through methods
like ``addrs()`` or ``get_peer_record()``, which clear expired addresses as a side effect: looking
must not change what is looked at. Call it on the trio thread, like the rest of the snapshot.

py-libp2p 0.8.1 has a peer limit (``max_peers``, ``max_records``) but does not count evictions, so
``evicted_peers`` stays unset. Its identify does not keep the remote agent version; ``record_agents()``
makes it keep it, under the metadata key go-libp2p uses (``AgentVersion``), so that agents can be
counted at all.
"""

from __future__ import annotations

import bisect
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from exporter.protocol import introspection_pb2 as pb

log = logging.getLogger(__name__)

AGENT_KEY = "AgentVersion"  # go-libp2p's peerstore metadata key for identify's agent version
TOP = 64  # entries kept in the protocol and agent lists; the rest is summed into *_other
NAME_MAX = 256  # longer protocol ids and agents are cut
# The fixed layouts of proto/introspection.proto (upper bounds; one more bucket for the rest).
ADDRS_BOUNDS = (0, 1, 2, 4, 8, 16, 32, 64)
LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _top(counts: Counter[str], into: Any) -> int:
    """Append the TOP largest (name, peers) entries to ``into``; return what the rest adds up to."""
    kept = counts.most_common(TOP)
    for name, peers in kept:
        into.add(name=name, peers=peers)
    return sum(counts.values()) - sum(peers for _, peers in kept)


def _buckets(bounds: tuple[float, ...], values: list[Any]) -> list[int]:
    """Non-cumulative counts of ``values`` on ``bounds`` (upper bounds, inclusive), plus one for the rest."""
    counts = [0] * (len(bounds) + 1)
    for value, n in Counter(values).items():  # few distinct address counts: one bisect each
        counts[bisect.bisect_left(bounds, value)] += n
    return counts


def peerstore_part(store: Any) -> pb.PeerStore:
    """Aggregate ``store`` (a py-libp2p ``PeerStore``) into the extension message."""
    data: dict[Any, Any] | None = getattr(store, "peer_data_map", None)
    if data is None:  # another store type: all we can say without side effects is who it knows
        return pb.PeerStore(known_peers=len(store.peer_ids()))
    records = getattr(store, "peer_record_map", {})
    now = int(time.time())
    n_addrs_of: list[int] = []
    with_keys = with_records = with_protocols = 0
    latencies: list[float] = []
    supported: list[str] = []  # every (peer, protocol) pair's protocol, counted once at the end
    agents: list[str] = []
    # One pass, attribute reads only: this runs on the trio thread every snapshot (bench/bench_peerstore.py).
    for peer_id, pd in list(data.items()):
        expired = pd.ttl > 0 and pd.last_identified + pd.ttl < now  # PeerData.is_expired(), without a clock call
        n_addrs_of.append(0 if expired else len(pd.addrs))
        if pd.pubkey is not None:
            with_keys += 1
        if peer_id in records:
            with_records += 1
        if pd.protocols:
            with_protocols += 1
            supported.extend(set(pd.protocols))
        latency = pd.latmap  # 0 until a latency was recorded
        if latency and latency > 0:
            latencies.append(latency)
        agent = pd.metadata.get(AGENT_KEY) if pd.metadata else None
        if agent and isinstance(agent, str):
            agents.append(agent[:NAME_MAX])
    protocols: Counter[str] = Counter(map(str, supported))
    addrs_hist = _buckets(ADDRS_BOUNDS, n_addrs_of)
    lat_hist = _buckets(LATENCY_BOUNDS, latencies)
    with_addrs = len(n_addrs_of) - addrs_hist[0]
    addrs_total = sum(n_addrs_of)
    lat_sum = float(sum(latencies))
    if any(len(name) > NAME_MAX for name in protocols):  # cut, and names that now collide add up
        cut: Counter[str] = Counter()
        for name, n in protocols.items():
            cut[name[:NAME_MAX]] += n
        protocols = cut
    part = pb.PeerStore(
        known_peers=len(data),
        peers_with_addrs=with_addrs,
        peers_with_keys=with_keys,
        peers_with_records=with_records,
        peers_with_protocols=with_protocols,
        addrs_per_peer=addrs_hist,
        addrs_total=addrs_total,
        latency_ewma=lat_hist,
        latency_ewma_sum_seconds=lat_sum,
    )
    part.protocols_other = _top(protocols, part.protocols)
    part.agents_other = _top(Counter(agents), part.agents)
    for field in ("max_peers", "max_records"):
        limit = getattr(store, field, None)
        if isinstance(limit, int) and limit >= 0:
            setattr(part, field, limit)
    return part


class PeerstoreSampler:
    """``peerstore_part`` for one store, recomputed only when the last result is old for its cost.

    A walk costs the trio thread about 5 µs per known peer (bench/bench_peerstore.py: ~0.5 s at 100k).
    The last result is reused until ``budget`` times its cost has passed, so the walk takes at most
    1/budget of the thread: every snapshot for small stores, every ~10 s at 100k peers. A reused part
    was measured at that earlier time; ``last_age_s`` says how long ago.
    """

    def __init__(self, store: Any, *, budget: float = 20.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.budget = budget
        self.clock = clock
        self._part: pb.PeerStore | None = None
        self._at = 0.0
        self._cost = 0.0
        self.walks = 0
        self.last_age_s = 0.0

    def __call__(self) -> pb.PeerStore:
        now = self.clock()
        if self._part is None or now - self._at >= self._cost * self.budget:
            started = time.perf_counter()
            self._part = peerstore_part(self.store)
            self._cost = time.perf_counter() - started
            self._at = now
            self.walks += 1
        self.last_age_s = now - self._at
        part = pb.PeerStore()
        part.CopyFrom(self._part)  # the Introspector merges into the State: never hand out the cached one
        return part


def _keeping_agent(update: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(update)
    async def wrapper(peerstore: Any, peer_id: Any, identify_msg: Any, *args: Any, **kwargs: Any) -> None:
        await update(peerstore, peer_id, identify_msg, *args, **kwargs)
        agent = getattr(identify_msg, "agent_version", "")
        if agent and isinstance(agent, str):
            try:
                peerstore.put(peer_id, AGENT_KEY, agent[:NAME_MAX])
            except Exception as exc:  # a store without metadata: agents stay uncounted
                log.debug("peerstore: could not keep the agent of %s: %s", peer_id, exc)

    wrapper.__libp2p_exporter_agent__ = True  # type: ignore[attr-defined]  # a mark on a function object
    return wrapper


def record_agents() -> bool:
    """Make py-libp2p's identify (and identify/push) keep the remote agent version in the peerstore.

    Installed once per process, for every host (the update function is module level); it only adds
    one metadata entry per identified peer. Returns False when this py-libp2p has no such hook.
    """
    try:
        from libp2p.host import basic_host
        from libp2p.identity.identify_push import identify_push
    except ImportError:
        return False
    done = False
    for module in (basic_host, identify_push):
        update = getattr(module, "update_peerstore_from_identify", None)
        if update is None:
            continue
        if not getattr(update, "__libp2p_exporter_agent__", False):
            # patching py-libp2p's module (the name is not one it exports)
            module.update_peerstore_from_identify = _keeping_agent(update)  # type: ignore[attr-defined]
        done = True
    return done
