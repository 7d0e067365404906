"""Real go-libp2p-pubsub nodes: their own tracers' files and remote tracer, against a Go oracle.

``gossipsub-swarm`` (producers/go) runs six go-libp2p hosts on 127.0.0.1 in a gossipsub ring (so
messages take several hops and meet again: duplicates), the last host's validator rejecting every
fourth message. Every host traces with go-libp2p-pubsub's JSONTracer and PBTracer and, with its
RemoteTracer, to a live exporter's ``--pubsub.listen`` collector; that exporter sends message spans
over OTLP to a receiver here and is scraped by a real Prometheus. The same files are backfilled into
a second Prometheus. ``tracestat-oracle`` (OURS, go-libp2p-pubsub-tracer's tracestat cannot be built
from the proxy: see tests/support/go_tools.py) counts the same files with go's own pb package.

Counts must equal the oracle's exactly, live and backfilled; the propagation histogram must hold the
oracle's delays (exactly, from its nanoseconds; and tracestat's rounded milliseconds within a bucket).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("libp2p")

from exporter.mappers.pubsub import PROPAGATION_BUCKETS
from exporter.model.histogram import Histogram
from exporter.protocol.pubsub_codec import TraceEvent, b58
from exporter.sources.pubsub_trace import read_trace_file
from tests.support.otlp import HttpReceiver
from tests.support.panel_queries import panels_without_data, resolve_variables
from tests.support.procs import REPO, Proc, Prometheus, http_get, scrape_job, start_exporter, start_prometheus, wait_for

T = TraceEvent.Type
TOPIC = "go-gossipsub"
N, MESSAGES, REJECT_EVERY = 6, 16, 4
BOARD = REPO / "dashboards" / "json" / "libp2p-pubsub.json"
COUNTS = {  # the oracle's (tracestat's) count -> our family
    "Publish": "libp2p_pubsub_topic_msg_published_total",
    "Deliver": "libp2p_pubsub_delivered_messages_total",
    "Duplicate": "libp2p_pubsub_duplicate_messages_total",
    "Reject": "libp2p_pubsub_rejected_messages_total",
}


@dataclass
class GoRun:
    summary: dict[str, Any]
    oracle: dict[str, Any]  # tracestat-oracle over the PB files
    oracle_json: dict[str, Any]  # ... and over the JSON files
    oracle_topic: dict[str, Any]  # ... over the PB files with -topic (message events of the topic only)
    oracle_recorded: dict[str, Any]  # ... over what the collector recorded from the remote tracers
    recorded: list[str]  # that recording: traced's form, still open (no gzip trailer yet)
    events: list[TraceEvent]  # every file's events, read by the exporter's reader (PB files)
    exporter: Proc
    receiver: HttpReceiver
    live: Prometheus
    history: Prometheus
    backfill_summary: str
    start: float
    end: float


def _collector(output: str) -> str | None:
    m = re.search(r"pubsub trace collector: (\S+/p2p/\S+)", output)
    return m[1] if m else None


def _oracle(tools: dict[str, Path], files: list[str], *flags: str) -> dict[str, Any]:
    proc = subprocess.run([str(tools["tracestat-oracle"]), *flags, *files], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _exposition(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for line in http_get(url + "/metrics").splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[2] or "")))
            out[(m[1], labels)] = float(m[3])
    return out


def _events_total(url: str) -> float:
    return sum(v for (name, _), v in _exposition(url).items() if name == "libp2p_pubsub_trace_events_total")


@pytest.fixture(scope="module")
def go_run(go_tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoRun]:
    work: Path = tmp_path_factory.mktemp("go-gossipsub")
    receiver = HttpReceiver().start()
    exporter = start_exporter(
        [
            "--pubsub.listen",
            "/ip4/127.0.0.1/tcp/0",
            "--pubsub.topics",
            TOPIC,
            "--pubsub.window",
            "2",  # reach is observed 2 s after a message, within the test
            "--otlp.endpoint",
            receiver.endpoint,
            "--record",  # the collector's events, also written in traced's form (gzip of TraceEvents)
            str(work / "rec"),
        ],
        work / "exporter",
    )
    live = start_prometheus(work / "live", [scrape_job("libp2p-exporter", exporter.port)])
    history = None
    try:
        wait_for(live.targets_up, 30, "the exporter target to be up")
        collector = wait_for(lambda: _collector(exporter.output()), 20, "the collector's address")
        start = time.time()
        swarm = subprocess.run(
            [
                str(go_tools["gossipsub-swarm"]),
                *("-n", str(N), "-messages", str(MESSAGES), "-reject-every", str(REJECT_EVERY)),
                *("-topology", "ring", "-interval", "300ms", "-topic", TOPIC, "-timeout", "90s"),
                *("-out", str(work / "traces"), "-collector", collector),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert swarm.returncode == 0, swarm.stderr
        summary = json.loads(swarm.stdout)
        events = [e for f in summary["files"]["pb"] for e in read_trace_file(f)[0]]
        # the Go nodes closed their remote tracers' streams; the collector takes the last batches
        wait_for(lambda: _events_total(exporter.url) >= len(events), 30, f"the exporter to hold {len(events)} events")
        scrapes = 'count_over_time(libp2p_pubsub_traced_nodes{job="libp2p-exporter"}[5m])'
        done = live.value(scrapes) or 0
        wait_for(lambda: (live.value(scrapes) or 0) >= done + 3, 30, "three scrapes after the gossip")
        end = time.time()

        recorded = [str(p) for p in sorted((work / "rec").rglob("*.pubsub.pb.gz"))]
        assert recorded, "the collector recorded nothing"
        files = summary["files"]["json"] + summary["files"]["pb"] + recorded
        cmd = [sys.executable, "-m", "exporter", "backfill", "-o", str(work / "blocks")]
        cmd += ["--pubsub.step", "0.5", "--pubsub.window", "2", "--pubsub.topics", TOPIC]
        for f in files:
            cmd += ["--pubsub.file", f]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        history = start_prometheus(work / "history", [], storage=work / "blocks", retention="1d")
        yield GoRun(
            summary=summary,
            oracle=_oracle(go_tools, summary["files"]["pb"]),
            oracle_json=_oracle(go_tools, summary["files"]["json"]),
            oracle_topic=_oracle(go_tools, summary["files"]["pb"], "-topic", TOPIC),
            oracle_recorded=_oracle(go_tools, recorded, "-open-gzip"),
            recorded=recorded,
            events=events,
            exporter=exporter,
            receiver=receiver,
            live=live,
            history=history,
            backfill_summary=proc.stdout,
            start=start,
            end=end,
        )
    finally:
        if history is not None:
            history.stop()
        live.stop()
        exporter.stop()
        receiver.stop()


# -- the swarm and the oracle --------------------------------------------------------------------


def test_the_swarm_published_rejected_and_duplicated(go_run: GoRun) -> None:
    s, per_peer = go_run.summary, go_run.oracle["Events"]["PerPeer"]
    assert len(s["peers"]) == N and sum(s["published"].values()) == MESSAGES
    assert {p: c["Publish"] for p, c in per_peer.items() if c["Publish"]} == s["published"]
    totals = go_run.oracle["Events"]["Totals"]
    assert s["rejected"] == MESSAGES // REJECT_EVERY and totals["Reject"] == s["rejected"]
    assert per_peer[s["rejecter"]]["Reject"] == s["rejected"]
    assert totals["Deliver"] == s["delivered"] == N * MESSAGES - s["rejected"]
    assert totals["Duplicate"] > 0
    # tracestat lists a delay for every delivery after the publish, the origin's own included
    assert max(len(d) for d in go_run.oracle["Delays"]["PerMessage"].values()) == N


def test_json_and_pb_tracer_files_hold_the_same_events(go_run: GoRun) -> None:
    assert go_run.oracle_json == go_run.oracle  # go's own decoding of both forms
    # one topic: tracestat's -topic pass keeps every message event (and drops the RPCs)
    topic = go_run.oracle_topic["Events"]["Totals"]
    assert topic == {**go_run.oracle["Events"]["Totals"], "SendRPC": 0, "DropRPC": 0}
    assert go_run.oracle_topic["Delays"] == go_run.oracle["Delays"]
    for pb_path, json_path in zip(go_run.summary["files"]["pb"], go_run.summary["files"]["json"], strict=True):
        (pb_events, pb_stats), (js_events, js_stats) = read_trace_file(pb_path), read_trace_file(json_path)
        assert not pb_stats.errors and not js_stats.errors, (pb_stats, js_stats)
        assert pb_events == js_events and pb_events
    kinds = Counter(T.Name(e.type) for e in go_run.events)
    assert kinds["SEND_RPC_COMPLETED"] > 0  # go-libp2p-pubsub v0.15+; an unknown type was read as damage


# -- counts: live (collector) and backfilled, against the oracle ---------------------------------


def _by_node(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], family: str) -> dict[str, float]:
    out: Counter[str] = Counter()
    for (name, labels), v in values.items():
        if name == family:
            out[dict(labels)["node"]] += v
    return dict(out)


def _want(go_run: GoRun, count: str) -> dict[str, float]:
    return {p: float(c[count]) for p, c in go_run.oracle["Events"]["PerPeer"].items() if c[count]}


@pytest.mark.parametrize("count", sorted(COUNTS))
def test_live_counts_equal_the_oracle(go_run: GoRun, count: str) -> None:
    got = _by_node(_exposition(go_run.exporter.url), COUNTS[count])
    assert {n: v for n, v in got.items() if v} == _want(go_run, count)


def test_live_received_and_reject_reasons_follow_gos_events(go_run: GoRun) -> None:
    """go stamps its own deliveries receivedFrom = itself: received is Deliver less Publish; the
    validator's rejections carry go's reason."""
    m = _exposition(go_run.exporter.url)
    per_peer = go_run.oracle["Events"]["PerPeer"]
    received = _by_node(m, "libp2p_pubsub_topic_msg_recv_total")
    assert received == {p: float(c["Deliver"] - c["Publish"]) for p, c in per_peer.items()}
    reasons = {(dict(k)["node"], dict(k)["reason"]): v for (name, k), v in m.items() if name == COUNTS["Reject"]}
    assert reasons == {(go_run.summary["rejecter"], "validation failed"): float(go_run.summary["rejected"])}


@pytest.mark.parametrize(("count", "result"), [("SendRPC", "sent"), ("DropRPC", "dropped")])
def test_live_rpc_counts_equal_the_oracle(go_run: GoRun, count: str, result: str) -> None:
    m = _exposition(go_run.exporter.url)
    got = {
        dict(k)["node"]: v
        for (name, k), v in m.items()
        if name == "libp2p_pubsub_rpcs_total" and dict(k)["result"] == result
    }
    assert {n: v for n, v in got.items() if v} == _want(go_run, count)
    if count == "SendRPC":
        assert got and sum(got.values()) > 0


def test_the_collector_took_every_go_stream_cleanly(go_run: GoRun) -> None:
    m = _exposition(go_run.exporter.url)
    assert m[("libp2p_pubsub_collector_streams_accepted_total", ())] == N
    assert m[("libp2p_pubsub_collector_streams", ())] == 0  # every remote tracer closed its stream
    assert sum(v for (name, _), v in m.items() if name == "libp2p_pubsub_collector_errors_total") == 0
    assert _events_total(go_run.exporter.url) == len(go_run.events)  # nothing lost, nothing twice


def _prom_by_node(prom: Prometheus, expr: str, at: float) -> dict[str, float]:
    result = prom.api("query", query=expr, time=f"{at:.3f}")["result"]
    return {s["metric"]["node"]: float(s["value"][1]) for s in result if float(s["value"][1])}


@pytest.mark.parametrize("count", sorted(COUNTS))
def test_backfilled_counts_equal_the_oracle(go_run: GoRun, count: str) -> None:
    expr = f'sum by (node) ({COUNTS[count]}{{instance="backfill"}})'
    assert _prom_by_node(go_run.history, expr, go_run.end) == _want(go_run, count)


@pytest.mark.parametrize("count", sorted(COUNTS))
def test_live_prometheus_counts_equal_the_oracle(go_run: GoRun, count: str) -> None:
    expr = f'sum by (node) ({COUNTS[count]}{{job="libp2p-exporter"}})'
    assert _prom_by_node(go_run.live, expr, go_run.end) == _want(go_run, count)


def test_backfill_read_each_event_once(go_run: GoRun) -> None:
    s = go_run.backfill_summary
    assert f"{len(go_run.events)} events of {N} traced node(s)" in s, s
    # the PB files and the collector's recording repeat the JSON files' events, all of them
    assert f"{2 * len(go_run.events)} event(s) also in an earlier file" in s, s


def test_the_remote_tracers_events_recorded_in_traceds_form_equal_the_files(go_run: GoRun) -> None:
    """What the Go nodes' RemoteTracers sent, as the collector recorded it in the form tracestat reads
    (traced's gzip), counts the same as the nodes' own PB files."""
    assert go_run.oracle_recorded == go_run.oracle
    recorded = [e for f in go_run.recorded for e in read_trace_file(f)[0]]
    key = lambda e: e.SerializeToString(deterministic=True)  # noqa: E731
    assert Counter(map(key, recorded)) == Counter(map(key, go_run.events))


# -- propagation delay ---------------------------------------------------------------------------


def _oracle_samples(oracle: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The receivers' delays: ns (the oracle's own) and tracestat's ms, less each origin's own delivery."""
    ns, ms = [], []
    for mid, delays in oracle["Ours"]["PerMessageNs"].items():
        origin = oracle["Ours"]["Origin"][mid]
        rounded = oracle["Delays"]["PerMessage"][mid]
        assert len(rounded) == len(delays)
        for d, m in zip(delays, rounded, strict=True):
            assert d["Kind"] == "deliver"  # the earliest stamp, t0, is always the publish
            if d["Peer"] != origin:
                ns.append(d["DelayNs"])
                ms.append(m)
    return ns, ms


def _histogram(values: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> tuple[dict[str, float], float, float]:
    name = "libp2p_pubsub_propagation_delay_seconds"
    buckets = {dict(k)["le"]: v for (n, k), v in values.items() if n == name + "_bucket" and dict(k)["topic"] == TOPIC}
    topic = (("topic", TOPIC),)
    return buckets, values[(name + "_count", topic)], values[(name + "_sum", topic)]


def _check_histogram(go_run: GoRun, buckets: dict[str, float], count: float, total: float) -> None:
    ns, ms = _oracle_samples(go_run.oracle)
    expected = Histogram(PROPAGATION_BUCKETS).observe_all(d / 1e9 for d in ns)
    assert count == expected.count == len(ns) == N * MESSAGES - go_run.summary["rejected"] - MESSAGES
    assert total == pytest.approx(expected.total, abs=1e-9)
    assert buckets == {le: float(c) for le, c in expected.cumulative()}  # exact, from the oracle's ns
    # tracestat's own figures are (ns + 499999) // 1e6 ms: a delay shown as r ms is in (r - 0.5, r + 0.5]
    # ms, so each bucket's count lies between the samples surely and those possibly under its bound
    for le, got in buckets.items():
        if le == "+Inf":
            assert got == len(ms)
            continue
        bound_ms = float(le) * 1000
        surely = sum(1 for m in ms if m + 0.5 <= bound_ms)
        possibly = sum(1 for m in ms if m - 0.5 < bound_ms)
        assert surely <= got <= possibly, (le, surely, got, possibly)


def test_live_propagation_histogram_holds_the_oracles_delays(go_run: GoRun) -> None:
    _check_histogram(go_run, *_histogram(_exposition(go_run.exporter.url)))


def test_backfilled_propagation_histogram_holds_the_oracles_delays(go_run: GoRun) -> None:
    name = "libp2p_pubsub_propagation_delay_seconds"

    def query(expr: str) -> list[dict[str, Any]]:
        return go_run.history.api("query", query=expr, time=f"{go_run.end:.3f}")["result"]

    buckets = {s["metric"]["le"]: float(s["value"][1]) for s in query(f'{name}_bucket{{topic="{TOPIC}"}}')}
    (count,) = (float(s["value"][1]) for s in query(f'{name}_count{{topic="{TOPIC}"}}'))
    (total,) = (float(s["value"][1]) for s in query(f'{name}_sum{{topic="{TOPIC}"}}'))
    _check_histogram(go_run, buckets, count, total)


# -- one trace per message over OTLP ---------------------------------------------------------------


def _hops(deliveries: dict[str, str], origin: str) -> dict[str, int]:
    """node -> hops from the origin, following each node's sender (receivedFrom) back."""
    out = {origin: 0}

    def hop(node: str, seen: int = 0) -> int:
        if node not in out:
            assert seen <= len(deliveries), "a sender cycle"
            out[node] = hop(deliveries[node], seen + 1) + 1
        return out[node]

    for node in deliveries:
        hop(node)
    return out


def test_one_trace_per_message_with_the_tracers_hops_and_delays(go_run: GoRun) -> None:
    events = go_run.events
    kinds = Counter(e.type for e in events)
    want_spans = kinds[T.PUBLISH_MESSAGE] + kinds[T.DELIVER_MESSAGE] + kinds[T.DUPLICATE_MESSAGE]

    def pubsub_spans() -> list[Any]:
        spans = [s for s in go_run.receiver.spans() if s.span.name.startswith("pubsub.")]
        return spans if len(spans) >= want_spans else []

    spans = wait_for(pubsub_spans, 30, f"{want_spans} pubsub spans over OTLP")
    assert len(spans) == want_spans
    publish = {e.publishMessage.messageID.hex(): e for e in events if e.type == T.PUBLISH_MESSAGE}
    delivered: dict[str, dict[str, TraceEvent]] = {}
    for e in events:
        if e.type == T.DELIVER_MESSAGE:
            delivered.setdefault(e.deliverMessage.messageID.hex(), {})[b58(e.peerID)] = e
    roots = {s.span.trace_id: s for s in spans if s.span.name == "pubsub.publish"}
    assert len(roots) == MESSAGES  # one trace per message ...
    by_mid = {r.attrs["messaging.message.id"]: r for r in roots.values()}
    assert set(by_mid) == set(publish)
    timed, hops = 0, []
    for mid, root in by_mid.items():
        pub = publish[mid]
        assert root.attrs["libp2p.peer.id.local"] == b58(pub.peerID) and root.span.start_time_unix_nano == pub.timestamp
        children = [s for s in spans if s.span.trace_id == root.span.trace_id and s.span.name == "pubsub.deliver"]
        # ... across the publishing host and every host that delivered it
        assert {c.attrs["libp2p.peer.id.local"] for c in children} == set(delivered[mid])
        assert all(c.span.parent_span_id == root.span.span_id for c in children)
        span_senders = {c.attrs["libp2p.peer.id.local"]: c.attrs.get("libp2p.peer.id.remote") for c in children}
        event_senders = {n: b58(e.deliverMessage.receivedFrom) for n, e in delivered[mid].items()}
        origin = b58(pub.peerID)
        span_senders.pop(origin), event_senders.pop(origin)
        assert span_senders == event_senders
        assert _hops(span_senders, origin) == _hops(event_senders, origin)
        hops.extend(_hops(event_senders, origin).values())
        for c in children:
            e = delivered[mid][c.attrs["libp2p.peer.id.local"]]
            assert c.span.end_time_unix_nano == e.timestamp
            if "libp2p.pubsub.delay_ms" in c.attrs:  # the publish had reached the exporter first
                timed += 1
                assert c.attrs["libp2p.pubsub.delay_ms"] == (e.timestamp - pub.timestamp) / 1e6
                assert c.span.start_time_unix_nano == pub.timestamp
            else:  # its node's stream brought the delivery before the origin's brought the publish
                assert c.attrs["libp2p.pubsub.publish_seen"] is False
    assert max(hops) >= 2  # the ring: messages crossed several hosts
    assert timed > 0


# -- the pubsub dashboard from the live Prometheus ------------------------------------------------


def test_every_pubsub_panel_has_data_from_the_go_swarm(go_run: GoRun) -> None:
    dash = json.loads(BOARD.read_text())
    window = {"start": f"{go_run.start:.3f}", "end": f"{go_run.end:.3f}"}
    variables = resolve_variables(go_run.live, dash, **window)
    assert len(variables["node"]) == N and variables["topic"] == [TOPIC]
    macros = {"$__rate_interval": "4s", "$__interval": "1s", "$__range": f"{int(go_run.end - go_run.start) + 1}s"}
    checked, failures = panels_without_data(
        go_run.live, BOARD, variables, macros, start=go_run.start, end=go_run.end, step="1", allowed_empty={}
    )
    assert checked >= 14
    assert not failures, "\n".join(failures)
