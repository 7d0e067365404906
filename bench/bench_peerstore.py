"""How long the py-libp2p peerstore provider takes, and how large its message is, for N known peers.

    python bench/bench_peerstore.py --peers 1000 10000 100000

Builds a real py-libp2p ``PeerStore`` (each peer: 1-4 addresses, a key on 9 in 10, 3-6 protocols out of
200, an agent out of 300, a latency on 1 in 2) and times ``peerstore_part`` on the CPU clock: the time
the trio thread spends on the extension per snapshot. Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import multiaddr
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore

from exporter.introspector.peerstore_provider import AGENT_KEY, peerstore_part
from exporter.protocol import introspection_pb2 as pb


def build(n: int, seed: int = 1) -> PeerStore:
    rng = random.Random(seed)
    store = PeerStore(max_peers=n + 1, max_records=n + 1)
    key = create_new_key_pair().public_key  # one key object: building n real keys would dominate
    for i in range(n):
        pid = ID(i.to_bytes(8, "big") + rng.randbytes(26))
        addrs = [multiaddr.Multiaddr(f"/ip4/10.{i % 250}.{j}.1/tcp/{4001 + j}") for j in range(rng.randint(1, 4))]
        store.add_addrs(pid, addrs, ttl=0)
        if rng.random() < 0.9:
            store.peer_data_map[pid].pubkey = key
        store.add_protocols(pid, [f"/proto/{rng.randrange(200)}/1.0.0" for _ in range(rng.randint(3, 6))])
        store.put(pid, AGENT_KEY, f"client-{rng.randrange(300)}/1.{rng.randrange(9)}.0")
        if rng.random() < 0.5:
            store.record_latency(pid, rng.lognormvariate(-3.5, 1.0))
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for n in args.peers:
        store = build(n)
        times = []
        for _ in range(args.repeat):
            t = time.process_time()
            part = peerstore_part(store)
            times.append(time.process_time() - t)
        size = len(pb.State(subsystems=pb.Subsystems(peerstore=part)).SerializeToString())
        print(json.dumps({"peers": n, "cpu_ms_median": round(statistics.median(times) * 1000, 2), "state_bytes": size}))


if __name__ == "__main__":
    main()
