"""glibc's arenas are capped at start-up, unless the operator set MALLOC_ARENA_MAX."""

from __future__ import annotations

import platform

import pytest

from exporter.app.malloc import limit_arenas


def test_arenas_capped_on_glibc_and_the_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert limit_arenas() is on_glibc
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_arenas() is False
