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


AREAS = ("refnet/cells/", "refnet/algorithms/", "refnet/kernels/", "refnet/solvers/", "refnet/optim.py",
         "refnet/heads")
# the gradient modules merged after the first list (SnAp, RFLO, the leaky cell, the solver layer): each keeps slips
GRADIENT_MODULES = ("refnet/cells/leaky.py", "refnet/algorithms/snap.py", "refnet/algorithms/rflo.py",
                    "refnet/algorithms/traces.py", "refnet/kernels/traces.py", "refnet/algorithms/rbp.py",
                    "refnet/solvers/linear.py", "refnet/solvers/operators.py", "refnet/cells/ernn_exact.py")


def test_there_are_at_least_100_slips_across_every_area_and_gradient_module():
    where = Counter(next((area for area in AREAS if s.path.startswith(area)), s.path) for s in slips.SLIPS)
    assert len(slips.SLIPS) >= 100
    assert all(where[area] >= 1 for area in AREAS), where
    paths = Counter(s.path for s in slips.SLIPS)
    assert all(paths[module] >= 1 for module in GRADIENT_MODULES), paths


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


_STUB_MATRIX = '''
from types import SimpleNamespace as Row
FAILING = {failing!r}

def checks():
    return [Row(cell="c", algorithm=name, relation="r") for name in ("a", "b", "c")]

def run_check(check):
    # every row passes WITH a reason (as the kink-detection row does), unless named in FAILING
    passed = check.algorithm not in FAILING
    return Row(cell=check.cell, algorithm=check.algorithm, relation=check.relation, passed=passed,
               verdict="pass: a reason" if passed else "FAIL: wrong", detail="d")
'''


def _stub_tree(root, failing):
    for package in ("refnet", "gradcheck"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "gradcheck" / "matrix").mkdir()
    (root / "gradcheck" / "matrix" / "__init__.py").write_text(_STUB_MATRIX.format(failing=tuple(failing)))
    return root


@pytest.mark.parametrize("failing, killed, rows_run", [((), False, 3), (("b",), True, 2)])
def test_the_runner_reads_each_rows_verdict_a_pass_with_a_reason_is_a_pass(tmp_path, monkeypatch, failing, killed,
                                                                          rows_run):
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    runner = importlib.import_module("mutation.__main__")
    result = runner._run_matrix(_stub_tree(tmp_path / "tree", failing), (), tmp_path / "cache")
    assert (result["killed"], result["rows_run"]) == (killed, rows_run), result
    assert result["by"] == ("c b: r" if killed else None)
