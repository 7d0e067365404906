"""Native histograms against two real Prometheus 2.42 servers scraping the same exporter (issue 24).

One exporter (the churn feeder, ``--histograms.native``) is scraped by a Prometheus with
``--enable-feature=native-histograms`` (it negotiates protobuf and, 2.42 keeping only the native
histogram where both could exist, stores one native series per label combination) and by one without
(it negotiates OpenMetrics and stores the classic buckets). Debian's 2.42 cannot keep both kinds in
one server (``scrape_classic_histograms`` came in 2.45), hence two. Once the node's churn is frozen
both servers hold the same observations, and:

- per histogram family the native server has one series per label combination, the classic one
  (buckets + 3) series per combination, and the counts agree exactly;
- quantiles from the native series fall within the classic bucket holding the classic estimate
  (bucket resolution: the classic estimate is only known to lie in that bucket), widened by one
  native bucket;
- the short-lived share (le=8 on classic, ``histogram_fraction(0, 8, …)`` on native) is the same
  number: 8 s is a native bucket boundary at schema ≥ 0;
- every shipped rule evaluates without error on both.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards.generate import REPO
from exporter.model.histogram_profiles import (
    CONNECTION_AGE,
    CONNECTION_DURATION,
    FAMILIES,
    HANDSHAKE_LATENCY,
    QUERY_DURATION,
    STREAM_DURATION,
    profile,
)
from exporter.model.native import DEFAULT_SCHEMA
from tests.support.procs import Prometheus, scrape_job, start_exporter, start_prometheus, wait_for

RULES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
SEL = 'job="libp2p-exporter"'
NATIVE_WIDTH = 2.0 ** (2.0**-DEFAULT_SCHEMA)  # a native bucket's upper / lower bound


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Prometheus]]:
    work: Path = tmp_path_factory.mktemp("native-prom")
    feeder = start_exporter(
        ["--churn", "0.3", "--interval", "0.5", "--histograms.native"],
        work / "feeder",
        module="tests.support.churn_feeder",
    )
    job = [scrape_job("libp2p-exporter", feeder.port)]
    native = start_prometheus(work / "native", job, rule_files=RULES, features=["native-histograms"])
    classic = start_prometheus(work / "classic", job, rule_files=RULES)
    try:
        for prom in (native, classic):
            wait_for(prom.targets_up, 30, "the feeder target to be up")
        # Closed connections, streams and DHT queries on both, then a frozen population.
        wait_for(
            lambda: all(
                (classic.value(f"sum({f}_count{{{SEL}}})") or 0) >= 5
                and (native.value(f"histogram_count(sum({f}{{{SEL}}}))") or 0) >= 5
                for f in (CONNECTION_DURATION, STREAM_DURATION, QUERY_DURATION)
            ),
            90,
            "closed connections, streams and DHT queries on both servers",
            interval=0.5,
        )
        urllib.request.urlopen(urllib.request.Request(f"{feeder.url}/churn?value=0", method="POST"), timeout=5).read()

        def same_counts() -> bool:
            for family in (CONNECTION_DURATION, HANDSHAKE_LATENCY, STREAM_DURATION, QUERY_DURATION):
                a = classic.value(f"sum({family}_count{{{SEL}}})")
                b = native.value(f"histogram_count(sum({family}{{{SEL}}}))")
                if a is None or a != b:
                    return False
            return True

        # Both servers scraped the frozen node (two equal readings a scrape apart: nothing moving).
        wait_for(same_counts, 30, "both servers to hold the same observations", interval=0.5)
        yield native, classic
    finally:
        classic.stop()
        native.stop()
        feeder.stop()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_native_series_per_label_combination(servers: tuple[Prometheus, Prometheus], family: str) -> None:
    native, classic = servers
    stored = native.query(f"{family}{{{SEL}}}")
    assert stored and all("histogram" in s for s in stored), stored[:1]
    combinations = {tuple(sorted(s["metric"].items())) for s in stored}
    assert len(combinations) == len(stored)
    assert not native.query(f'{{__name__=~"{family}_(bucket|count|sum|gcount|gsum)", {SEL}}}')
    bounds = len(profile().layout(family).buckets)
    suffixes = "gcount|gsum" if family in (CONNECTION_AGE, "libp2p_connection_latency_seconds") else "count|sum"
    classic_series = classic.value(f'count({{__name__=~"{family}_(bucket|{suffixes})", {SEL}}})')
    assert classic_series == len(stored) * (bounds + 3)
    assert not classic.query(f"{family}{{{SEL}}}")


def classic_bucket(bounds: tuple[float, ...], value: float) -> tuple[float, float]:
    lower = 0.0
    for bound in bounds:
        if value <= bound:
            return lower, bound
        lower = bound
    return lower, float("inf")


@pytest.mark.parametrize("family", [CONNECTION_DURATION, HANDSHAKE_LATENCY, STREAM_DURATION, QUERY_DURATION])
@pytest.mark.parametrize("q", [0.5, 0.9])
def test_quantiles_agree_within_bucket_resolution(
    servers: tuple[Prometheus, Prometheus], family: str, q: float
) -> None:
    native, classic = servers
    by_classic = classic.value(f"histogram_quantile({q}, sum by (le) ({family}_bucket{{{SEL}}}))")
    by_native = native.value(f"histogram_quantile({q}, sum({family}{{{SEL}}}))")
    assert by_classic is not None and by_native is not None
    lower, upper = classic_bucket(profile().layout(family).buckets, by_classic)
    assert lower / NATIVE_WIDTH <= by_native <= upper * NATIVE_WIDTH, (
        f"{family} p{q * 100:g}: native {by_native} outside the classic bucket ({lower}, {upper}] "
        f"holding the classic estimate {by_classic}"
    )


def test_short_lived_share_is_the_same_number(servers: tuple[Prometheus, Prometheus]) -> None:
    native, classic = servers
    h = CONNECTION_DURATION
    by_classic = classic.value(f'sum({h}_bucket{{{SEL}, le=~"8(\\\\.0)?"}}) / sum({h}_count{{{SEL}}})')
    by_native = native.value(f"histogram_fraction(0, 8, sum({h}{{{SEL}}}))")
    assert by_classic is not None and 0 < by_classic < 1
    assert by_native == pytest.approx(by_classic, rel=1e-9)


def test_every_rule_evaluates_on_both(servers: tuple[Prometheus, Prometheus]) -> None:
    for prom in servers:

        def evaluated(prom: Prometheus = prom) -> list[dict[str, object]]:
            rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
            return rules if rules and all(str(r.get("lastEvaluation", "")).startswith("2") for r in rules) else []

        wait_for(lambda: bool(evaluated()), 20, "every rule to be evaluated once")
        bad = [f"{r['name']}: {r.get('lastError')}" for r in evaluated() if r["health"] != "ok"]
        assert not bad, "\n".join(bad)
