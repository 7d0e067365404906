"""Random damage to a capture file: how often does it lose a segment it did not touch?

    .venv/bin/python bench/damage_sweep.py --seed 1 --runs 3000

Each run flips one to three bytes of the observer's capture (tests/fixtures), half of them in segment
headers, decodes the damaged file as ``replay`` does, and counts the intact segments that did not come
out. Prints the runs that lost any (up to three) and the slowest decode (CPU time).
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporter.protocol.framing import SegmentError  # noqa: E402
from exporter.sources.capture import iter_capture_bytes  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "observer-toolkit" / "sample-1min.mock"


def segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every segment of a pristine capture (after its 4-byte file header)."""
    out, pos = [], 4
    while pos < len(data):
        _, length = struct.unpack_from("<II", data, pos)
        out.append((pos, pos + 8 + length))
        pos += 8 + length
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3000)
    args = ap.parse_args()
    pristine = FIXTURE.read_bytes()
    bounds = segments(pristine)
    rng = random.Random(args.seed)
    losing, worst = 0, 0.0
    for _ in range(args.runs):
        raw = bytearray(pristine)
        hits: set[int] = set()
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                hits.add(bounds[rng.randrange(len(bounds))][0] + rng.randrange(8))
            else:
                hits.add(rng.randrange(4, len(raw)))
        for at in hits:
            raw[at] ^= rng.randint(1, 255)
        damaged = {i for i, (a, b) in enumerate(bounds) for at in hits if a <= at < b}
        started = time.process_time()
        got = {m.SerializeToString() for m in iter_capture_bytes(bytes(raw)) if not isinstance(m, SegmentError)}
        worst = max(worst, time.process_time() - started)
        lost = [i for i, (a, b) in enumerate(bounds) if i not in damaged and pristine[a + 8 : b] not in got]
        if lost:
            losing += 1
            if losing <= 3:
                print(f"lost {len(lost)} intact segments; bytes hit {sorted(hits)}, segments hit {sorted(damaged)}")
    print(
        f"{args.runs} runs, {losing} lost intact segments; slowest decode {worst * 1000:.1f} ms CPU "
        f"for {len(pristine):,} bytes ({len(bounds)} segments)"
    )
    return 1 if losing else 0


if __name__ == "__main__":
    raise SystemExit(main())
