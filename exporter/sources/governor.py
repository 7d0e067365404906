"""The ingest governor: when the sessions' loop falls behind, ask every node for fewer States.

The protocol's own flow control is the lever (docs/protocol.md section 3: the client picks the State interval in
HELLO and may change it any time with UPDATE_CONFIG). A State is cumulative and lists the
connections closed within the node's retention, so a longer interval loses no open, no close and no
duration, only time resolution of the gauges. Shedding (a newer State superseding an older unparsed
one) is the immediate defence; the governor is the lasting one, and a node that refuses UPDATE_CONFIG
is governed by shedding alone.

Policy: **all nodes alike**, by one factor over the operator's ``--interval``, raised when behind
and halved when there is room. A raise is a doubling, or more when the last period says so: the
States the nodes send (what reached the buffers, or what the streaming nodes' agreed intervals add
up to, whichever is more: a loop short of time reads its sockets late) over those the loop took to
parse, times the loop's CPU share over its budget, rounded to a power of two, at most ``max_step``.
Each raise sheds States until it settles, so one big step beats several doublings.

Why alike rather than the costliest first: every node's gauges keep one resolution (one number to
read, "the exporter asks for 4 s"), the cost of a node is roughly the size of its States, which
shedding already bounds per node, and there is no per-node bookkeeping on the loop that is short of
time. Per node the asked interval is clamped to ``[--interval, ceiling]``,
the ceiling below the node's retention with a margin (``retention / retention_margin``) and below
``max_interval_ms`` when set, so counts stay exact. The margin lets three States in a row be shed
and the fourth still list every close. When every node is at that ceiling and the exporter is still
behind, it is shedding States all the time, and the margin buys nothing: the margin is then halved
(down to ``min_retention_margin``, an interval of 80 % of the retention), so the nodes send fewer
States and none need be shed. With room, the margin comes back before the interval comes down.

Measured, every ``period_s`` on the sessions' loop: the loop thread's CPU share over the period
(``time.thread_time``: parsing, ingest, socket reads, everything the loop does) and the age of the
oldest State waiting in any buffer. Behind: the share is over the budget, or a State waited longer
than the interval asked (it would be superseded before its turn), two periods in a row. Room: the share would stay under
80 % of the budget at twice today's rate, and no State waits long, for ``room_periods`` periods in a
row. After each change the governor waits ``settle`` (two periods plus two new intervals) before it
judges again: nodes must re-arm their timers and the backlog drain before the effect shows.

A change is not sent to every node at once: a node re-arms its State timer when UPDATE_CONFIG
arrives (the Go and Python producers do), so asking a whole fleet in one instant would line every
node's States up into one burst per interval, which the exporter can only shed. Each node is asked
at its own point (fixed per session) within one new interval, so their States stay spread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from exporter.model.catalogue import Family, Writer
from exporter.pipeline.throttle import MIN_SPAN_SHARE, SpanShare
from exporter.settings import Ingest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GovernorOptions:
    """How the governor behaves: ``settings.Ingest`` (``--ingest.*``) plus its pace."""

    adaptive: bool = Ingest.adaptive
    budget: float = Ingest.budget
    max_interval_ms: int = 0  # ceiling of the asked interval; 0: the node's retention / margin
    retention_margin: float = Ingest.retention_margin
    # how far the margin may shrink while every node is at its ceiling and the exporter still behind
    min_retention_margin: float = 1.25
    period_s: float = 2.0
    room_periods: int = 3
    # Behind this many periods in a row before acting: one slow moment (a big scrape rendering on a
    # worker thread holds the GIL for a second) is not a fleet too big for the exporter.
    behind_periods: int = 2
    max_factor: int = 64
    max_step: int = 8  # the most one raise multiplies the interval by (2: doubling only)

    @classmethod
    def of(cls, ingest: Ingest) -> GovernorOptions:
        ceiling = int(ingest.max_interval_s * 1000) if ingest.max_interval_s else 0
        return cls(ingest.adaptive, ingest.budget, ceiling, ingest.retention_margin)


class Governed(Protocol):
    """What the governor asks of a session."""

    def base_interval_ms(self) -> int: ...

    def retention_ms(self) -> int: ...

    def oldest_state_arrival(self) -> float | None: ...

    def agreed_interval_ms(self) -> int:
        """The State interval the node agreed to while it streams; 0 when it does not."""
        ...

    def ask_interval(self, interval_ms: int) -> None: ...


CPU = Family(
    "libp2p_exporter_ingest_loop_cpu_ratio",
    "gauge",
    "Share of one core the sessions' event loop used over the governor's last period (the ingest budget in use).",
)
BUDGET = Family(
    "libp2p_exporter_ingest_budget_ratio",
    "gauge",
    "The loop CPU share the exporter keeps under (--ingest.budget); above it, nodes are asked for fewer States.",
)
BACKLOG = Family(
    "libp2p_exporter_ingest_backlog_seconds",
    "gauge",
    "Age of the oldest State waiting to be parsed, over every node (0: none waits).",
)
FACTOR = Family(
    "libp2p_exporter_ingest_interval_factor",
    "gauge",
    "The State interval asked of every node, as a multiple of --interval (1: no adaptation; above 1: at capacity).",
)
SPAN_SHARE = Family(
    "libp2p_exporter_ingest_span_share_ratio",
    "gauge",
    "With tracing on: the share of spans kept on top of --tracing.sample.*; lowered before any node's States "
    "are slowed (the rest counted in libp2p_exporter_spans_sampled_out_total).",
)
CHANGES = Family(
    "libp2p_exporter_ingest_interval_changes",
    "counter",
    "Times the governor changed the asked interval, by direction (up: fewer States, down: more).",
    ("direction",),
)


class Governor:
    def __init__(
        self,
        sessions: Callable[[], Iterable[Governed]],
        options: GovernorOptions | None = None,
        *,
        spans: SpanShare | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
        turn: Callable[[Governed], float] | None = None,
        flow: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.sessions = sessions
        # fleet-wide running totals (States that reached a buffer, States taken to be parsed); None:
        # not known, every raise is a doubling
        self.flow = flow
        self.overload = 0.0  # over the last period: States sent / States parsed (0: not known)
        self._flow_last: tuple[int, int] | None = None
        self.turn = turn or self._turn  # a session's point within a spread change, in [0, 1)
        self.opts = options or GovernorOptions()
        self.clock, self.cpu_clock = clock, cpu_clock
        self.factor = 1
        self.margin = self.opts.retention_margin  # the ceiling is each node's retention / this
        # Spans are shed before States: while tracing is on, "behind" halves the share of spans kept
        # (down to MIN_SPAN_SHARE) before the interval is raised, and "room" gives spans back last.
        self.spans = spans or SpanShare()
        self.cpu_share = 0.0
        self.backlog_s = 0.0
        self.changes = {"up": 0, "down": 0}
        self._room = 0
        self._behind = 0
        self._settle_until = 0.0
        self._spread: tuple[float, float] | None = None  # the last change: (when, over how many seconds)
        self._last: tuple[float, float] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- what a session asks -------------------------------------------------------------------
    def ceiling_ms(self, session: Governed, margin: float = 0.0) -> int:
        base = session.base_interval_ms()
        margin = margin or self.margin
        ceiling = int(session.retention_ms() / margin) if session.retention_ms() else 0
        if self.opts.max_interval_ms:
            ceiling = min(ceiling, self.opts.max_interval_ms) if ceiling else self.opts.max_interval_ms
        return max(base, ceiling) if ceiling else base * self.opts.max_factor

    def interval_for(self, session: Governed) -> int:
        """The interval to ask ``session``'s node for now (a HELLO after a reconnect asks this too)."""
        base = session.base_interval_ms()
        if not self.opts.adaptive:
            return base
        return max(base, min(base * self.factor, self.ceiling_ms(session)))

    # -- measuring and deciding ----------------------------------------------------------------
    def sample(self) -> None:
        """Measure the loop's CPU share since the last sample and the backlog's age now."""
        now, cpu = self.clock(), self.cpu_clock()
        wall = 0.0
        if self._last is not None:
            wall = now - self._last[0]
            if wall > 0:
                self.cpu_share = max(0.0, (cpu - self._last[1]) / wall)
        self._last = (now, cpu)
        oldest = [t for s in self.sessions() if (t := s.oldest_state_arrival()) is not None]
        self.backlog_s = max(0.0, now - min(oldest)) if oldest else 0.0
        if self.flow is not None:
            arrived, taken = self.flow()
            if self._flow_last is not None and wall > 0:
                # States/s the streaming nodes send at what they agreed to
                sent = sum(1000 / ms for s in self.sessions() if (ms := s.agreed_interval_ms()) > 0)
                d_in, d_taken = max(arrived - self._flow_last[0], sent * wall), taken - self._flow_last[1]
                # none parsed while some arrived: as far past as anything can say
                self.overload = d_in / d_taken if d_taken > 0 else (math.inf if d_in else 0.0)
            self._flow_last = (arrived, taken)

    def step(self) -> int:
        """How many times longer the interval should be: 2, or the power of two nearest to the
        measured excess (States sent over parsed, times CPU share over budget), at most max_step."""
        if not self.overload:
            return 2
        excess = self.overload * max(self.cpu_share, 1e-9) / self.opts.budget
        if excess >= self.opts.max_step:  # inf too: nothing parsed at all
            return max(2, self.opts.max_step)
        return max(2, min(self.opts.max_step, 1 << round(math.log2(max(excess, 1.0)))))

    def decide(self) -> int:
        """One judgement on the last sample; returns the factor (changed or not)."""
        if not self.opts.adaptive:
            return self.factor
        now = self.clock()
        if now < self._settle_until:
            return self.factor
        sessions = list(self.sessions())
        asked_s = max((self.interval_for(s) for s in sessions), default=1000) / 1000.0
        seen_behind = self.cpu_share > self.opts.budget or self.backlog_s > asked_s
        self._behind = self._behind + 1 if seen_behind else 0
        behind = self._behind >= self.opts.behind_periods
        room = self.cpu_share * 2 < 0.8 * self.opts.budget and self.backlog_s < asked_s / 2
        tracing = self.spans.users > 0
        can_raise = self.factor < self.opts.max_factor and any(
            self.interval_for(s) < self.ceiling_ms(s) for s in sessions
        )
        narrower = max(self.opts.min_retention_margin, self.margin / 2)
        can_narrow = (
            narrower < self.margin
            and self.factor < self.opts.max_factor
            and any(self.ceiling_ms(s, narrower) > self.ceiling_ms(s) for s in sessions)
        )
        if behind and tracing and self.spans.value > MIN_SPAN_SHARE:
            self._spans(max(MIN_SPAN_SHARE, self.spans.value / 2), "behind")
        elif behind and can_raise:
            step = self.step()
            # no node's ceiling at this margin takes the whole step: narrow now rather than after
            # another settling time spent shedding at the ceiling (never past what raises a ceiling)
            while step > 2 and all(self.interval_for(s) * step > self.ceiling_ms(s) for s in sessions):
                narrowed = max(self.opts.min_retention_margin, self.margin / 2)
                if not any(self.ceiling_ms(s, narrowed) > self.ceiling_ms(s) for s in sessions):
                    break
                self.margin = narrowed
            self._change(min(self.opts.max_factor, self.factor * step), "up", asked_s * step)
        elif behind and can_narrow:
            self.margin = narrower
            self._change(self.factor * 2, "up", asked_s * 2)
        elif room and (self.factor > 1 or (tracing and self.spans.value < 1.0)):
            self._room += 1
            if self._room >= self.opts.room_periods:
                if self.factor > 1:
                    # the margin comes back first: the ceiling it set was only for a fleet past the usual one
                    self.margin = min(self.opts.retention_margin, self.margin * 2)
                    self._change(self.factor // 2, "down", asked_s / 2)
                else:
                    self._spans(min(1.0, self.spans.value * 2), "has room again")
        else:
            self._room = 0
        return self.factor

    def _spans(self, share: float, why: str) -> None:
        log.warning(
            "ingest %s: loop CPU %.0f%% of a core (budget %.0f%%); keeping %.1f%% of spans (counted as sampled out)",
            why,
            self.cpu_share * 100,
            self.opts.budget * 100,
            share * 100,
        )
        self.spans.value = share
        self._room = 0
        self._behind = 0
        self._settle_until = self.clock() + 2 * self.opts.period_s

    def _change(self, factor: int, direction: str, new_interval_s: float) -> None:
        log.warning(
            "ingest %s: loop CPU %.0f%% of a core (budget %.0f%%), oldest waiting State %.1fs, %s States sent "
            "per State parsed; asking nodes for %dx --interval, at most their retention / %g",
            "behind" if direction == "up" else "has room again",
            self.cpu_share * 100,
            self.opts.budget * 100,
            self.backlog_s,
            f"{self.overload:.1f}" if self.overload else "unknown",
            factor,
            self.margin,
        )
        self.factor = factor
        self.changes[direction] += 1
        self._room = 0
        self._behind = 0
        self._settle_until = self.clock() + 2 * self.opts.period_s + 2 * new_interval_s
        self._spread = (self.clock(), new_interval_s)
        self.apply()

    @staticmethod
    def _turn(session: Governed) -> float:
        """A session's point within a spread, in [0, 1): fixed for the session, scattered over the fleet."""
        return math.modf(id(session) * 0.6180339887498949)[0]

    def spreading(self) -> bool:
        return self._spread is not None and self.clock() < self._spread[0] + self._spread[1]

    def apply(self) -> None:
        """Ask every session's node for what it should have now, each in its turn after a change
        (unchanged asks cost nothing; a HELLO after a reconnect asks ``interval_for`` at once)."""
        spread = self._spread if self.spreading() else None
        elapsed = self.clock() - spread[0] if spread is not None else 0.0
        for session in list(self.sessions()):
            if spread is not None and elapsed < self.turn(session) * spread[1]:
                continue  # its turn in this change has not come
            session.ask_interval(self.interval_for(session))

    async def run(self) -> None:
        self.sample()
        failed = False
        judge_at = self.clock() + self.opts.period_s
        while True:
            # while a change is being spread, wake often enough to ask each node near its turn
            wait = judge_at - self.clock()
            await asyncio.sleep(min(0.05, wait) if self.spreading() else max(0.0, wait))
            try:
                if self.clock() >= judge_at:
                    judge_at = self.clock() + self.opts.period_s
                    self.sample()
                    self.decide()
                self.apply()  # also catches sessions that reconnected or learnt their retention since
            except Exception:  # a bug must not end the governor for good: logged once, retried next period
                if not failed:
                    log.exception("ingest governor failed; retrying every period (logged once)")
                failed = True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="ingest governor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def write_metrics(self, out: Writer) -> None:
        out.gauge(CPU, self.cpu_share)
        out.gauge(BUDGET, self.opts.budget)
        out.gauge(BACKLOG, self.backlog_s)
        out.gauge(FACTOR, float(self.factor))
        if self.spans.users:
            out.gauge(SPAN_SHARE, self.spans.value)
        for direction in ("down", "up"):
            out.counter(CHANGES, self.changes[direction], {"direction": direction})
