"""The README keeps the sections a newcomer is promised: every example with its times, the Reference.

A README rewrite once dropped the Examples and Reference sections together with
five others while editing the Benchmarks table; nothing failed.  These tests
name what must stay.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTIONS = ("Examples", "Reference", "Benchmarks", "GPU", "Errors", "Backend and dtype", "gradcheck",
            "ERNN: our choices", "Convergent RNNs and RBP", "Online learning and CycleWorld",
            "Fast weights and associative retrieval")
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))


def _section(title):
    """The text of the README's level-2 section ``title`` (up to the next level-2 heading)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"the README has no '## {title}' section"
    return match.group(1)


@pytest.mark.parametrize("title", SECTIONS)
def test_the_readme_keeps_its_section(title):
    assert _section(title).strip()


def test_examples_are_found():
    assert len(EXAMPLES) >= 7


@pytest.mark.parametrize("script", EXAMPLES)
def test_every_example_has_a_row_in_the_examples_table(script):
    rows = [line for line in _section("Examples").splitlines() if line.startswith(f"| `{script}` |")]
    assert len(rows) == 1, f"{script}: expected one row of the Examples table, found {len(rows)}"
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 5 and all(cells), f"{script}: a row needs script, paper, --quick time, default time, files"


def test_the_reference_section_lists_the_papers_and_their_numbers():
    text = _section("Reference")
    for heading in ("### The papers", "### Where the papers leave a choice, refnet's", "### Published numbers"):
        assert heading in text
