"""Every ``docs/<page>.md#anchor`` (or ``decisions.md#anchor``) that the code cites names a heading
of that page, as GitHub slugs it: a broken link sends the reader nowhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("layers", "verifyfeed_cli", "local", "functions")
# ``docs/decisions.md#a``, and the same page's ``#b`` that may follow: ``decisions.md#a, #b``
_REFERENCE = re.compile(r"(?:docs/)?([a-z][a-z0-9_-]*)\.md(#[A-Za-z0-9_-]+(?:,\s*#[A-Za-z0-9_-]+)*)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(heading) for heading in _HEADING.findall(text)}


def references() -> list[tuple[str, str, str]]:
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in {".py", ".c", ".h", ".pyi"} or ".venv" in path.parts:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for page, cited in _REFERENCE.findall(text):
                for anchor in re.findall(r"#([A-Za-z0-9_-]+)", cited):
                    found.append((str(path.relative_to(ROOT)), page, anchor))
    return found


def test_slug_is_githubs() -> None:
    cases = {
        "Reading a dropped file: the reader's contract": "reading-a-dropped-file-the-readers-contract",
        "The `verifyfeed` command": "the-verifyfeed-command",
        "Hostile files: 54 cases (`test_hostile_files.py`)": "hostile-files-54-cases-test_hostile_filespy",
    }
    for heading, anchor in cases.items():
        assert slug(heading) == anchor


def test_the_code_cites_some_anchors() -> None:
    assert len(references()) > 20


def test_every_cited_anchor_exists() -> None:
    pages: dict[str, set[str]] = {}
    broken = []
    for where, page, anchor in references():
        path = ROOT / "docs" / f"{page}.md"
        if page not in pages:
            pages[page] = anchors(path) if path.is_file() else set()
        if anchor.lower() not in pages[page]:
            broken.append(f"{where}: docs/{page}.md#{anchor}")
    assert not broken, "\n".join(broken)
