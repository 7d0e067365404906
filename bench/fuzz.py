"""Fuzz the consumer: mutated wire frames and capture files through decode → hub → /metrics exposition.

    python -m bench.fuzz --seconds 3600            # on demand, for hours (``make fuzz``)
    python -m bench.fuzz --inputs 150 --seed 1     # what CI runs (tests/integration/test_fuzz.py), deterministic

Inputs start from deterministic synthetic nodes (``exporter.generator``): whole frames, batches of
segments and capture files. Mutations are byte-level (flips, interesting bytes, inserts, deletes,
splices, truncation, resync bombs of repeated headers, huge lengths) and structure-aware (protobuf
fields set to extreme numbers and hostile strings, repeated fields multiplied, then re-framed with a
valid checksum, so damage reaches the protobuf parser and the mappers, not only the checksum).

Invariants, each a failure with the input saved: no exception escapes decoding, ingest or
rendering; counters in the exposition never decrease; series per node stay under a bound. CPU per
input byte is measured and reported (and, with ``--max-cpu-per-mib``, checked: never in CI, where
timing depends on the machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from prometheus_client.parser import text_string_to_metric_families

from exporter.app.runtime import build_hub
from exporter.generator import SyntheticNode
from exporter.protocol import introspection_pb2 as pb
from exporter.protocol.framing import PROTOCOL_VERSION, decode_segments, encode_file_segment, encode_segment
from tests.support.reference import HubCollector, render


def new_hub() -> Any:
    """The hub replay builds: the standard mappers and label caps."""
    return build_hub(live=False)


HOSTILE_STRINGS = [
    "",
    "\n",
    "line\nts=0 level=error msg=forged",
    "\x00\x01\x1b[31m",
    "\u2028\u2029",
    "\ud7ff\ufffd\U0010ffff",
    "x" * 70_000,
    "/ipfs/id/1.0.0",
    "%0A%00",
    'a"b\\c',
]
INT_EXTREMES = [0, 1, -1, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63), 2**64 - 1]
FLOAT_EXTREMES = [0.0, -0.0, 1e308, -1e308, math.inf, -math.inf, math.nan, 5e-324]


@dataclass
class Stats:
    inputs: int = 0
    bytes: int = 0
    crashes: int = 0
    violations: int = 0
    decoded: int = 0
    segment_errors: int = 0
    worst_cpu_per_mib: float = 0.0  # over inputs of at least 64 KiB
    worst_cpu_input_bytes: int = 0
    worst_cpu_per_mib_large: float = 0.0  # over inputs of at least 1 MiB (resync bombs, big captures)
    max_series_per_node: int = 0
    resilience_checks: int = 0  # one-byte flips of valid inputs checked to lose only the segment hit
    counter_series: int = 0  # counter series whose value was compared from one check to the next
    renders: int = 0
    seconds: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def _seeds(rng: random.Random) -> list[tuple[str, bytes]]:
    """Valid frames and capture files from synthetic nodes of a few sizes."""
    out: list[tuple[str, bytes]] = []
    for seed, conns in ((rng.randrange(1 << 30), 5), (rng.randrange(1 << 30), 40)):
        node = SyntheticNode(connections=conns, streams_per_conn=2, buckets=4, seed=seed)
        msgs = list(node.messages(steps=4))
        out.extend(("wire", encode_segment(m)) for m in msgs)
        out.append(("wire", b"".join(encode_segment(m) for m in msgs)))
        out.append(("file", PROTOCOL_VERSION.to_bytes(4, "little") + b"".join(encode_file_segment(m) for m in msgs)))
    return out


# -- mutations ------------------------------------------------------------------------------------
def _flip(rng: random.Random, d: bytearray) -> None:
    for _ in range(rng.randint(1, 8)):
        if d:
            d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)


def _interesting(rng: random.Random, d: bytearray) -> None:
    if d:
        d[rng.randrange(len(d))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF])


def _insert(rng: random.Random, d: bytearray) -> None:
    d[rng.randint(0, len(d)) : rng.randint(0, len(d))] = rng.randbytes(rng.choice([1, 4, 64, 4096]))


def _delete(rng: random.Random, d: bytearray) -> None:
    if d:
        start = rng.randrange(len(d))
        del d[start : start + rng.choice([1, 4, 100, 10_000])]


def _duplicate(rng: random.Random, d: bytearray) -> None:
    if d:
        start = rng.randrange(len(d))
        chunk = d[start : start + rng.randint(1, 2000)]
        d[start:start] = chunk * rng.randint(1, 20)


def _truncate(rng: random.Random, d: bytearray) -> None:
    del d[rng.randint(0, len(d)) :]


def _bomb(rng: random.Random, d: bytearray) -> None:
    """Resync bombs: a run of something that looks like a header at nearly every offset."""
    unit = rng.choice([b"\x01\x00\x00\x00", b"\x00", b"\x07\x00", (1).to_bytes(4, "little") * 3])
    d[rng.randint(0, len(d)) : rng.randint(0, len(d))] = unit * (rng.choice([1 << 10, 1 << 16, 1 << 20]) // len(unit))


def _length(rng: random.Random, d: bytearray) -> None:
    if len(d) >= 12:
        pos = rng.choice([0, 4, 8, rng.randrange(len(d) - 4)])
        d[pos : pos + 4] = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(d), len(d) + 1]).to_bytes(4, "little")


BYTE_MUTATORS: list[Callable[[random.Random, bytearray], None]] = [
    _flip,
    _interesting,
    _insert,
    _delete,
    _duplicate,
    _truncate,
    _bomb,
    _length,
]


def _mutate_message(rng: random.Random, msg: Message, depth: int = 0) -> None:
    """Set one field somewhere in ``msg`` to something hostile; repeated message fields may multiply."""
    fields = msg.DESCRIPTOR.fields
    if not fields or depth > 8:
        return
    fd = rng.choice(fields)
    repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == FieldDescriptor.LABEL_REPEATED
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        if repeated:
            items = getattr(msg, fd.name)
            if len(items) and rng.random() < 0.3:  # many copies, each changed a little: label combinations
                for _ in range(rng.choice([10, 100, 1000])):
                    copy = items.add()
                    copy.CopyFrom(items[rng.randrange(len(items))])
                    _mutate_message(rng, copy, depth + 1)
                return
            child = items[rng.randrange(len(items))] if len(items) else items.add()
        else:
            child = getattr(msg, fd.name)
        _mutate_message(rng, child, depth + 1)
        return
    value: Any
    if fd.type == FieldDescriptor.TYPE_STRING:
        value = (
            rng.choice(HOSTILE_STRINGS)
            if rng.random() < 0.7
            else "".join(chr(rng.randrange(1, 0x3000)) for _ in range(8))
        )
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        value = rng.randbytes(rng.choice([0, 1, 32, 1000]))
    elif fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        value = rng.choice(FLOAT_EXTREMES)
    elif fd.type == FieldDescriptor.TYPE_BOOL:
        value = rng.random() < 0.5
    elif fd.type == FieldDescriptor.TYPE_ENUM:
        value = rng.choice([0, 1, 2, 99, -1])
    else:
        value = rng.choice(INT_EXTREMES)
    try:
        if repeated:
            getattr(msg, fd.name).append(value)
        else:
            setattr(msg, fd.name, value)
    except (ValueError, TypeError, OverflowError):  # out of the field's range: a narrower extreme
        pass


def _structured(rng: random.Random, data: bytes, kind: str) -> bytes:
    """Decode the valid input, mutate messages, frame them again with valid checksums."""
    body = data[4:] if kind == "file" else data
    msgs = decode_segments(body, versioned=kind == "wire").messages
    if not msgs:
        return data
    for _ in range(rng.randint(1, 4)):
        _mutate_message(rng, rng.choice(msgs))
    if kind == "file":
        return data[:4] + b"".join(encode_file_segment(m) for m in msgs)
    return b"".join(encode_segment(m) for m in msgs)


def mutate(rng: random.Random, seeds: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    kind = rng.choice(["wire", "file"])
    data = rng.choice([d for k, d in seeds if k == kind])
    if rng.random() < 0.4:
        data = _structured(rng, data, kind)
    buf = bytearray(data)
    for _ in range(rng.choice([0, 1, 1, 2, 4])):
        if rng.random() < 0.1:  # splice with another seed of the same kind
            other = rng.choice([d for k, d in seeds if k == kind])
            cut = rng.randint(0, len(buf))
            buf[cut:] = other[rng.randint(0, len(other)) :]
        else:
            rng.choice(BYTE_MUTATORS)(rng, buf)
    return kind, bytes(buf)


# -- resilience: damage loses only what it touches ------------------------------------------------------
def _messages_of(kind: str, data: bytes) -> list[pb.ServerMessage]:
    if kind == "file":
        from exporter.sources.capture import iter_capture_bytes

        return [m for m in iter_capture_bytes(data) if isinstance(m, pb.ServerMessage)]
    return decode_segments(data, versioned=True).messages


def resilience_problem(rng: random.Random, kind: str, msgs: list[pb.ServerMessage]) -> str | None:
    """Flip one byte of a valid multi-segment input: every segment it did not touch must still decode."""
    enc = encode_file_segment if kind == "file" else encode_segment
    segs = [enc(m) for m in msgs]
    head = PROTOCOL_VERSION.to_bytes(4, "little") if kind == "file" else b""
    data = bytearray(head + b"".join(segs))
    if rng.random() < 0.5:  # a header byte (version, length, checksum): the framing's own decisions
        start = len(head) + sum(len(seg) for seg in segs[: rng.randrange(len(segs))])
        pos = start + rng.randrange(12 if kind == "wire" else 8)
    else:
        pos = rng.randrange(len(data))
    data[pos] ^= rng.randint(1, 255)
    got = {m.SerializeToString() for m in _messages_of(kind, bytes(data))}
    start = len(head)
    lost = []
    for k, (seg, msg) in enumerate(zip(segs, msgs)):
        touched = start <= pos < start + len(seg)
        if not touched and msg.SerializeToString() not in got:
            lost.append(k)
        start += len(seg)
    if lost:
        return f"flipping byte {pos} of a {len(data)}-byte {kind} input ({len(segs)} segments) lost intact segment(s) {lost}"
    return None


# -- running --------------------------------------------------------------------------------------
class Harness:
    """One hub fed by every input (spread over a few hostile nodes), checked after each."""

    def __init__(self, nodes: int = 4, series_limit: int = 50_000, crash_dir: Path | None = None) -> None:
        self.hub = new_hub()
        self.collector = HubCollector(self.hub)
        self.nodes = [f"fuzz-{i}" for i in range(nodes)]
        self.series_limit = series_limit
        self.crash_dir = crash_dir
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.stats = Stats()

    def _fail(self, what: str, kind: str, data: bytes, detail: str) -> None:
        digest = hashlib.sha1(data).hexdigest()[:16]
        where = ""
        if self.crash_dir is not None:
            self.crash_dir.mkdir(parents=True, exist_ok=True)
            path = self.crash_dir / f"{what}-{kind}-{digest}.bin"
            path.write_bytes(data)
            where = f" (input saved to {path})"
        self.stats.failures.append(f"{what} on a {kind} input of {len(data)} bytes{where}: {detail}")

    def feed(self, kind: str, data: bytes, node: str) -> None:
        """Decode and ingest one input the way the live session (wire) or replay (file) does."""
        from exporter.sources.capture import iter_capture_bytes

        if kind == "wire":
            result = decode_segments(data, versioned=True)
            items: list[Any] = [*result.errors, *result.messages]
        else:
            items = list(iter_capture_bytes(data))
        for item in items:
            if isinstance(item, pb.ServerMessage):
                self.stats.decoded += 1
                self.hub.ingest(node, item)
            else:
                self.stats.segment_errors += 1
                self.hub.errors(node, [item])

    def check_exposition(self) -> None:
        """Counters never decrease; series per node under the limit."""
        body, _ = render(self.collector)
        self.stats.renders += 1
        per_node: Counter[str] = Counter()
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                node = sample.labels.get("node", "")
                per_node[node] += 1
                if family.type == "counter" and sample.name.endswith("_total"):
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    before = self.counters.get(key)
                    if before is not None and sample.value < before:
                        raise AssertionError(
                            f"counter {sample.name}{dict(key[1])} went from {before} to {sample.value}"
                        )
                    self.counters[key] = sample.value
        self.stats.counter_series = len(self.counters)
        worst = max((n for name, n in per_node.items() if name in self.nodes), default=0)
        self.stats.max_series_per_node = max(self.stats.max_series_per_node, worst)
        if worst > self.series_limit:
            raise AssertionError(f"{worst} series for one node, over the limit of {self.series_limit}")

    def one(self, kind: str, data: bytes, node: str, check: bool) -> None:
        st = self.stats
        st.inputs += 1
        st.bytes += len(data)
        st.kinds[kind] += 1
        cpu = time.process_time()
        try:
            self.feed(kind, data, node)
        except Exception:
            st.crashes += 1
            self._fail("crash", kind, data, traceback.format_exc(limit=3).strip().splitlines()[-1])
            return
        spent = time.process_time() - cpu
        if len(data) >= 64 * 1024:
            per_mib = spent / (len(data) / (1 << 20))
            if per_mib > st.worst_cpu_per_mib:
                st.worst_cpu_per_mib, st.worst_cpu_input_bytes = per_mib, len(data)
            if len(data) >= 1 << 20:
                st.worst_cpu_per_mib_large = max(st.worst_cpu_per_mib_large, per_mib)
        if check:
            try:
                self.check_exposition()
            except AssertionError as exc:
                st.violations += 1
                self._fail("invariant", kind, data, str(exc))
            except Exception:
                st.crashes += 1
                self._fail("render crash", kind, data, traceback.format_exc(limit=3).strip().splitlines()[-1])


def run(
    *,
    seed: int = 1,
    inputs: int | None = None,
    seconds: float | None = None,
    check_every: int = 10,
    series_limit: int = 50_000,
    crash_dir: Path | None = None,
) -> Stats:
    """Fuzz until ``inputs`` inputs or ``seconds`` seconds (whichever comes first)."""
    rng = random.Random(seed)
    seeds = _seeds(rng)
    harness = Harness(series_limit=series_limit, crash_dir=crash_dir)
    batches = [(k, msgs) for k, d in seeds if len(msgs := _messages_of(k, d)) > 1]
    start = time.monotonic()
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)  # a hostile input is logged by design; millions of lines are not the point
    try:
        i = 0
        while (inputs is None or i < inputs) and (seconds is None or time.monotonic() - start < seconds):
            kind, data = mutate(rng, seeds)
            harness.one(kind, data, harness.nodes[i % len(harness.nodes)], check=i % check_every == check_every - 1)
            if i % 4 == 0:
                batch_kind, msgs = rng.choice(batches)
                harness.stats.resilience_checks += 1
                problem = resilience_problem(rng, batch_kind, msgs)
                if problem is not None:
                    harness.stats.violations += 1
                    harness.stats.failures.append(f"invariant: {problem}")
            i += 1
        harness.check_exposition()
    finally:
        logging.disable(previous)
    harness.stats.seconds = time.monotonic() - start
    return harness.stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--inputs", type=int, default=None, help="stop after this many inputs")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default 60 without --inputs)")
    p.add_argument("--check-every", type=int, default=10, help="render and check the exposition every N inputs")
    p.add_argument("--series-limit", type=int, default=50_000, help="series one node may have before it is a failure")
    p.add_argument("--max-cpu-per-mib", type=float, default=None, help="fail when an input costs more CPU s/MiB")
    p.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    args = p.parse_args(argv)
    if args.inputs is None and args.seconds is None:
        args.seconds = 60.0
    stats = run(
        seed=args.seed,
        inputs=args.inputs,
        seconds=args.seconds,
        check_every=args.check_every,
        series_limit=args.series_limit,
        crash_dir=args.crash_dir,
    )
    report: dict[str, Any] = {"seed": args.seed}  # rerun with --seed to get the same inputs
    report.update({k: v for k, v in vars(stats).items() if k != "failures"})
    report["kinds"] = dict(stats.kinds)
    report["worst_cpu_per_mib"] = round(stats.worst_cpu_per_mib, 4)
    report["worst_cpu_per_mib_large"] = round(stats.worst_cpu_per_mib_large, 4)
    report["seconds"] = round(stats.seconds, 1)
    print(json.dumps(report, indent=1))
    for failure in stats.failures[:20]:
        print("FAIL", failure, file=sys.stderr)
    slow = args.max_cpu_per_mib is not None and stats.worst_cpu_per_mib > args.max_cpu_per_mib
    if slow:
        print(f"FAIL worst CPU {stats.worst_cpu_per_mib:.3f} s/MiB over {args.max_cpu_per_mib}", file=sys.stderr)
    return 1 if stats.failures or slow else 0


if __name__ == "__main__":
    sys.exit(main())
