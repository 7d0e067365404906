"""The ingest governor (issue 20): all nodes alike, doubled when behind, halved with room; clamped to
[--interval, ceiling below each node's retention]. Scripted clocks: no timing."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.sources.governor import Governor, GovernorOptions
from tests.support.samples import Series


@dataclass
class FakeSession:
    base: int = 1000
    retention: int = 120_000
    waiting_since: float | None = None
    asked: list[int] = field(default_factory=list)
    agreed: int = 0  # 0: not streaming (the governor then knows only what reached the buffers)

    def base_interval_ms(self) -> int:
        return self.base

    def retention_ms(self) -> int:
        return self.retention

    def oldest_state_arrival(self) -> float | None:
        return self.waiting_since

    def agreed_interval_ms(self) -> int:
        return self.agreed

    def ask_interval(self, interval_ms: int) -> None:
        if not self.asked or self.asked[-1] != interval_ms:
            self.asked.append(interval_ms)


class Clocks:
    def __init__(self) -> None:
        self.now = 0.0
        self.cpu = 0.0

    def step(self, seconds: float, share: float) -> None:
        self.now += seconds
        self.cpu += seconds * share


def _governor(sessions: list[FakeSession], **kw: object) -> tuple[Governor, Clocks]:
    clocks = Clocks()
    # every node asked the moment a change is made (the spread over an interval has its own test)
    turn = kw.pop("turn", lambda _s: 0.0)
    opts = GovernorOptions(period_s=2.0, **kw)  # type: ignore[arg-type]
    gov = Governor(lambda: sessions, opts, clock=lambda: clocks.now, cpu_clock=lambda: clocks.cpu, turn=turn)  # type: ignore[arg-type]
    gov.sample()
    return gov, clocks


def _round(gov: Governor, clocks: Clocks, share: float) -> int:
    clocks.step(gov.opts.period_s, share)
    gov.sample()
    factor = gov.decide()
    gov.apply()
    return factor


def test_behind_doubles_for_all_nodes_alike_then_settles() -> None:
    nodes = [FakeSession(), FakeSession(base=2000)]
    gov, clocks = _governor(nodes)
    assert _round(gov, clocks, 0.5) == 1 and nodes[0].asked == [1000]
    assert _round(gov, clocks, 0.97) == 1  # one period over the budget: a moment, not a trend
    assert _round(gov, clocks, 0.5) == 1
    assert _round(gov, clocks, 0.97) == 1
    assert _round(gov, clocks, 0.97) == 2  # two in a row over the 0.8 budget: twice --interval, every node
    assert nodes[0].asked == [1000, 2000] and nodes[1].asked == [2000, 4000]
    assert gov.changes == {"up": 1, "down": 0}
    # Settling: 2 periods + 2 new intervals (4 s + 8 s): still behind, no second doubling yet.
    assert _round(gov, clocks, 0.97) == 2
    assert _round(gov, clocks, 0.97) == 2
    for _ in range(6):
        factor = _round(gov, clocks, 0.97)
    assert factor == 4 and gov.changes["up"] == 2


def test_room_halves_only_after_several_calm_periods_and_never_below_the_operators_interval() -> None:
    node = FakeSession()
    gov, clocks = _governor([node])
    gov.factor = 4
    gov.apply()
    # 0.35 of a core: twice that (0.7) is over 80 % of the budget (0.64): no room, stays.
    for _ in range(5):
        assert _round(gov, clocks, 0.35) == 4
    assert [_round(gov, clocks, 0.2) for _ in range(3)] == [4, 4, 2]
    for _ in range(40):
        _round(gov, clocks, 0.05)
    assert gov.factor == 1 and node.asked[-1] == 1000 and min(node.asked) == 1000


def test_the_ceiling_stays_below_retention_and_the_flag() -> None:
    short = FakeSession(retention=10_000)  # keeps closed connections for 10 s: 2.5 s, then up to 8 s
    long_ = FakeSession(retention=120_000)
    gov, clocks = _governor([short, long_], max_interval_ms=8000)
    for _ in range(60):
        _round(gov, clocks, 1.0)
    # retention / 4 first; still behind with every node there: / 2, then / 1.25 (80 % of the retention)
    assert short.asked == [1000, 2000, 2500, 5000, 8000]
    assert max(long_.asked) == 8000  # the flag caps whatever the margin
    assert gov.margin == 1.25 and gov.factor == 32  # once every node is at its last ceiling, doubling stops
    assert gov.interval_for(short) <= short.retention * 0.8


def test_the_margin_narrows_only_at_the_ceiling_and_comes_back_first() -> None:
    node = FakeSession(retention=10_000)
    gov, clocks = _governor([node])
    for _ in range(8):
        _round(gov, clocks, 1.0)
    assert node.asked == [1000, 2000, 2500] and gov.margin == 4  # doubling first, up to retention / 4
    for _ in range(30):
        _round(gov, clocks, 1.0)
    assert node.asked[-1] == 8000 and gov.margin == 1.25
    for _ in range(60):
        _round(gov, clocks, 0.05)
    # with room: the wider margin back before the interval comes down to the operator's
    assert node.asked[-4:] == [4000, 2500, 2000, 1000] and gov.margin == 4 and gov.factor == 1


def test_no_narrowing_when_the_flag_is_the_ceiling() -> None:
    node = FakeSession(retention=120_000)
    gov, clocks = _governor([node], max_interval_ms=4000)
    for _ in range(40):
        _round(gov, clocks, 1.0)
    assert max(node.asked) == 4000 and gov.margin == 4 and gov.factor == 4


def test_a_change_reaches_each_node_at_its_own_point_within_one_new_interval() -> None:
    # a node re-arms its State timer when UPDATE_CONFIG arrives: one instant for all would line every
    # node's States up into one burst per interval
    nodes = [FakeSession() for _ in range(10)]
    turns = {id(n): i / 10 for i, n in enumerate(nodes)}
    gov, clocks = _governor(nodes, turn=lambda s: turns[id(s)])
    _round(gov, clocks, 0.97)
    assert _round(gov, clocks, 0.97) == 2  # changed now: spread over the new interval, 2 s
    assert [len(n.asked) for n in nodes] == [2] + [1] * 9  # only the node whose turn is 0 so far
    for step in range(1, 10):
        clocks.now += 0.2
        gov.apply()
        assert sum(n.asked[-1] == 2000 for n in nodes) == step + 1
    assert all(n.asked == [1000, 2000] for n in nodes) and gov.spreading()
    clocks.now += 0.25
    assert not gov.spreading()
    # the default turn is fixed per session and scattered over [0, 1)
    default = Governor(lambda: nodes)
    points = [default.turn(n) for n in nodes]
    assert points == [default.turn(n) for n in nodes] and all(0 <= p < 1 for p in points)
    assert len({int(p * 4) for p in points}) >= 3


class Flow:
    """Fleet-wide running totals: States that reached a buffer, States taken to be parsed."""

    def __init__(self) -> None:
        self.arrived = self.parsed = 0

    def __call__(self) -> tuple[int, int]:
        return self.arrived, self.parsed


def _flowing(sessions: list[FakeSession], **kw: object) -> tuple[Governor, Clocks, Flow]:
    clocks, flow = Clocks(), Flow()
    opts = GovernorOptions(period_s=2.0, **kw)  # type: ignore[arg-type]
    gov = Governor(
        lambda: sessions,
        opts,
        clock=lambda: clocks.now,
        cpu_clock=lambda: clocks.cpu,
        turn=lambda _s: 0.0,
        flow=flow,
    )
    gov.sample()
    return gov, clocks, flow


def _flow_round(gov: Governor, clocks: Clocks, flow: Flow, share: float, arrived: int, parsed: int) -> int:
    flow.arrived += arrived
    flow.parsed += parsed
    return _round(gov, clocks, share)


def test_a_fleet_far_past_the_exporter_gets_there_in_one_raise() -> None:
    # 8 States arrive for every one parsed, the loop at a full core (budget 0.8): 10 times too many,
    # the nearest power of two is 8; retention 10 s, so the margin narrows in the same step (8 s = / 1.25)
    node = FakeSession(retention=10_000)
    gov, clocks, flow = _flowing([node])
    assert _flow_round(gov, clocks, flow, 1.0, 800, 100) == 1  # one period: a moment
    assert _flow_round(gov, clocks, flow, 1.0, 800, 100) == 8
    assert node.asked == [1000, 8000] and gov.margin == 1.25 and gov.changes["up"] == 1
    assert gov.overload == 8.0 and gov.step() == 8


def test_what_the_nodes_send_counts_even_when_the_loop_reads_it_late() -> None:
    # a loop short of time reads its sockets late: only as many States reach the buffers as it parses,
    # but 200 streaming nodes at 1 s send 400 in a 2 s period: 4 x 1.0 / 0.8 = 5, four times
    nodes = [FakeSession(agreed=1000) for _ in range(200)]
    gov, clocks, flow = _flowing(nodes)
    _flow_round(gov, clocks, flow, 1.0, 100, 100)
    assert gov.overload == 4.0 and gov.step() == 4
    assert _flow_round(gov, clocks, flow, 1.0, 100, 100) == 4
    nodes[0].agreed = 0  # not streaming: not counted
    _flow_round(gov, clocks, flow, 1.0, 100, 100)
    assert gov.overload == 3.98


def test_the_step_is_measured_and_bounded() -> None:
    node = FakeSession()
    gov, clocks, flow = _flowing([node])
    _flow_round(gov, clocks, flow, 0.97, 100, 100)  # everything parsed, CPU just over: a doubling
    assert gov.step() == 2
    _flow_round(gov, clocks, flow, 1.0, 300, 100)  # 3 x 1.25 = 3.75: four times
    assert gov.step() == 4
    _flow_round(gov, clocks, flow, 1.0, 100, 0)  # nothing parsed at all: the largest step
    assert gov.step() == gov.opts.max_step == 8
    _flow_round(gov, clocks, flow, 0.0, 0, 0)  # nothing arrived: not known, a doubling
    assert gov.step() == 2
    doubling_only, clocks2, flow2 = _flowing([FakeSession()], max_step=2)
    _flow_round(doubling_only, clocks2, flow2, 1.0, 100, 0)
    assert doubling_only.step() == 2
    at_most_3, clocks3, flow3 = _flowing([FakeSession()], max_step=3)
    _flow_round(at_most_3, clocks3, flow3, 1.0, 230, 100)  # 2.9: nearest power of two is 4, over the bound
    assert at_most_3.step() == 3


def test_a_raise_never_narrows_past_a_flag_that_is_the_ceiling() -> None:
    node = FakeSession(retention=120_000)
    gov, clocks, flow = _flowing([node], max_interval_ms=4000)
    for _ in range(10):
        _flow_round(gov, clocks, flow, 1.0, 800, 100)
    assert node.asked == [1000, 4000] and gov.margin == 4


def test_a_state_waiting_longer_than_the_interval_is_behind_too() -> None:
    node = FakeSession()
    gov, clocks = _governor([node])
    node.waiting_since = clocks.now
    assert _round(gov, clocks, 0.1) == 1
    assert _round(gov, clocks, 0.1) == 2  # 4 s old while asked 1 s, twice: behind, whatever the CPU says
    assert gov.backlog_s == 4.0


def test_off_means_the_operators_interval_always() -> None:
    node = FakeSession()
    gov, clocks = _governor([node], adaptive=False)
    for _ in range(10):
        _round(gov, clocks, 1.0)
    assert gov.factor == 1 and node.asked == [1000]


def test_fleet_wide_series() -> None:
    from exporter.app.runtime import build_hub
    from tests.support.samples import hub_series

    hub = build_hub(live=True)
    gov, clocks = _governor([FakeSession()])
    hub.add_global_writer(gov.write_metrics)
    _round(gov, clocks, 0.9)
    series: Series = hub_series(hub)
    got = {k: v for k, v in series.items() if k[0].startswith("libp2p_exporter_ingest_")}
    names = {k[0] for k in got}
    assert names == {
        "libp2p_exporter_ingest_loop_cpu_ratio",
        "libp2p_exporter_ingest_budget_ratio",
        "libp2p_exporter_ingest_backlog_seconds",
        "libp2p_exporter_ingest_interval_factor",
        "libp2p_exporter_ingest_interval_changes_total",
    }, names


def test_spans_are_shed_before_any_node_s_states_slow() -> None:
    from exporter.pipeline.throttle import MIN_SPAN_SHARE, SpanShare

    node = FakeSession()
    clocks = Clocks()
    spans = SpanShare(users=1)  # tracing is on
    gov = Governor(
        lambda: [node],
        GovernorOptions(period_s=2.0),
        spans=spans,
        clock=lambda: clocks.now,
        cpu_clock=lambda: clocks.cpu,
    )
    gov.sample()
    shares = []
    for _ in range(40):
        _round(gov, clocks, 0.95)
        shares.append((spans.value, gov.factor))
    first_raise = next(i for i, (_, f) in enumerate(shares) if f > 1)
    assert all(share == MIN_SPAN_SHARE for share, _ in shares[first_raise:])  # spans went down to the floor first
    assert [s for s, _ in shares[:first_raise]] == sorted((s for s, _ in shares[:first_raise]), reverse=True)
    # With room, the interval comes back first, spans last.
    for _ in range(200):
        _round(gov, clocks, 0.05)
    assert gov.factor == 1 and spans.value == 1.0


def test_a_lower_span_share_keeps_a_subset_of_the_ids() -> None:
    from exporter.sinks.otel.spans import keep

    ids = [f"conn-{i}".encode() for i in range(2000)]
    full = {i for i in ids if keep(i, 1.0)}
    half = {i for i in ids if keep(i, 0.5)}
    quarter = {i for i in ids if keep(i, 0.25)}
    assert quarter <= half <= full and 800 < len(half) < 1200 and 350 < len(quarter) < 650


def test_the_new_per_node_series_move_the_node_s_version() -> None:
    """The interval asked and the shed counts are on the node's block: changing them re-renders it
    (a cached block never shows old values)."""
    from exporter.app.runtime import build_hub
    from exporter.pipeline.session import SessionStats
    from exporter.sinks.prometheus import Exposition
    from tests.support.samples import series

    hub = build_hub(live=True)
    node = hub.node("n")
    node.session = SessionStats(url="ws://x", requested_interval_ms=1000)
    exposition = Exposition(hub)

    def current() -> dict[str, float]:
        body, _ = exposition.respond("text/plain", "", None)
        got = series(body)
        return {
            k[0]: v
            for k, v in got.items()
            if k[0].startswith("libp2p_exporter_session_") and dict(k[1]).get("kind", "state") == "state"
        }

    assert current()["libp2p_exporter_session_requested_interval_seconds"] == 1.0
    before = node.version
    node.session.requested_interval_ms = 4000
    node.session.shed["state"] += 3
    assert node.version > before
    now = current()
    assert now["libp2p_exporter_session_requested_interval_seconds"] == 4.0
    assert now["libp2p_exporter_session_shed_before_parse_total"] == 3.0
