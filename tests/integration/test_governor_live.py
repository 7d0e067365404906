"""The governor over real sessions: UPDATE_CONFIG asks for a longer interval, the node's answer
becomes the agreed interval (and staleness window); a node that refuses is left to shedding."""

from __future__ import annotations

from dataclasses import replace

from exporter.app.runtime import build_hub
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.governor import GovernorOptions
from exporter.sources.manager import SessionManager
from exporter.sources.options import Target
from tests.support.introspect_server import IntrospectServer
from tests.support.live import FAST
from tests.support.procs import until
from tests.support.samples import hub_series
from tests.support.samples import value as sample_value

C = pb.ClientCommand
# A budget nothing fits in: every period is "behind", so the interval climbs to its ceiling.
SQUEEZED = GovernorOptions(budget=1e-6, period_s=0.05, max_interval_ms=400, min_retention_margin=4.0)


async def test_a_squeezed_exporter_asks_for_longer_intervals(server: IntrospectServer) -> None:
    agreeing = server.add("a")
    refusing = server.add("r", err_commands={(C.UPDATE_CONFIG, C.STATE)})
    hub = build_hub(live=True)
    manager = SessionManager(hub, replace(FAST, interval_ms=100), governor=SQUEEZED, probe_idle_s=0)
    hub.add_global_writer(manager.governor.write_metrics)
    manager.add(Target(url=server.url("a"), name="a", interval_ms=100))
    manager.add(Target(url=server.url("r"), name="r", interval_ms=100))
    a, r = manager.sessions["a"], manager.sessions["r"]
    try:
        await until(lambda: a.stats.effective_interval_ms == 400, timeout=20, what="the ceiling agreed")
        # raised from --interval (doubled, or more at once when a period measured how far past)
        assert agreeing.intervals_asked[0] in (200, 400)
        assert agreeing.intervals_asked[-1] == 400 and sorted(agreeing.intervals_asked) == agreeing.intervals_asked
        assert a.stats.requested_interval_ms == 400 and hub.nodes["a"].stale_after_s == FAST.stale_intervals * 0.4
        await until(lambda: r.update_refused, what="the refusal noticed")
        # The refusing node stays at what HELLO agreed, is asked nothing more, and is still up.
        assert r.stats.effective_interval_ms == 100 and r.stats.requested_interval_ms == 100
        asked = len([c for c in refusing.commands if c.command == C.UPDATE_CONFIG])
        await until(lambda: hub.nodes["r"].messages.get("state", 0) >= 3, what="states from the refusing node")
        assert len([c for c in refusing.commands if c.command == C.UPDATE_CONFIG]) == asked == 1
        series = hub_series(hub)
        assert sample_value(series, "libp2p_exporter_session_requested_interval_seconds", node="a") == 0.4
        assert sample_value(series, "libp2p_exporter_session_interval_seconds", node="a") == 0.4
        assert sample_value(series, "libp2p_exporter_session_requested_interval_seconds", node="r") == 0.1
        assert sample_value(series, "libp2p_exporter_ingest_interval_factor") == manager.governor.factor >= 4
        # After a reconnect, HELLO asks for what the exporter can take now, not --interval.
        hello_before = [c for c in agreeing.commands if c.command == C.HELLO]
        for ws in list(agreeing.live):
            await ws.close()
        await until(
            lambda: len([c for c in agreeing.commands if c.command == C.HELLO]) > len(hello_before), what="a new HELLO"
        )
        hello = [c for c in agreeing.commands if c.command == C.HELLO][-1]
        assert hello.config.state_snapshot_interval_ms == 400
    finally:
        await manager.close()
