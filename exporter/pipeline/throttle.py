"""The share of spans kept, lowered when the exporter is behind (issue 20: tracing inside the budget).

The ingest governor (``exporter.sources.governor``) halves it before it slows any node's States, and
raises it again when there is room; span sinks multiply their ``--tracing.sample.*`` ratios by it.
Sampling stays deterministic by id: at a lower share the kept ids are a subset of those kept before.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_SPAN_SHARE = 1 / 64  # below this the governor slows States instead


@dataclass
class SpanShare:
    value: float = 1.0
    users: int = 0  # span sinks that follow it: none, and the governor leaves it alone
