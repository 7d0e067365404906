"""The Introspector: subsystems register data providers, and a full State is assembled on demand.

This is the producer half of the introspection protocol (docs/protocol.md): a node builds one
``Introspector``, registers a provider per subsystem (runtime, connections, traffic, dht, events),
and an ``Endpoint`` serves what it assembles. A provider is a plain callable that returns its part
(or an awaitable of it); the Introspector calls them all concurrently, each under a time limit, so
a provider that raises or hangs costs only its own part of the snapshot. Faults are counted per
provider and logged on the first occurrence of each kind, so a broken provider cannot flood logs.

Events are published with ``publish()`` from any thread and delivered, on the Introspector's event
loop, to every subscriber (each Endpoint session subscribes). The Runtime lists every event type
that an events provider declared, with its property types.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

from exporter.protocol import introspection_pb2 as pb

log = logging.getLogger(__name__)

T = TypeVar("T")
MaybeAwaitable = Union[T, Awaitable[T]]  # noqa: UP007 - a runtime alias, not an annotation

SUBSYSTEMS = ("runtime", "connections", "traffic", "dht", "peerstore", "events")
Subsystem = Literal["runtime", "connections", "traffic", "dht", "peerstore", "events"]
PropertyType = pb.EventType.EventProperty.PropertyType

RuntimeProvider = Callable[[], MaybeAwaitable[pb.Runtime]]
ConnectionsProvider = Callable[[], MaybeAwaitable[Iterable[pb.Connection]]]
TrafficProvider = Callable[[], MaybeAwaitable[pb.Traffic]]
DhtProvider = Callable[[], MaybeAwaitable[pb.DHT]]
PeerStoreProvider = Callable[[], MaybeAwaitable[pb.PeerStore]]  # this project's extension (field 100)
EventsProvider = Callable[[], MaybeAwaitable[Iterable[pb.EventType]]]
EventSubscriber = Callable[[pb.ServerMessage], None]


def now_ms() -> int:
    return int(time.time() * 1000)


def event_type(name: str, properties: Mapping[str, int | tuple[int, bool]]) -> pb.EventType:
    """An EventType from ``{"peerId": PEERID, "peerIds": (PEERID, True), ...}`` (True = has_multiple)."""
    et = pb.EventType(name=name)
    for prop, spec in properties.items():
        ptype, multiple = spec if isinstance(spec, tuple) else (spec, False)
        et.property_types.add(name=prop, type=ptype, has_multiple=multiple)
    return et


@dataclass
class _Provider:
    subsystem: str
    name: str
    fn: Callable[[], Any]


class ProviderFault(Exception):
    """A provider's part was left out of a snapshot."""


