"""The metric catalogue as data: each family declared once, documented, and enough for every query.

Families are ``Family`` objects declared at the top of the module that writes them
(``exporter/model/catalogue.py``); ``tests/support/catalogue.py`` collects them all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.model.catalogue import Family, Labels, Writer
from exporter.model.histogram import Histogram
from exporter.pipeline.mapper import Mapper
from exporter.pipeline.node import NodeState
from exporter.protocol.framing import decode_segments, encode_segment
from exporter.sinks.prometheus import Exposition
from tests.support.catalogue import METRICS_MD, current_section, declared, families, table
from tests.support.reference import HubCollector

ROOT = Path(__file__).resolve().parents[2]
# A series name in PromQL: libp2p_... not followed by more name characters or a ':' (recording rules).
SERIES = re.compile(r"\blibp2p_[a-zA-Z0-9_]+\b(?!:)")


def test_no_family_is_declared_twice() -> None:
    twice = {name: len(fams) for name, fams in declared().items() if len(fams) > 1}
    assert not twice, f"families declared more than once (declare once, import it): {twice}"
    assert len(families()) > 60  # the walk found the mappers' modules


def test_every_family_is_in_docs_metrics_md() -> None:
    assert current_section() == table(), (
        "docs/metrics.md's catalogue is stale: .venv/bin/python -m tests.support.catalogue"
    )
    text = METRICS_MD.read_text()
    missing = [f.name for f in families() if not any(f"`{s}`" in text for s in f.series())]
    assert not missing


def _expressions(value: object) -> list[str]:
    """Every query string in a dashboard's JSON (panel targets and variables)."""
    if isinstance(value, dict):
        return [
            e
            for k, v in value.items()
            for e in ([v] if k in ("expr", "query", "definition") and isinstance(v, str) else _expressions(v))
        ]
    if isinstance(value, list):
        return [e for v in value for e in _expressions(v)]
    return []


def _queried() -> dict[str, set[str]]:
    """Series names each dashboard and rule file queries."""
    out: dict[str, set[str]] = {}
    for board in sorted((ROOT / "dashboards" / "json").glob("*.json")):
        exprs = _expressions(json.loads(board.read_text()))
        out[board.name] = {m for e in exprs for m in SERIES.findall(e)}
    for rules in sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml")):
        exprs = [line for line in rules.read_text().splitlines() if "expr" in line or line.startswith(" " * 8)]
        out[rules.name] = {m for e in exprs for m in SERIES.findall(e)}
    return out


def test_every_series_the_dashboards_and_rules_query_is_in_the_catalogue() -> None:
    known = {s for f in families() for s in f.series()}
    queried = _queried()
    assert sum(len(names) for names in queried.values()) > 50  # the expressions were found
    missing = {where: sorted(names - known) for where, names in queried.items() if names - known}
    assert not missing, missing


def test_every_written_family_is_declared() -> None:
    """What a real hub writes uses only catalogued families (a family made on the fly would escape the checks)."""
    names = {f.name for f in families()}
    hub = build_hub()
    synthetic = SyntheticNode(connections=10, streams_per_conn=2, buckets=4, seed=3)
    for _ in range(3):
        for msg in decode_segments(encode_segment(synthetic.state())).messages:
            hub.ingest("n", msg)
        synthetic.step()
    collected = HubCollector(hub).collect()
    written = {m.name for m in collected}
    assert written and written <= names, written - names
    # ...with the labels their declaration names (besides the node's own and a histogram's le).
    declared_labels = {f.name: set(f.labels) for f in families()}
    for metric in collected:
        for sample in metric.samples:
            extra = set(sample.labels) - declared_labels[metric.name] - {"node", "le"}
            assert not extra, (metric.name, extra)


def test_model_holds_no_exposition_library() -> None:
    """Families and writers are data and interfaces: prometheus_client belongs to the sinks."""
    import ast

    for path in sorted((ROOT / "exporter" / "model").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] == "prometheus_client" for n in names), path


class _Raising(Mapper):
    """Writes a sample of a family of its own, then fails (a bug in a mapper)."""

    name = "raising"
    FAMILY = Family("test_raising_partial", "gauge", "Written before the failure.")

    def collect(self, acc: object, node: NodeState, out: Writer) -> None:
        out.gauge(self.FAMILY, 1.0)
        raise RuntimeError("a mapper bug")


class _Counting(Writer):
    def __init__(self) -> None:
        self.names: list[str] = []

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self.names.append(family.name)

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self.names.append(family.name)

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        self.names.append(family.name)


