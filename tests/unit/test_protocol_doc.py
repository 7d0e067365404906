"""The wire contract is in the repository (docs/protocol.md) and every citation of it lands there.

Code, tests and docs cite it as ``docs/protocol.md`` (from docs/, as a link to ``protocol.md``), with
sections that exist; nothing points at a copy outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
SKIP = ("tests/observer/vendor/", ".venv/", ".gobin/")
CITATION = re.compile(r"(\S*)protocol\.md\)?(?:,? (?:§|sections? )(\d+))?")


def _sources() -> list[Path]:
    out = []
    for pattern in ("**/*.py", "**/*.md", "**/*.go", "**/*.proto", "Makefile"):
        for path in ROOT.glob(pattern):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(SKIP) and path not in (DOC, Path(__file__).resolve()) and path.is_file():
                out.append(path)
    return out


def test_the_contract_has_its_sections() -> None:
    headings = re.findall(r"^## (\d+)\. ", DOC.read_text(), re.M)
    assert headings == [str(n) for n in range(1, 8)], headings
    text = DOC.read_text()
    assert "field number **100**" in text and "5a 00" in text and "0x811c9dc5" in text


def test_every_citation_is_docs_protocol_md_and_its_section_exists() -> None:
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", DOC.read_text(), re.M)}
    wrong: list[str] = []
    cited = 0
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for m in CITATION.finditer(line):
                prefix, section = m.group(1), m.group(2)
                if prefix.endswith(("pubsub_", "go-")) or "observer-toolkit" in prefix:
                    continue
                cited += 1
                in_docs = rel.startswith("docs/") and prefix.endswith("](")
                from_bench = rel == "bench/README.md" and prefix.endswith("](../docs/")
                if not (prefix.endswith("docs/") or in_docs or from_bench):
                    wrong.append(f"{rel}:{line_no}: {line.strip()}")
                if section is not None and int(section) not in sections:
                    wrong.append(f"{rel}:{line_no}: no section {section}: {line.strip()}")
    assert cited > 20  # the check found the citations it is about
    assert not wrong, "\n".join(wrong)
