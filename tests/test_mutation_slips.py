"""tests/mutation: the slip list stays applicable to the current source, so the mutation test cannot rot.

The mutation run itself (``nice -n 19 python -m tests.mutation``) is slow and not part of the
default run; these checks are cheap and are.
"""
import ast
import importlib
import importlib.util
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_mutation_{name}", ROOT / "tests" / "mutation" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slips = _load("slips")


@pytest.mark.parametrize("slip", slips.SLIPS, ids=[f"{s.path}: {s.what}" for s in slips.SLIPS])
def test_each_slip_finds_its_text_exactly_once_and_still_parses(slip):
    source = (ROOT / slip.path).read_text()
    assert source.count(slip.search) == 1, f"{slip.path} holds the slip's text {source.count(slip.search)} times"
    assert slip.replace != slip.search
    ast.parse(source.replace(slip.search, slip.replace))   # a slip is a wrong program, not a broken one


def test_there_are_at_least_40_slips_across_cells_algorithms_kernels_optim_and_heads():
    where = Counter(next((area for area in ("refnet/cells/", "refnet/algorithms/", "refnet/kernels/",
                                            "refnet/optim.py", "refnet/heads") if s.path.startswith(area)), s.path)
                    for s in slips.SLIPS)
    assert len(slips.SLIPS) >= 40
    assert all(where[area] >= 1 for area in ("refnet/cells/", "refnet/algorithms/", "refnet/kernels/",
                                             "refnet/optim.py", "refnet/heads")), where


def test_slips_are_distinct_and_every_mutated_file_has_rows_to_run_first():
    assert len({(s.path, s.search) for s in slips.SLIPS}) == len(slips.SLIPS)
    assert {s.path for s in slips.SLIPS} <= set(slips.PRIORITY)


def test_the_runner_mutates_a_temporary_copy_never_the_tree(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    runner = importlib.import_module("mutation.__main__")
    runner._copy_tree(tmp_path)
    slip = slips.SLIPS[0]
    before = (ROOT / slip.path).read_text()
    copy = tmp_path / slip.path
    copy.write_text(copy.read_text().replace(slip.search, slip.replace))
    assert (ROOT / slip.path).read_text() == before and slip.replace in copy.read_text()
