"""CI runs what the README claims (.ci/run, setup.cfg, the tests' subprocesses)."""
import ast
import importlib.util
import os
import re
from pathlib import Path

import hypothesis
import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPROCESS_CALLS = {"run", "call", "check_call", "check_output"}


def _readme_test_command():
    commands = re.findall(r"^pip install -e \"\.\[test\]\" && python -m pytest.*$", (ROOT / "README.md").read_text(),
                          flags=re.MULTILINE)
    assert len(commands) == 1, commands
    return commands[0]


def test_ci_runs_the_readme_test_command_verbatim():
    assert _readme_test_command() in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readme_test_command_prints_skip_reasons():
    assert " -rs" in _readme_test_command()


def test_ci_runs_the_whole_matrix_after_the_tests():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "python -m gradcheck" in lines
    assert lines.index("python -m gradcheck") > lines.index(_readme_test_command())


def test_ci_installs_the_optional_peers_whose_tests_would_otherwise_skip():
    install = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                   if line.startswith("pip install --quiet"))
    for package in ("torch==", "jax", "flax", "dask[distributed]", "joblib", "matplotlib", "tqdm", "scikit-learn"):
        assert package in install, package


def test_hypothesis_is_pinned_to_one_version_in_the_test_extra():
    pins = re.findall(r"^\s+hypothesis==(\S+)$", (ROOT / "setup.cfg").read_text(), flags=re.MULTILINE)
    assert pins == [hypothesis.__version__]


def test_every_subprocess_in_the_tests_has_a_timeout():
    # A hung child (a deadlocked example, a cluster that never starts) must fail its test, not CI.
    missing = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"):
                continue
            if node.func.attr == "Popen" or (node.func.attr in SUBPROCESS_CALLS
                                             and "timeout" not in {k.arg for k in node.keywords}):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno} subprocess.{node.func.attr}")
    assert not missing, missing


@pytest.mark.skipif(not os.environ.get("CI"), reason="checks CI's environment; CI is not set here")
@pytest.mark.parametrize("module", ["torch", "jax", "flax", "dask.distributed", "joblib", "threadpoolctl",
                                    "matplotlib", "tqdm", "sklearn"])
def test_in_ci_every_optional_peer_is_importable_so_its_tests_run(module):
    # Their tests skip cleanly when a peer is absent; in CI that would hide them, so CI fails instead.
    assert importlib.util.find_spec(module) is not None, f"CI lacks {module}: its tests would skip"
