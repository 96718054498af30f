"""The docs stay true to the repository: a short README, links that lead somewhere, an
architecture page that names exactly the subpackages and layers the code has, and no
citation of a ticket, a rule number or a document a reader cannot open."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
ARCHITECTURE = DOCS / "design" / "architecture.md"
README_LIMIT = 12 * 1024
# Written by the configuration reference generator; until it exists, a link to it is let be.
BANNED = re.compile(r"[Ii]ssue [0-9]+|[Rr]ule [0-9]+|DESIGN\.md|PRODUCT\.md|STYLE\.md|NOTES\.md")
# [text](target) and [text]: target, skipping images' and autolinks' schemes below.
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
CODE_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _links(path: Path) -> list[str]:
    text = CODE_BLOCK.sub("", path.read_text(encoding="utf-8"))
    return [a or b for a, b in LINK.findall(text)]


def _subpackages() -> set[str]:
    return {p.parent.name for p in (REPO / "daemon").glob("*/__init__.py")}


def test_readme_is_a_few_screens() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size:,} bytes; move detail into docs/"


def test_there_are_docs_to_check() -> None:
    assert ARCHITECTURE.is_file()
    assert len(_markdown_files()) > 5


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files_that_exist(page: Path) -> None:
    broken = []
    for link in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", link) or link.startswith("#"):
            continue  # a URL, a mailto:, or a place on the same page
        target = (page.parent / link.split("#", 1)[0]).resolve()
        if not target.exists():
            broken.append(link)
    assert not broken, f"{page.relative_to(REPO)} links to files that do not exist: {broken}"


def _cited_files() -> list[Path]:
    files = _markdown_files()
    for folder, pattern in (("daemon", "*.py"), ("daemon", "*.c"), ("bench", "*.py")):
        files += sorted((REPO / folder).rglob(pattern))
    files += sorted((REPO / "bench").glob("*.md"))
    return files


def test_no_ticket_rule_or_outside_document_is_cited() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in _cited_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BANNED.search(line)
    ]
    assert not found, "say the thing itself instead:\n" + "\n".join(found)


def test_architecture_names_every_subpackage_and_nothing_else() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = set(re.findall(r"daemon/([A-Za-z_][A-Za-z0-9_]*)/", text))
    named |= set(re.findall(r"\bdaemon\.([A-Za-z_][A-Za-z0-9_]*)", text))
    packages = _subpackages()
    assert packages, "no subpackage found under daemon/"
    assert not packages - named, f"architecture.md does not name {sorted(packages - named)}"
    assert not named - packages, f"architecture.md names what is no subpackage: {named - packages}"


def test_architecture_names_every_layer_of_the_import_contract() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = [c for c in contracts if c.get("type") == "layers"]
    assert layers, "pyproject.toml has no layers contract"
    modules = {
        module.strip()
        for contract in layers
        for layer in contract["layers"]
        for module in layer.split("|")
    }
    missing = sorted(m for m in modules if m not in text and f"{m.replace('.', '/')}/" not in text)
    assert not missing, f"architecture.md does not name the layers {missing}"


# A call that logs an event: `log.info("event_name", ...)`, its name the first argument.
LOGGED = re.compile(r"\blog\.(?:debug|info|warning|error|exception|critical)\(\s*\"([a-z_]+)\"")
EVENT_ROW = re.compile(r"^\| `([a-z_]+)` \|", re.MULTILINE)


def test_log_events_page_lists_every_event_the_code_logs_and_no_other() -> None:
    sources = [p.read_text(encoding="utf-8") for p in sorted((REPO / "daemon").rglob("*.py"))]
    logged = {name for text in sources for name in LOGGED.findall(text)}
    listed = set(EVENT_ROW.findall((DOCS / "reference" / "log-events.md").read_text("utf-8")))
    assert logged, "no log call found: the pattern no longer matches the code"
    assert sorted(logged - listed) == [], "logged but not in docs/reference/log-events.md"
    # Some events are named where they are passed on, not logged in place.
    named = {name for name in listed if any(f'"{name}"' in text for text in sources)}
    assert sorted(listed - named) == [], "listed in log-events.md but nowhere in daemon/"


def test_packaging_has_an_spdx_license_and_installs_the_man_page() -> None:
    # `license = {text = ...}` made every `pip install` warn that the table is deprecated.
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    assert isinstance(project["project"]["license"], str)
    data_files = project["tool"]["setuptools"]["data-files"]
    assert data_files["share/man/man1"] == ["docs/dropd.1"]
    assert (DOCS / "dropd.1").is_file()
