"""The observer UI's own data layer reads States carrying the peerstore extension exactly as without it.

The observer's generated protobuf code (2020 schema) knows no field 100 in Subsystems: it must skip it.
The observer's own sample capture is rewritten with a full PeerStore (every field set, lists at the
producer's cap of 64) in every State; the observer must decode the same messages and show the same
connections, streams, DHT peers and events as for the untouched file, with no error.

Runs the observer-toolkit's code vendored in tests/observer/vendor (see tests/support/observer.py).
"""

from __future__ import annotations

from pathlib import Path

from exporter.generator import SyntheticNode
from exporter.model.snapshot import snapshot_of
from exporter.protocol import introspection_pb2 as pb
from exporter.sources.capture import iter_capture, write_capture
from tests.support.observer import KINDS, Reader, inspect_counts
from tests.support.procs import REPO

SAMPLE = REPO / "tests" / "fixtures" / "observer-toolkit" / "sample-1min.mock"


def full_peerstore(seed: int) -> pb.PeerStore:
    """A PeerStore with every field set and both lists at the producer's cap."""
    node = SyntheticNode(connections=200, seed=seed, peerstore=True, peerstore_leak=500)
    for _ in range(3):
        node.step()
    ps = node.state().state.subsystems.peerstore
    for i in range(64 - len(ps.protocols)):
        ps.protocols.add(name=f"/app/protocol-{i}/1.0.0", peers=i + 1)
    for i in range(64 - len(ps.agents)):
        ps.agents.add(name=f"client-{i}/0.{i}.0", peers=i + 1)
    ps.max_records = 2000
    return ps


def with_peerstore(src: Path, dst: Path) -> int:
    messages = []
    states = 0
    for msg in iter_capture(src):
        assert isinstance(msg, pb.ServerMessage), msg
        if msg.WhichOneof("payload") == "state":
            msg.state.subsystems.peerstore.CopyFrom(full_peerstore(states + 1))
            states += 1
        messages.append(msg)
    write_capture(dst, messages)
    return states


def test_the_observer_skips_the_peerstore_extension(observer: Reader, tmp_path: Path) -> None:
    extended = tmp_path / "sample-with-peerstore.mock"
    states = with_peerstore(SAMPLE, extended)
    assert states > 10
    # the extension is really in the file, and we read it back
    read_back = [m for m in iter_capture(extended) if isinstance(m, pb.ServerMessage) and m.HasField("state")]
    assert all(m.state.subsystems.HasField("peerstore") for m in read_back)
    view = snapshot_of(read_back[0].state).peerstore
    assert view is not None and len(view.protocols) == 64 and len(view.agents) == 64 and view.max_records == 2000
    assert extended.stat().st_size > SAMPLE.stat().st_size + states * 1000

    reports = observer(
        [
            {"name": "plain", "kind": "file", "path": str(SAMPLE)},
            {"name": "extended", "kind": "file", "path": str(extended)},
        ]
    )
    plain, ext = reports["plain"], reports["extended"]
    print({"decoded": ext["decoded"], "seen": ext["seen"], "failures": ext["failureCount"]})
    assert ext["failureCount"] == 0, "\n".join(ext["failures"])
    assert ext["consoleErrors"] == [] and ext["leftoverBytes"] == 0
    assert {k: ext["decoded"][k] for k in KINDS} == inspect_counts(extended) == inspect_counts(SAMPLE)
    assert ext["decoded"] == plain["decoded"]
    assert ext["seen"] == plain["seen"]  # the UI shows exactly what it showed without the extension
    assert ext["seen"]["connections"] == 234 and ext["seen"]["events"] == 937
