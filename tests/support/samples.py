"""Finding samples by name and labels: the one lookup every test that reads metrics uses.

A set of samples is a ``Series``: ``{(name, sorted label pairs): value}``, read either from a
Prometheus text exposition (what a scrape returns) or from a hub's collector in process.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter.pipeline.hub import Hub
from tests.support.reference import HubCollector

Key = tuple[str, tuple[tuple[str, str], ...]]
Series = dict[Key, float]


def key(name: str, **labels: str) -> Key:
    """The key of the series ``name`` with exactly these labels."""
    return (name, tuple(sorted(labels.items())))


def series(source: str | bytes | Iterable[Metric]) -> Series:
    """Every sample of an exposition (text or bytes) or of already collected metric families."""
    if isinstance(source, bytes):
        source = source.decode()
    families = text_string_to_metric_families(source) if isinstance(source, str) else source
    return {key(s.name, **s.labels): s.value for fam in families for s in fam.samples}


def hub_series(hub: Hub, nodes: list[str] | None = None) -> Series:
    """What the hub's collector exposes now (for ``nodes`` only when given), read in process."""
    return series(HubCollector(hub, nodes=nodes).collect())


def matching(samples: Series, name: str, **labels: str) -> list[float]:
    """The values of the series named ``name`` whose labels include ``labels``, in exposition order."""
    want = set(labels.items())
    return [v for (n, lbl), v in samples.items() if n == name and want <= set(lbl)]


def total(samples: Series, name: str, **labels: str) -> float:
    """The sum over the series ``matching`` gives (0 when there is none)."""
    return sum(matching(samples, name, **labels))


def value(samples: Series, name: str, **labels: str) -> float | None:
    """The value of the one series with exactly these labels, or None when it is not exposed."""
    return samples.get(key(name, **labels))


def per_label(samples: Series, name: str, label: str) -> dict[str, float]:
    """``name`` summed per value of ``label`` (series without the label count under "")."""
    out: dict[str, float] = {}
    for (n, lbl), v in samples.items():
        if n == name:
            at = dict(lbl).get(label, "")
            out[at] = out.get(at, 0.0) + v
    return out


def totals(samples: Series) -> dict[str, float]:
    """Each sample name summed over all its series."""
    out: dict[str, float] = {}
    for (n, _), v in samples.items():
        out[n] = out.get(n, 0.0) + v
    return out
