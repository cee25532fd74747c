"""Docstrings, comments, printed headers and the README cite the papers or the README, never a file outside the repository.

The equations and published numbers refnet follows are in the README's
"Reference" section; the notes and paper extractions they were first taken
from are not part of the repository, so naming them leaves a reader with a
dead end.  The forbidden names are assembled here from pieces so that this
file does not trip its own check.
"""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("REFERENCE" + ".md", "papers" + "/")
CHECKED = ("refnet", "gradcheck", "examples", "tests", "README.md")


def _tracked_files():
    """Files git tracks (or would: new, not ignored) under the checked folders; every file there without git."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *CHECKED], cwd=ROOT, capture_output=True,
                                check=True, timeout=60).stdout.decode().split("\0")
        files = [ROOT / name for name in listed if name]
    except (OSError, subprocess.SubprocessError):
        files = [p for top in CHECKED for p in ([ROOT / top] if top.endswith(".md") else (ROOT / top).rglob("*"))]
    return [p for p in files if p.is_file()]


def test_the_checked_files_are_found():
    files = {p.relative_to(ROOT).as_posix() for p in _tracked_files()}
    assert {"README.md", "refnet/__init__.py", "examples/_cli.py", "tests/test_citations.py"} <= files


def citations_outside(path):
    """The lines of ``path`` that name a forbidden file, as "path:line: text" (none for binary files)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []               # binary files (fixtures, images) carry no citations
    return [f"{path.name}:{number}: {line.strip()}" for number, line in enumerate(text.splitlines(), 1)
            if any(name in line for name in FORBIDDEN)]


def test_no_tracked_file_cites_files_outside_the_repository():
    offending = [hit for path in _tracked_files() for hit in citations_outside(path)]
    assert not offending, "cite the paper (author, year, equation) or the README's Reference section:\n" + \
        "\n".join(offending)


@pytest.mark.parametrize("name", FORBIDDEN)
def test_a_planted_citation_is_found(name, tmp_path):
    planted = tmp_path / "module.py"
    planted.write_text(f'"""The cell.\n\nSee {name} for the equations."""\n', encoding="utf-8")
    assert citations_outside(planted) == [f"module.py:3: See {name} for the equations.\"\"\""]
