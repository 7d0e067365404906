"""Handshake timing for the py-libp2p provider, measured around the swarm's upgrader.

A mixin of ``Libp2pIntrospection`` (libp2p_provider.py): the upgrader's two steps are wrapped on
the instance, and the times wait in bounded tables until the connection is announced.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import wraps
from typing import Any

from exporter.introspector.api import now_ms

_MAX_PENDING_HANDSHAKES = 256


class _HandshakeTiming:
    """Wraps the upgrader; the tables and the undo list are set up by ``Libp2pIntrospection``."""

    _securing: OrderedDict[int, tuple[Any, int]]
    _upgraded: OrderedDict[int, tuple[Any, int, int]]
    _wrapped: list[tuple[Any, str, Any]]

    # -- handshake timing -------------------------------------------------------------------
    def _instrument_upgrader(self, network: Any) -> None:
        """Time each connection's upgrade: from the raw connection entering security negotiation
        (open_ts, "opened on the wire") to the muxer being ready (upgraded_ts)."""
        upgrader = getattr(network, "upgrader", None)
        security = getattr(upgrader, "upgrade_security", None)
        muxing = getattr(upgrader, "upgrade_connection", None)
        if security is None or muxing is None:
            return
        securing, upgraded = self._securing, self._upgraded

        def remember(table: OrderedDict[int, Any], obj: Any, value: tuple[Any, ...]) -> None:
            table[id(obj)] = (obj, *value)
            while len(table) > _MAX_PENDING_HANDSHAKES:
                table.popitem(last=False)

        @wraps(security)
        async def timed_security(raw_conn: Any, *args: Any, **kwargs: Any) -> Any:
            start = now_ms()
            secured = await security(raw_conn, *args, **kwargs)
            remember(securing, secured, (start,))
            return secured

        @wraps(muxing)
        async def timed_muxing(secured: Any, *args: Any, **kwargs: Any) -> Any:
            muxed = await muxing(secured, *args, **kwargs)
            began = securing.pop(id(secured), None)
            if began is not None and began[0] is secured:
                remember(upgraded, muxed, (began[1], now_ms()))
            return muxed

        for attr, wrapper in (("upgrade_security", timed_security), ("upgrade_connection", timed_muxing)):
            self._wrapped.append((upgrader, attr, upgrader.__dict__.get(attr)))
            setattr(upgrader, attr, wrapper)
