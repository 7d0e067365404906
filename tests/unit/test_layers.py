"""The package's import graph: no cycles anywhere in ``exporter/``, and every import points down a layer.

The graph is read from the source with ``ast``: module-level, ``TYPE_CHECKING`` and function-local
imports all count, so a cycle cannot hide behind a late import. Layers, lowest first::

    protocol, settings  <-  model  <-  pipeline  <-  mappers | sources | sinks  <-  server  <-  app
    web_config  <-  web_auth  <-  server;  logs (a leaf anyone may import)

``mappers``, ``sources`` and ``sinks`` sit side by side and never import each other. The producer
side (``introspector``, ``generator``) builds on the protocol alone. Only ``app`` (the composition
root) imports across layers, and nothing imports ``app``.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "exporter"

# Which layers each layer may import (besides itself). A layer is the first dotted part below
# ``exporter`` (``exporter.sinks.otel.spans`` is in ``sinks``); ``__init__``/``__main__`` are the package.
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "settings": {"protocol"},
    "model": {"protocol", "settings"},
    "pipeline": {"protocol", "settings", "model"},
    "mappers": {"protocol", "settings", "model", "pipeline"},
    "sources": {"protocol", "settings", "model", "pipeline", "selfaddr"},
    "sinks": {"protocol", "settings", "model", "pipeline"},
    "server": {"protocol", "settings", "model", "pipeline", "sinks", "web_config", "web_auth", "selfaddr"},
    # --web.config.file: parsing and TLS (a leaf), and the middleware the server installs from it.
    "web_config": {"certdates"},
    "certdates": {"model"},  # the certificates' dates: read, warned about, exported (their Family)
    # Whether an address reaches this exporter's own listener: /probe's self check (a leaf).
    "selfaddr": set(),
    "web_auth": {"web_config"},
    # Log format and rate limiting: a leaf every layer may log through.
    "logs": set(),
    "files": set(),  # new recording and journal files that never overwrite (a leaf, like logs)
    "introspector": {"protocol"},
    "generator": {"protocol"},
    "app": {
        "protocol",
        "settings",
        "model",
        "pipeline",
        "mappers",
        "sources",
        "sinks",
        "server",
        "web_config",
        "selfaddr",
        "introspector",
        "generator",
    },
    "__main__": {"app"},
}
# Generated code, the package's own __init__ (its version string) and the log helpers are leaves
# everyone may use.
ANYONE = {"exporter", "exporter.protocol.introspection_pb2", "exporter.logs", "exporter.files"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> Iterator[str]:
    """Every ``exporter`` module ``path`` imports, wherever the import statement sits."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "exporter" or target.startswith("exporter."):
                while target not in known and "." in target:
                    target = target.rpartition(".")[0]
                yield target


@functools.cache
def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: set(imports_of(path, name, known)) - {name} for name, path in mods.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "exporter"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(mod: str) -> list[str] | None:
        state[mod] = 1
        path.append(mod)
        for dep in sorted(edges.get(mod, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[mod] = 2
        return None

    for mod in sorted(edges):
        if mod not in state and (cycle := visit(mod)):
            return cycle
    return None


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "exporter.app.cli" in edges["exporter.__main__"]
    assert "exporter.pipeline.hub" in edges["exporter.sinks.prometheus"]
    # A function-local import counts like any other.
    assert "exporter.introspector.libp2p_provider" in edges["exporter.app.demo_swarm"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_import_points_down_a_layer() -> None:
    wrong = []
    for mod, deps in graph().items():
        own = layer(mod)
        if own == "exporter":  # the package's __init__: nothing but its version
            assert not deps, deps
            continue
        assert own in ALLOWED, f"{mod}: module outside every layer; add it to ALLOWED in {__file__}"
        for dep in deps:
            if dep in ANYONE or layer(dep) == own:
                continue
            if layer(dep) not in ALLOWED[own]:
                wrong.append(f"{mod} imports {dep}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_the_console_script_and_python_m_reach_the_cli() -> None:
    """``libp2p-exporter`` (pyproject) and ``python -m exporter`` both start the app's ``main``."""
    import importlib
    import re

    from exporter.app.cli import main

    found = re.search(r'^libp2p-exporter = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert found, "pyproject.toml names no libp2p-exporter script"
    target = found.group(1)
    module, _, attr = target.partition(":")
    assert getattr(importlib.import_module(module), attr) is main
    assert "exporter.app.cli" in graph()["exporter.__main__"]


MAX_MODULE_LINES = 500  # issue 10: a module a reader can hold; generated protobuf code is exempt


def test_no_hand_written_module_is_over_the_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in PACKAGE.rglob("*.py")
        if not path.name.endswith(("_pb2.py", "_pb2.pyi"))
        and (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"
