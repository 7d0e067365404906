"""prometheus_client collectors (the process's own ``process_*`` metrics) as a block to join.

A handful of samples collected per scrape, so this takes the generic path; the per-node hot path
never goes through prometheus_client.
"""

from __future__ import annotations

from prometheus_client.registry import Collector

from exporter.sinks.exposition.block import Block, BlockWriter


def collector_block(collector: Collector) -> Block:
    """One collection of a prometheus_client collector; samples with timestamps, exemplars or
    native histograms are refused."""
    writer = BlockWriter()
    for metric in collector.collect():
        for s in metric.samples:
            if s.timestamp is not None or s.exemplar is not None or s.native_histogram is not None:
                raise ValueError(f"{s.name}: timestamps, exemplars and native histograms are not rendered")
            writer.sample(metric.name, metric.documentation, metric.type, s.name, s.value, s.labels, metric.unit)
    return writer.finish()