def test_a_raising_mapper_is_isolated_and_counted() -> None:
    hub = build_hub()
    synthetic = SyntheticNode(connections=5, streams_per_conn=1, seed=4)
    for msg in decode_segments(encode_segment(synthetic.state())).messages:
        hub.ingest("a", msg)
        hub.ingest("b", msg)
    hub.add_mapper(_Raising(hub.cardinality))
    exp = Exposition(hub, process=False)
    body = exp.metrics().decode()  # the scrape is served
    assert "test_raising_partial" not in body  # what it wrote before failing is left out
    for node in ("a", "b"):  # the other mappers' families are all there, for every node
        assert re.search(rf'^libp2p_connections{{.*node="{node}".*}} \d', body, re.M)
        assert f'libp2p_exporter_up{{node="{node}"}} 1.0' in body
    assert 'libp2p_exporter_mapper_errors_total{mapper="raising"} 2.0' in body  # once per node
    assert 'libp2p_exporter_mapper_errors_total{mapper="swarm"} 0.0' in body
    # The same isolation in any writer (backfill's): nothing of the failed mapper reaches it.
    out = _Counting()
    node = hub.nodes["a"]
    with node.lock:
        hub.write_node(node, out)
    assert "test_raising_partial" not in out.names and "libp2p_connections" in out.names
    assert hub.mapper_errors["raising"] == 3


def test_a_mapper_failing_after_a_fold_drops_only_its_own_families() -> None:
    """The budget's discard works once samples were folded (the held entries, not the plain records)."""
    from exporter.model.budget import FOLDED, Budget

    out = _Counting()
    budget = Budget(out, series_per_family=3, series_per_node=100)
    kept, dropped = Family("kept", "counter", "k"), Family("dropped", "counter", "d")
    for i in range(5):
        budget.counter(kept, 1.0, {"a": str(i)})  # folds past 2 combinations
    mark = budget.mark()
    budget.counter(dropped, 1.0, {"b": "x"})
    budget.discard(mark)
    budget.close()
    assert "dropped" not in out.names
    assert out.names.count("kept") == 3 and out.names[-1] == FOLDED.name  # 2 kept and 'other', then the fold count


class _Unique(Writer):
    """Fails on a label combination written twice in one scope (the Writer contract)."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def _one(self, family: Family, labels: Labels | None) -> None:
        key = (family.name, tuple(sorted((labels or {}).items())))
        assert key not in self.seen, f"written twice in one scope: {key}"
        self.seen.add(key)

    def gauge(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self._one(family, labels)

    def counter(self, family: Family, value: float, labels: Labels | None = None) -> None:
        self._one(family, labels)

    def histogram(self, family: Family, hist: Histogram, labels: Labels | None = None) -> None:
        self._one(family, labels)


def test_every_mapper_writes_each_combination_once() -> None:
    """The budget passes writes on without looking for repeats: every mapper, on churning,
    hostile and recorded input, writes each label combination of a family once per node."""
    from exporter.app.runtime import add_live_metrics
    from exporter.mappers.pubsub import PubsubMetrics
    from exporter.model.labels import Cardinality
    from exporter.pipeline.session import SessionStats
    from exporter.sources.capture import iter_capture
    from exporter.sources.pubsub_trace import read_trace_file
    from tests.support.hostile import combination_state

    def check(hub: object) -> int:
        written = 0
        for node in hub.nodes.values():  # type: ignore[attr-defined]
            for mapper in hub.mappers:  # type: ignore[attr-defined]
                out = _Unique()
                mapper.collect(node.accs[mapper.name], node, out)
                written += len(out.seen)
        return written

    hub = build_hub(Cardinality(protocol_cap=4, other_cap=2))
    add_live_metrics(hub)
    synthetic = SyntheticNode(connections=60, streams_per_conn=3, buckets=12, churn=0.4, seed=7)
    for msg in synthetic.messages(40):
        hub.ingest("churn", msg)
    hub.nodes["churn"].session = SessionStats(url="ws://127.0.0.1:1/", recording=True)
    hub.ingest("hostile", combination_state(2000, closed=False))
    hub.ingest("hostile", combination_state(3000, closed=True))
    for msg in iter_capture(ROOT / "tests" / "fixtures" / "observer-toolkit" / "sample-1min.mock"):
        hub.ingest("fixture", msg)
    assert check(hub) > 4000
    metrics = PubsubMetrics(hub.cardinality)
    for path in sorted((ROOT / "tests" / "fixtures" / "pubsub").glob("node*")):
        metrics.ingest_all(read_trace_file(path)[0])
    out = _Unique()  # each traced node's samples carry its node label, so one check holds them all
    metrics.collect_into(out)
    assert len({key for key in out.seen if dict(key[1]).get("node")}) > 10
