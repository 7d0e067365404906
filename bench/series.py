"""Series per node under each histogram profile (issue 12 part 4), counted in the real exposition.

One ``SyntheticNode`` (the same generator as ``bench_core.py``: 50 connections x 3 streams, 10 %
churn per step, peerstore on) is replayed through the standard hub for ``--steps`` States, then its
``/metrics`` block is rendered and every sample carrying the node's ``node`` label is counted, by
family. Exporter-wide families (build info, scrape duration) are not per node and are left out.

    .venv/bin/python bench/series.py                    # default and lean, 300 steps
    .venv/bin/python bench/series.py --steps 600 --connections 200
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.model.histogram_profiles import FAMILIES, PROFILES, profile
from exporter.model.labels import Cardinality
from exporter.sinks.prometheus import Exposition

_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")
_SUFFIX = re.compile(r"_(bucket|count|sum|gcount|gsum|total)$")


def series_by_family(histograms: str, *, connections: int, streams: int, steps: int, seed: int) -> Counter[str]:
    hub = build_hub(Cardinality(histograms=profile(histograms)))
    node = SyntheticNode(connections=connections, streams_per_conn=streams, seed=seed, peerstore=True)
    for msg in node.messages(steps):
        hub.ingest("n", msg)
    body = Exposition(hub, process=False).metrics().decode()
    out: Counter[str] = Counter()
    for line in body.splitlines():
        if line.startswith("#") or 'node="n"' not in line:
            continue
        m = _NAME.match(line)
        if m:
            out[_SUFFIX.sub("", m.group(1))] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the counts here")
    args = ap.parse_args()
    counts = {
        name: series_by_family(
            name, connections=args.connections, streams=args.streams, steps=args.steps, seed=args.seed
        )
        for name in PROFILES
    }
    print(
        f"{args.connections}x{args.streams}, {args.steps} steps, seed {args.seed}; Python {platform.python_version()}"
    )
    print(f"| family | {' | '.join(PROFILES)} |")
    print(f"|---|{'---|' * len(PROFILES)}")
    for family in FAMILIES:
        print(f"| `{family}` | {' | '.join(str(counts[p][family]) for p in PROFILES)} |")
    hist = [sum(c[f] for f in FAMILIES) for c in counts.values()]
    print(f"| histograms (these six) | {' | '.join(str(n) for n in hist)} |")
    print(f"| **all series of the node** | {' | '.join(f'**{sum(c.values())}**' for c in counts.values())} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "counts": counts}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