class Introspector:
    """Collects the node's State from registered providers and fans out events to subscribers."""

    def __init__(self, *, provider_timeout_s: float = 2.0, name: str = "") -> None:
        self.name = name
        self.provider_timeout_s = provider_timeout_s
        self.start_ts = now_ms()
        self._providers: list[_Provider] = []
        self._subscribers: list[EventSubscriber] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # (provider name, "error" | "timeout") -> count
        self.faults: Counter[tuple[str, str]] = Counter()
        self.events_published: Counter[str] = Counter()
        self.snapshots = 0
        # How long building States takes: the producer's own figure (State.snapshot_duration_ms is the
        # period a State covers, not this). Seconds, the last one and the sum over ``snapshots``.
        self.last_build_s = 0.0
        self.build_s_total = 0.0
        with contextlib.suppress(RuntimeError):  # created on a running loop: deliver events there
            self.bind_loop()

    # -- registration -----------------------------------------------------------------------
    def register(self, subsystem: Subsystem, provider: Callable[[], Any], *, name: str = "") -> None:
        """Register ``provider`` for one subsystem; several providers per subsystem are merged.

        A provider returning an awaitable is bounded by ``provider_timeout_s``. A synchronous one runs
        on the event loop and cannot be interrupted, so it must be quick; anything that may block
        (another thread, another event loop) belongs behind an awaitable, as the py-libp2p provider does.
        """
        if subsystem not in SUBSYSTEMS:
            raise ValueError(f"unknown subsystem {subsystem!r}; expected one of {', '.join(SUBSYSTEMS)}")
        label = name or getattr(provider, "__qualname__", None) or repr(provider)
        self._providers.append(_Provider(subsystem, f"{subsystem}:{label}", provider))

    def unregister_all(self, subsystem: str | None = None) -> None:
        self._providers = [p for p in self._providers if subsystem is not None and p.subsystem != subsystem]

    def providers(self, subsystem: str) -> list[str]:
        return [p.name for p in self._providers if p.subsystem == subsystem]

    # -- calling providers ------------------------------------------------------------------
    async def _call(self, prov: _Provider) -> Any:
        """One provider's result, or ProviderFault (counted, logged the first time) when it fails."""
        try:
            result = prov.fn()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.provider_timeout_s)
            return result
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, TimeoutError):
            self._fault(prov.name, "timeout", f"no answer within {self.provider_timeout_s}s")
        except Exception as exc:
            self._fault(prov.name, "error", f"{type(exc).__name__}: {exc}")
        return ProviderFault(prov.name)

    def _fault(self, provider: str, kind: str, detail: str) -> None:
        self.faults[(provider, kind)] += 1
        if self.faults[(provider, kind)] == 1:
            log.warning(
                "introspector %s: provider %s failed (%s): %s; its part is left out (further faults only counted)",
                self.name or "-",
                provider,
                kind,
                detail,
            )

    async def _gather(self, subsystems: Iterable[str]) -> list[tuple[_Provider, Any]]:
        wanted = set(subsystems)
        chosen = [p for p in self._providers if p.subsystem in wanted]
        results = await asyncio.gather(*(self._call(p) for p in chosen))
        return [(p, r) for p, r in zip(chosen, results) if not isinstance(r, ProviderFault)]

    # -- the two things an Endpoint asks for -------------------------------------------------
    async def fetch_full_state(self, covers_since_ms: int = 0) -> pb.State:
        """Call every connections/traffic/dht/peerstore provider and merge their parts into one State.

        ``covers_since_ms`` is when the period this State covers began (the client's previous State,
        or when it asked for States): ``snapshot_duration_ms`` carries that period, as the schema
        means, and stays unset (0) without it. The observer UI shows events up to ``instant_ts +
        1.5 x snapshot_duration_ms``, so the period matters; the build time goes to ``last_build_s``.
        """
        t0 = time.monotonic()
        state = pb.State(instant_ts=now_ms(), start_ts=self.start_ts)
        for prov, part in await self._gather(("connections", "traffic", "dht", "peerstore")):
            try:
                self._merge(state, prov.subsystem, part)
            except Exception as exc:  # a provider returned the wrong shape
                self._fault(prov.name, "error", f"bad result {type(part).__name__}: {exc}")
        if covers_since_ms:
            state.snapshot_duration_ms = min(max(0, state.instant_ts - covers_since_ms), 2**32 - 1)
        self.last_build_s = time.monotonic() - t0
        self.build_s_total += self.last_build_s
        self.snapshots += 1
        return state

    @staticmethod
    def _merge(state: pb.State, subsystem: str, part: Any) -> None:
        if part is None:
            return
        if subsystem == "connections":
            conns = list(part)
            for c in conns:
                if not isinstance(c, pb.Connection):
                    raise TypeError(f"expected Connection, got {type(c).__name__}")
            state.subsystems.connections.extend(conns)
            # Whatever a provider sent, every Connection carries `streams`, even empty (`5a 00`): the
            # observer UI dereferences it without a check (docs/protocol.md §5).
            for c in state.subsystems.connections:
                c.streams.SetInParent()
        elif subsystem == "traffic":
            if not isinstance(part, pb.Traffic):
                raise TypeError("expected Traffic")
            for mine, theirs in (
                (state.traffic.traffic_in, part.traffic_in),
                (state.traffic.traffic_out, part.traffic_out),
            ):
                mine.cum_bytes += theirs.cum_bytes
                mine.cum_packets += theirs.cum_packets
                mine.inst_bw += theirs.inst_bw
        elif subsystem == "dht":
            if not isinstance(part, pb.DHT):
                raise TypeError("expected DHT")
            state.subsystems.dht.MergeFrom(part)
        elif subsystem == "peerstore":
            if not isinstance(part, pb.PeerStore):
                raise TypeError("expected PeerStore")
            state.subsystems.peerstore.MergeFrom(part)

    async def fetch_runtime(self) -> pb.Runtime:
        """The Runtime from the runtime providers, with every declared event type listed."""
        runtime = pb.Runtime()
        seen: set[str] = set()
        for prov, part in await self._gather(("runtime", "events")):
            try:
                if prov.subsystem == "runtime":
                    if not isinstance(part, pb.Runtime):
                        raise TypeError("expected Runtime")
                    runtime.MergeFrom(part)
                else:
                    for et in part or ():
                        if not isinstance(et, pb.EventType):
                            raise TypeError("expected EventType")
                        if et.name not in seen:
                            seen.add(et.name)
                            runtime.event_types.append(et)
            except Exception as exc:
                self._fault(prov.name, "error", f"bad result: {exc}")
        return runtime

    # -- events -----------------------------------------------------------------------------
    def bind_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Deliver events on ``loop`` (the Endpoint does this on start)."""
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def subscribe(self, subscriber: EventSubscriber) -> Callable[[], None]:
        """Call ``subscriber(ServerMessage)`` for each event; returns the function that unsubscribes."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, name: str, content: Mapping[str, Any] | str, ts_ms: int | None = None) -> None:
        """Publish an event. Safe from any thread: delivery happens on the bound loop."""
        msg = pb.ServerMessage()
        msg.version.version = 1
        msg.event.type.name = name
        msg.event.ts = ts_ms or now_ms()
        msg.event.content = content if isinstance(content, str) else json.dumps(content, separators=(",", ":"))
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            self._deliver(msg)
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(self._deliver, msg)

    def _deliver(self, msg: pb.ServerMessage) -> None:
        self.events_published[msg.event.type.name] += 1
        for sub in list(self._subscribers):
            try:
                sub(msg)
            except Exception:
                log.exception("event subscriber failed")
