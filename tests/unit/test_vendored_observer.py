"""The vendored observer-toolkit code (tests/observer/vendor, MIT, third-party) is what its checksums say:
the observer tests must run the observer's code as published, never a copy someone edited."""

from __future__ import annotations

import hashlib
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "observer" / "vendor" / "observer-toolkit"


def test_vendored_files_match_their_checksums_and_nothing_is_added() -> None:
    listed = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.removeprefix("./")] = digest
    present = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    assert present == set(listed), f"files not in SHA256SUMS or missing: {present ^ set(listed)}"
    changed = [n for n, d in listed.items() if hashlib.sha256((VENDOR / n).read_bytes()).hexdigest() != d]
    assert changed == [], f"vendored files differ from their recorded checksums: {changed}"
    assert "MIT License" in (VENDOR / "LICENSE").read_text()
