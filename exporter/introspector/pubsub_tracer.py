"""go-libp2p-pubsub trace events from py-libp2p's gossipsub, for the same tools that read go nodes.

``PubsubTracer(pubsub, sink).attach()`` (on the trio thread, after the Pubsub and its router are
created) wraps methods of that one Pubsub and router instance and emits, with the same fields a
go-libp2p node's tracer sets (raw peer id bytes, unix nanoseconds, the router's message id, topic):

- PUBLISH_MESSAGE when the node publishes (before validation, as Go's ValidateLocal), DELIVER_MESSAGE
  when a message passes and reaches the subscribers, DUPLICATE_MESSAGE for one already seen,
  REJECT_MESSAGE with Go's reason strings (blacklisted peer/source, validation failed/ignored,
  invalid signature, self originated message);
- JOIN/LEAVE (router.join/leave), GRAFT/PRUNE (every change of ``router.mesh``, whichever code path
  makes it; peers leaving with their connection are not PRUNEs, as in Go), ON_NEW/ON_CLOSED_OUTBOUND
  _STREAM (router.add_peer/remove_peer, with the negotiated protocol);
- RECV_RPC for each RPC read, SEND_RPC for each RPC written, DROP_RPC for each one the router drops.

Every hook is optional: a py-libp2p release without a method simply yields fewer event kinds
(``attach`` returns the hooks it installed), and a tracer error is logged once and never reaches
py-libp2p. The sink is a plain callable; pubsub_sinks.py has file writers and the remote tracer.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.protocol.pubsub_codec import TraceEvent

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from libp2p.peer.id import ID
    from libp2p.pubsub.pb.rpc_pb2 import RPC
    from typing_extensions import Self

log = logging.getLogger(__name__)
T = TraceEvent.Type
Sink = Callable[[TraceEvent], None]

# Go's reject reasons (tracer.go), the ones py-libp2p's pipeline can produce.
REJECT_BLACKLISTED_PEER = "blacklisted peer"
REJECT_BLACKLISTED_SOURCE = "blacklisted source"
REJECT_INVALID_SIGNATURE = "invalid signature"
REJECT_VALIDATION_FAILED = "validation failed"
REJECT_VALIDATION_IGNORED = "validation ignored"
REJECT_SELF_ORIGIN = "self originated message"


@dataclass
class _Push:
    """What happened to one message inside push_msg (task-local, so concurrent pushes don't mix)."""

    forwarder: bytes
    delivered: bool = False
    reason: str | None = None
    validated: bool = False


_PUSH: contextvars.ContextVar[_Push | None] = contextvars.ContextVar("pubsub_trace_push", default=None)


def _peer_bytes(peer: Any) -> bytes:
    if isinstance(peer, bytes):
        return peer
    to_bytes = getattr(peer, "to_bytes", None)
    return bytes(to_bytes()) if callable(to_bytes) else str(peer).encode()


class _MeshTopic(set[Any]):
    """One topic's mesh set that reports additions (GRAFT) and removals (PRUNE) to the tracer."""

    def __init__(self, tracer: PubsubTracer, topic: str, peers: Iterable[Any] = ()) -> None:
        super().__init__(peers)
        self._tracer = tracer
        self._topic = topic

    def _added(self, peers: Iterable[Any]) -> None:
        for p in peers:
            self._tracer._mesh_change(T.GRAFT, p, self._topic)

    def _removed(self, peers: Iterable[Any]) -> None:
        for p in peers:
            self._tracer._mesh_change(T.PRUNE, p, self._topic)

    def add(self, peer: Any) -> None:
        new = peer not in self
        super().add(peer)
        if new:
            self._added([peer])

    def discard(self, peer: Any) -> None:
        had = peer in self
        super().discard(peer)
        if had:
            self._removed([peer])

    def remove(self, peer: Any) -> None:
        super().remove(peer)
        self._removed([peer])

    def pop(self) -> Any:
        peer = super().pop()
        self._removed([peer])
        return peer

    def clear(self) -> None:
        gone = list(self)
        super().clear()
        self._removed(gone)

    def update(self, *others: Iterable[Any]) -> None:
        new = [p for o in others for p in o if p not in self]
        super().update(*others)
        self._added(dict.fromkeys(new))

    def difference_update(self, *others: Iterable[Any]) -> None:
        gone = [p for o in others for p in o if p in self]
        super().difference_update(*others)
        self._removed(dict.fromkeys(gone))

    def intersection_update(self, *others: Iterable[Any]) -> None:
        before = set(self)
        super().intersection_update(*others)
        self._removed(before - set(self))

    # typeshed's own set.__ior__ and friends carry the same ignore: mypy compares them with the generic __or__
    def __ior__(self, other: AbstractSet[Any], /) -> Self:  # type: ignore[misc]
        self.update(other)
        return self

    def __isub__(self, other: AbstractSet[Any], /) -> Self:  # type: ignore[misc]
        self.difference_update(other)
        return self

    def __iand__(self, other: AbstractSet[Any], /) -> Self:  # type: ignore[misc]
        self.intersection_update(other)
        return self


class _Mesh(dict[str, Any]):
    """``router.mesh``: keeps every topic's set observed, and a dropped topic prunes its peers."""

    def __init__(self, tracer: PubsubTracer, initial: dict[str, Any]) -> None:
        super().__init__()
        self._tracer = tracer
        for topic, peers in initial.items():
            super().__setitem__(topic, _MeshTopic(tracer, topic, peers))

    def __setitem__(self, topic: str, peers: Any) -> None:
        old = set(self.get(topic, ()))
        wrapped = peers if isinstance(peers, _MeshTopic) else _MeshTopic(self._tracer, topic, peers)
        super().__setitem__(topic, wrapped)
        for p in old - set(wrapped):
            self._tracer._mesh_change(T.PRUNE, p, topic)
        for p in set(wrapped) - old:
            self._tracer._mesh_change(T.GRAFT, p, topic)

    def pop(self, topic: str, *default: Any) -> Any:
        peers = super().pop(topic, *default)
        if isinstance(peers, _MeshTopic):
            for p in list(peers):
                self._tracer._mesh_change(T.PRUNE, p, topic)
        return peers

    def __delitem__(self, topic: str) -> None:
        self.pop(topic)


class PubsubTracer:
    """Emit go-libp2p-pubsub TraceEvents for one py-libp2p Pubsub (call everything on its trio thread)."""

    def __init__(self, pubsub: Any, sink: Sink, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.pubsub = pubsub
        self.router = getattr(pubsub, "router", None)
        self.sink = sink
        self.clock_ns = clock_ns
        self.peer_id = _peer_bytes(pubsub.my_id) if hasattr(pubsub, "my_id") else b""
        self.hooks: list[str] = []
        self.emitted = 0
        self.errors = 0
        self._removing = 0  # inside router.remove_peer: mesh removals are not PRUNEs (as in Go)
        self._saved: list[tuple[Any, str, Any, bool]] = []

    # -- emitting ---------------------------------------------------------------------------------
    def _emit(self, kind: TraceEvent.Type, field: str, **values: Any) -> None:
        try:
            event = TraceEvent(type=kind, peerID=self.peer_id, timestamp=self.clock_ns())
            sub = getattr(event, field)
            for key, value in values.items():
                if key == "meta":
                    sub.meta.CopyFrom(value)
                elif value is not None:
                    setattr(sub, key, value)
            sub.SetInParent()
            self.sink(event)
            self.emitted += 1
        except Exception as exc:  # a tracer problem must never break the node
            self.errors += 1
            if self.errors == 1:
                log.warning("pubsub tracer: dropping an event: %r", exc)

    def _msg_id(self, msg: Any) -> bytes:
        get = getattr(self.pubsub, "get_message_id", None) or getattr(self.pubsub, "_msg_id_constructor", None)
        if get is not None:
            return bytes(get(msg))
        return bytes(msg.from_id) + bytes(msg.seqno)  # go's default: from + seqno

    @staticmethod
    def _topic(msg: Any) -> str | None:
        topics = list(getattr(msg, "topicIDs", ()))
        return topics[0] if topics else None

    def _mesh_change(self, kind: TraceEvent.Type, peer: Any, topic: str) -> None:
        if self._removing:
            return
        self._emit(kind, "graft" if kind == T.GRAFT else "prune", peerID=_peer_bytes(peer), topic=topic)

    def rpc_meta(self, rpc: Any) -> TraceEvent.RPCMeta:
        """What an RPC carried, as Go's traceRPCMeta records it."""
        meta = TraceEvent.RPCMeta()
        for m in getattr(rpc, "publish", ()):
            meta.messages.add(messageID=self._msg_id(m), topic=self._topic(m) or "")
        for sub in getattr(rpc, "subscriptions", ()):
            meta.subscription.add(subscribe=bool(sub.subscribe), topic=sub.topicid)
        if rpc.HasField("control"):
            ctl = rpc.control
            out = meta.control
            out.SetInParent()
            for ih in ctl.ihave:
                out.ihave.add(topic=ih.topicID, messageIDs=[bytes(i) for i in ih.messageIDs])
            for iw in ctl.iwant:
                out.iwant.add(messageIDs=[bytes(i) for i in iw.messageIDs])
            for g in ctl.graft:
                out.graft.add(topic=g.topicID)
            for p in ctl.prune:
                out.prune.add(topic=p.topicID, peers=[bytes(pi.peerID) for pi in p.peers])
            for d in getattr(ctl, "idontwant", ()):
                out.idontwant.add(messageIDs=[bytes(i) for i in d.messageIDs])
        return meta

    # -- hooks ------------------------------------------------------------------------------------
    def _wrap(self, obj: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(obj, name, None)
        if obj is None or not callable(original):
            return
        own = name in getattr(obj, "__dict__", {})
        self._saved.append((obj, name, original, own))
        setattr(obj, name, functools.wraps(original)(make(original)))
        self.hooks.append(f"{type(obj).__name__}.{name}")

    def attach(self) -> list[str]:
        """Install the hooks this py-libp2p offers; returns their names."""
        ps, router = self.pubsub, self.router
        self._wrap(ps, "push_msg", self._push_msg)
        self._wrap(ps, "validate_msg", self._validate_msg)
        self._wrap(ps, "notify_subscriptions", self._notify)
        self._wrap(ps, "write_msg", self._write_msg)
        self._wrap(router, "join", self._join)
        self._wrap(router, "leave", self._leave)
        self._wrap(router, "add_peer", self._add_peer)
        self._wrap(router, "remove_peer", self._remove_peer)
        self._wrap(router, "_handle_dropped_rpc", self._dropped)
        if router is not None and isinstance(getattr(router, "mesh", None), dict):
            router.mesh = _Mesh(self, router.mesh)
            self.hooks.append(f"{type(router).__name__}.mesh")
        if getattr(ps, "host", None) is not None and _recv_hook_installed():
            _RECEIVERS[id(ps.host)] = weakref.ref(self)
            self.hooks.append("Pubsub.recv_rpc")
        return list(self.hooks)

    def detach(self) -> None:
        for obj, name, original, own in reversed(self._saved):
            if own:
                setattr(obj, name, original)
            else:
                obj.__dict__.pop(name, None)
        self._saved.clear()
        if self.router is not None and isinstance(getattr(self.router, "mesh", None), _Mesh):
            self.router.mesh = {t: set(p) for t, p in self.router.mesh.items()}
        _RECEIVERS.pop(id(getattr(self.pubsub, "host", None)), None)
        self.hooks.clear()

    def _is_blacklisted(self, peer: Any) -> bool:
        check = getattr(self.pubsub, "is_peer_blacklisted", None)
        try:
            return bool(check(peer)) if check is not None else False
        except Exception:
            return False

    def _push_msg(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def push_msg(msg_forwarder: Any, msg: Any) -> None:
            fwd = _peer_bytes(msg_forwarder)
            local = fwd == self.peer_id
            mid, topic = self._msg_id(msg), self._topic(msg)
            if local:
                self._emit(T.PUBLISH_MESSAGE, "publishMessage", messageID=mid, topic=topic)
            decided = None
            if self._is_blacklisted(msg_forwarder):
                decided = REJECT_BLACKLISTED_PEER
            elif msg.from_id and self._is_blacklisted(_peer_id(msg.from_id)):
                decided = REJECT_BLACKLISTED_SOURCE
            if decided is not None:
                self._emit(
                    T.REJECT_MESSAGE, "rejectMessage", messageID=mid, receivedFrom=fwd, reason=decided, topic=topic
                )
            elif _seen(self.pubsub, msg):
                self._emit(T.DUPLICATE_MESSAGE, "duplicateMessage", messageID=mid, receivedFrom=fwd, topic=topic)
                decided = "duplicate"
            state = _Push(fwd)
            token = _PUSH.set(state)
            try:
                await original(msg_forwarder, msg)
            finally:
                _PUSH.reset(token)
            if decided is not None or state.delivered:
                return
            reason = state.reason
            if reason is None and bytes(msg.from_id) == self.peer_id and not local and _seen(self.pubsub, msg):
                reason = REJECT_SELF_ORIGIN
            if reason is None and not state.validated and getattr(self.pubsub, "strict_signing", False):
                reason = REJECT_INVALID_SIGNATURE
            if reason is not None:
                self._emit(
                    T.REJECT_MESSAGE, "rejectMessage", messageID=mid, receivedFrom=fwd, reason=reason, topic=topic
                )

        return push_msg

    def _validate_msg(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def validate_msg(msg_forwarder: Any, msg: Any) -> None:
            state = _PUSH.get()
            if state is not None:
                state.validated = True
            try:
                await original(msg_forwarder, msg)
            except Exception as exc:
                if state is not None:
                    timed_out = "timeout" in str(exc).lower()
                    state.reason = REJECT_VALIDATION_IGNORED if timed_out else REJECT_VALIDATION_FAILED
                raise

        return validate_msg

    def _notify(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def notify_subscriptions(msg: Any) -> None:
            state = _PUSH.get()
            if state is not None:
                state.delivered = True
            fwd = state.forwarder if state is not None else self.peer_id
            self._emit(
                T.DELIVER_MESSAGE,
                "deliverMessage",
                messageID=self._msg_id(msg),
                topic=self._topic(msg),
                receivedFrom=fwd,
            )
            original(msg)

        return notify_subscriptions

    def _write_msg(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def write_msg(stream: Any, rpc_msg: Any) -> bool:
            ok = await original(stream, rpc_msg)
            if ok:
                peer = getattr(getattr(stream, "muxed_conn", None), "peer_id", None)
                if peer is not None:
                    self._emit(T.SEND_RPC, "sendRPC", sendTo=_peer_bytes(peer), meta=self.rpc_meta(rpc_msg))
            return bool(ok)

        return write_msg

    def _dropped(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def handle_dropped_rpc(peer_id: Any, rpc: Any, *args: Any, **kwargs: Any) -> Any:
            self._emit(T.DROP_RPC, "dropRPC", sendTo=_peer_bytes(peer_id), meta=self.rpc_meta(rpc))
            return original(peer_id, rpc, *args, **kwargs)

        return handle_dropped_rpc

    def _join(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def join(topic: str) -> None:
            self._emit(T.JOIN, "join", topic=topic)
            await original(topic)

        return join

    def _leave(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def leave(topic: str) -> None:
            self._emit(T.LEAVE, "leave", topic=topic)
            await original(topic)

        return leave

    def _add_peer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def add_peer(peer_id: Any, protocol_id: Any) -> None:
            original(peer_id, protocol_id)  # raises for an unsupported protocol: then nothing was added
            proto = str(protocol_id) if protocol_id is not None else None
            self._emit(T.ON_NEW_OUTBOUND_STREAM, "onNewOutboundStream", peerID=_peer_bytes(peer_id), proto=proto)

        return add_peer

    def _remove_peer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def remove_peer(peer_id: Any) -> None:
            self._emit(T.ON_CLOSED_OUTBOUND_STREAM, "onClosedOutboundStream", peerID=_peer_bytes(peer_id))
            self._removing += 1
            try:
                original(peer_id)
            finally:
                self._removing -= 1

        return remove_peer

    def _recv(self, rpc: Any, peer_id: Any) -> None:
        self._emit(T.RECV_RPC, "recvRPC", receivedFrom=_peer_bytes(peer_id), meta=self.rpc_meta(rpc))


def _peer_id(raw: bytes) -> Any:
    try:
        from libp2p.peer.id import ID

        return ID(raw)
    except Exception:
        return raw


def _seen(pubsub: Any, msg: Any) -> bool:
    check = getattr(pubsub, "_is_msg_seen", None)
    try:
        return bool(check(msg)) if check is not None else False
    except Exception:
        return False


# RECV_RPC: py-libp2p parses each incoming RPC inside Pubsub.continuously_read_stream and hands it
# to ``maybe_consume_signed_record(rpc, host, peer_id)`` first. That name is looked up in the pubsub
# module at call time, so one process-wide wrapper sees every RPC of every Pubsub and forwards it to
# the tracer registered for that host (weakly: a dropped tracer is simply not called).
_RECEIVERS: dict[int, weakref.ref[PubsubTracer]] = {}
_RECV_STATE: dict[str, Any] = {}


def _recv_hook_installed() -> bool:
    if "installed" in _RECV_STATE:
        return bool(_RECV_STATE["installed"])
    try:
        from libp2p.pubsub import pubsub as module
    except ImportError:
        _RECV_STATE["installed"] = False
        return False
    original = getattr(module, "maybe_consume_signed_record", None)
    if not callable(original):
        _RECV_STATE["installed"] = False
        return False

    @functools.wraps(original)
    def maybe_consume_signed_record(rpc: RPC, host: IHost, peer_id: ID) -> bool:
        ok = bool(original(rpc, host, peer_id))
        ref = _RECEIVERS.get(id(host))
        tracer = ref() if ref is not None else None
        if ok and tracer is not None:
            tracer._recv(rpc, peer_id)
        return ok

    # patching the module py-libp2p calls it from (not a name it exports)
    setattr(module, "maybe_consume_signed_record", maybe_consume_signed_record)  # noqa: B010
    _RECV_STATE["installed"] = True
    return True
