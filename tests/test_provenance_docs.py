"""Provenance owned by the project (issue 16 item 13): configs, models and tables cite docs/provenance/, never
a folder outside the repository, and every cited section exists."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "provenance"
# Files scanned for citations: every source, config, document and report of the project (not the records)
SCANNED = ["README.md", "ablations", "benchmarks", "configs", "docs", "lightning_modules", "reproduce", "reports",
           "tests"]
SUFFIXES = {".py", ".yaml", ".md"}
OUTSIDE = ("shared" + "/reference", "../" + "shared")  # spelled in parts: this file must not cite them either
CITE = re.compile(r"docs/provenance/(\w+)\.md`{0,2},? (?:sections?) ([\d.]+(?:(?:, | and | / |-)[\d.]+)*)")


def _files():
    for entry in SCANNED:
        path = ROOT / entry
        files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.suffix in SUFFIXES]
        yield from files


def _sections(doc: Path) -> set[str]:
    return {m.group(1).rstrip(".") for m in re.finditer(r"^#{2,3} ([\d.]+) ", doc.read_text(), re.M)}


def test_one_provenance_file_per_paper_with_tags():
    for name in ("README", "spinenet", "rsanet", "smnas", "nats", "conventions"):
        assert (DOCS / f"{name}.md").is_file(), name
    readme = (DOCS / "README.md").read_text()
    for tag in ("paper", "code", "3rd", "derived", "hypothesis", "recalled", "unconfirmed"):
        assert f"**{tag}**" in readme
    for paper in ("spinenet", "rsanet", "smnas", "nats"):
        text = (DOCS / f"{paper}.md").read_text()
        assert "**paper**" in text and "**hypothesis**" in text


@pytest.mark.parametrize("path", list(_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_citation_outside_the_project_and_cited_sections_exist(path):
    text = path.read_text()
    assert not any(o in text for o in OUTSIDE)
    for doc, secs in CITE.findall(text):
        have = _sections(DOCS / f"{doc}.md")
        for sec in re.split(r", | and | / |-", secs):
            assert sec.rstrip(".") in have, f"{path.name} cites docs/provenance/{doc}.md section {sec}"
