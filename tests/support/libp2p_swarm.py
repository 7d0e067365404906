"""Five real py-libp2p hosts with a Kademlia DHT in a trio thread, each with an Introspector fed
through the trio/asyncio bridge (the demo swarm with its workload and churn switched off)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from exporter.app.demo_swarm import DemoOptions, DemoSwarm
from exporter.introspector import Introspector
from exporter.introspector.bridge import TrioBridge, TrioThread

N = 5


class Swarm:
    def __init__(self, swarm: DemoSwarm, thread: TrioThread) -> None:
        self.swarm = swarm
        self.thread = thread
        self.intros: dict[int, Introspector] = {}

    @property
    def bridge(self) -> TrioBridge:
        assert self.thread.bridge is not None
        return self.thread.bridge

    def node(self, slot: int) -> Any:
        return self.swarm.nodes[slot]

    async def on_trio(self, fn: Callable[[], Any]) -> Any:
        return await self.bridge.run(fn)


@pytest.fixture
async def swarm() -> AsyncIterator[Swarm]:
    opts = DemoOptions(nodes=N, churn_every_s=0, traffic_every_s=0, dht_every_s=0, seed=3, retention_ms=60_000)
    ds = DemoSwarm(opts, lambda node: None, lambda slot: None)
    thread = TrioThread(ds.main, name="test-swarm")
    await thread.start(timeout=60)
    s = Swarm(ds, thread)
    for slot in range(N):
        intro = Introspector(name=f"node-{slot}", provider_timeout_s=5.0)
        intro.bind_loop()
        ds.nodes[slot].introspection.register(intro, s.bridge)
        s.intros[slot] = intro
    yield s
    err = await thread.stop(timeout=10)
    assert not thread.alive, f"trio thread still running ({err!r})"
