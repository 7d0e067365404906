"""The Exporter health dashboard: scrapes, per-node data freshness, decode errors, dropped snapshots."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    INSTANCE_SELECTOR,
    JOB_SELECTOR,
    NODE_SELECTOR,
    RATE_WINDOW,
    TIME_RANGE,
    Query,
    RangeTotals,
    Row,
    TimeSeries,
    dashboard,
)
from dashboards.promql import scrape_up


def _per_second_by(labels: str, metric: str, selector: str = NODE_SELECTOR) -> str:
    return f"sum by ({labels}) (rate({metric}{{{selector}}}[{RATE_WINDOW}]))"


def exporter_health(p: dict[str, Any]) -> dm.Dashboard:
    scrapes_and_data = [
        TimeSeries(
            "Scrape target up",
            "Prometheus' own up series for the exporter targets of the selected jobs (the job variable: whatever "
            "your Prometheus names the exporter's scrape job): 0 means the exporter did not answer a scrape.",
            "bool",
            [Query(scrape_up(f"{JOB_SELECTOR}, {INSTANCE_SELECTOR}"), "{{job}} {{instance}}")],
            min=0,
            width=8,
        ),
        TimeSeries(
            "Node data current",
            "libp2p_exporter_up per node: 1 when the node's data is current and exported, 0 when its source is down or stale.",
            "bool",
            [Query(f"libp2p_exporter_up{{{NODE_SELECTOR}}}", "{{node}}")],
            min=0,
            width=8,
        ),
        TimeSeries(
            "Snapshots per second",
            "State snapshots accepted per second per node: it should match the node's push interval.",
            "ops",
            [Query(f"rate(libp2p_exporter_snapshots_total{{{NODE_SELECTOR}}}[{RATE_WINDOW}])", "{{node}}")],
            min=0,
            width=8,
        ),
        TimeSeries(
            "Snapshot age",
            "Seconds since the instant of the last accepted State (node clock). Replayed captures show their recorded time, so only live sources read as an age.",
            "s",
            [Query(f"time() - libp2p_exporter_last_snapshot_timestamp_seconds{{{NODE_SELECTOR}}}", "{{node}}")],
        ),
        RangeTotals(
            "Node restarts and command errors",
            "Restarts the exporter detected (new peer id, counters going back) and CommandResponse ERR answers, in total over the time range.",
            "none",
            [
                Query(
                    f"increase(libp2p_exporter_node_restarts_total{{{NODE_SELECTOR}}}[{TIME_RANGE}])",
                    "{{node}} restarts",
                ),
                Query(
                    f"increase(libp2p_exporter_command_errors_total{{{NODE_SELECTOR}}}[{TIME_RANGE}])",
                    "{{node}} command errors",
                ),
            ],
            min=0,
        ),
    ]
    errors_and_drops = [
        TimeSeries(
            "Segment errors",
            "Introspection segments skipped per second by reason (checksum, truncated, oversized, version, protobuf). Any is worth a look; Libp2pExporterDecodeErrors alerts.",
            "ops",
            [Query(_per_second_by("node, reason", "libp2p_exporter_segment_errors_total"), "{{node}} {{reason}}")],
            min=0,
        ),
        TimeSeries(
            "Dropped snapshots",
            "States ignored per second because they repeated or preceded the last accepted one.",
            "ops",
            [Query(_per_second_by("node, reason", "libp2p_exporter_snapshots_dropped_total"), "{{node}} {{reason}}")],
            min=0,
        ),
        TimeSeries(
            "Messages by kind",
            "Server messages decoded per second by kind (state, event, runtime, response, notice).",
            "ops",
            [Query(_per_second_by("kind", "libp2p_exporter_messages_total"), "{{kind}}")],
            min=0,
        ),
        TimeSeries(
            "Label values folded",
            "Remote-controlled label values (protocols, agents, ...) past the allow-list and cap that became other, per second. Steady growth means a new protocol to allow-list, or a peer flooding names.",
            "ops",
            [
                Query(
                    _per_second_by("label", "libp2p_exporter_label_values_folded_total", INSTANCE_SELECTOR),
                    "{{label}}",
                )
            ],
            min=0,
        ),
    ]
    exporter_and_settings = [
        TimeSeries(
            "Scrape duration",
            "Time the exporter spent building a scrape's metric families.",
            "s",
            [Query(f"libp2p_exporter_scrape_duration_seconds{{{INSTANCE_SELECTOR}}}", "{{instance}}")],
            min=0,
        ),
        TimeSeries(
            "Introspection settings",
            "The push interval and retention the node confirmed, and the period its last State covered (snapshot_duration_ms).",
            "s",
            [
                Query(f"libp2p_introspection_interval_seconds{{{NODE_SELECTOR}}}", "{{node}} interval"),
                Query(f"libp2p_introspection_retention_seconds{{{NODE_SELECTOR}}}", "{{node}} retention"),
                Query(
                    f"libp2p_introspection_snapshot_duration_seconds{{{NODE_SELECTOR}}}", "{{node}} last State covered"
                ),
            ],
            min=0,
        ),
    ]
    capacity = [
        TimeSeries(
            "Exporter capacity",
            "The ingest budget in use: the share of one core the sessions' loop used, against --ingest.budget; and the "
            "State interval asked of every node as a multiple of --interval (above 1: at capacity, gauges sparser, "
            "counters exact; Libp2pExporterAtCapacity alerts). Stuck at its ceiling while States are still shed: add a shard.",
            "none",
            [
                Query(f"libp2p_exporter_ingest_loop_cpu_ratio{{{INSTANCE_SELECTOR}}}", "{{instance}} loop CPU (cores)"),
                Query(f"libp2p_exporter_ingest_budget_ratio{{{INSTANCE_SELECTOR}}}", "{{instance}} budget"),
                Query(f"libp2p_exporter_ingest_interval_factor{{{INSTANCE_SELECTOR}}}", "{{instance}} interval factor"),
            ],
            min=0,
        ),
        TimeSeries(
            "Interval asked and agreed",
            "Per node: the State interval the exporter asked for (HELLO or UPDATE_CONFIG) and the one the node agreed to. "
            "They differ for a node that refused UPDATE_CONFIG (governed by shedding alone) or clamps the interval.",
            "s",
            [
                Query(f"libp2p_exporter_session_requested_interval_seconds{{{NODE_SELECTOR}}}", "{{node}} asked"),
                Query(f"libp2p_exporter_session_interval_seconds{{{NODE_SELECTOR}}}", "{{node}} agreed"),
            ],
            min=0,
        ),
        TimeSeries(
            "Shed before parsing",
            "Per node and kind, per second: States superseded by a newer one (and events over the buffer) before they "
            "were ever parsed, and the age of the oldest State waiting. Nonzero: the exporter was behind that node.",
            "ops",
            [
                Query(
                    _per_second_by("node, kind", "libp2p_exporter_session_shed_before_parse_total"),
                    "{{node}} {{kind}}",
                ),
                Query(
                    f"libp2p_exporter_ingest_backlog_seconds{{{INSTANCE_SELECTOR}}}", "{{instance}} oldest waiting (s)"
                ),
            ],
            min=0,
        ),
        RangeTotals(
            "Retention gaps",
            "Per node, over the time range: States accepted more than the node's retention after the previous one. "
            "What opened and closed in between was never listed, so that node's counters may be short: the exporter "
            "is past its limit (add a shard), or the node's session was down that long. Libp2pExporterCountsIncomplete "
            "alerts.",
            "none",
            [Query(f"increase(libp2p_exporter_retention_gaps_total{{{NODE_SELECTOR}}}[{TIME_RANGE}])", "{{node}}")],
            min=0,
        ),
    ]
    return dashboard(
        "libp2p-exporter-health",
        "libp2p / Exporter health",
        "Is the exporter itself healthy: scrapes, per-node data freshness, decode errors, dropped snapshots.",
        [
            Row("Scrapes and node data", scrapes_and_data),
            Row("Input errors and drops", errors_and_drops),
            Row("Scrape cost and introspection settings", exporter_and_settings),
            Row("Capacity (overload)", capacity),
        ],
    )
