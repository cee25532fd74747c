"""The catalogue of bad inputs to gradcheck's public API and CLI: each gets a named error or exit code.

Every case asserts the exception class and that the message names the
argument (or file) that is wrong; the CLI cases assert the exit status and
that stderr names the problem, with no traceback.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcheck import (FixtureError, check_directional, check_grads, compare, compare_grads,
                       directional_derivative, dot_product_test, load_fixture, numerical_gradient, save_fixture,
                       taylor_test, tolerances_for)
from gradcheck.fixture_io import FORMAT, Fixture

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120   # seconds


def f(p):
    return float(np.sum(p["w"] ** 2))


P = {"w": np.array([1.0, -2.0, 0.5])}
G = {"w": 2 * P["w"]}
FIXTURE = Fixture({"format": FORMAT, "version": 1}, {"grads/w": np.ones(3)})

# (id, call, exception class, regex the message must match)
CASES = [
    # check_grads
    ("check_grads empty grads", lambda: check_grads(f, P, {}), ValueError, r"grads must have the keys.*missing \['w'\]"),
    ("check_grads extra key", lambda: check_grads(f, P, dict(G, v=np.ones(1))), ValueError, r"grads.*extra \['v'\]"),
    ("check_grads empty params", lambda: check_grads(f, {}, {}), ValueError, r"params must hold at least one array"),
    ("check_grads params not a dict", lambda: check_grads(f, [1.0], G), TypeError, r"params must be a dict.*list"),
    ("check_grads grads not a dict", lambda: check_grads(f, P, [2.0]), TypeError, r"grads must be a dict.*list"),
    ("check_grads only empty arrays", lambda: check_grads(f, {"w": np.zeros(0)}, {"w": np.zeros(0)}), ValueError,
     r"params must hold at least one entry"),
    ("check_grads shape mismatch", lambda: check_grads(f, P, {"w": np.ones(2)}), ValueError,
     r"grads\['w'\] must have shape \(3,\).*got \(2,\)"),
    ("check_grads f not callable", lambda: check_grads(3, P, G), TypeError, r"f must be callable.*int"),
    ("check_grads f returns an array", lambda: check_grads(lambda p: p["w"] * 2, P, G), TypeError,
     r"f must return a real scalar.*shape \(3,\) from f\(θ\)"),
    ("check_grads f returns a string", lambda: check_grads(lambda p: "1.0", P, G), TypeError,
     r"f must return a real scalar.*str"),
    ("check_grads f returns None", lambda: check_grads(lambda p: None, P, G), TypeError,
     r"f must return a real scalar.*NoneType"),
    ("check_grads f returns complex", lambda: check_grads(lambda p: 1j, P, G), TypeError,
     r"f must return a real scalar.*complex"),
    ("check_grads eps = 0", lambda: check_grads(f, P, G, eps=0.0), ValueError, r"eps must be a finite number > 0, got 0"),
    ("check_grads eps < 0", lambda: check_grads(f, P, G, eps=-1e-6), ValueError, r"eps must be.*-1e-06"),
    ("check_grads eps nan", lambda: check_grads(f, P, G, eps=float("nan")), ValueError, r"eps must be.*nan"),
    ("check_grads rtol < 0", lambda: check_grads(f, P, G, rtol=-1.0), ValueError, r"rtol must be a finite number >= 0"),
    ("check_grads atol string", lambda: check_grads(f, P, G, atol="1e-9"), ValueError, r"atol must be.*'1e-9'"),
    ("check_grads inf in grads", lambda: check_grads(f, P, {"w": np.array([np.inf, 0.0, 0.0])}), ValueError,
     r"grads\['w'\] must be finite, got inf at index \(0,\)"),
    ("check_grads complex params", lambda: check_grads(f, {"w": np.ones(3) * 1j}, G), TypeError,
     r"params\['w'\] must be a real.*complex128"),
    ("check_grads object grads", lambda: check_grads(f, P, {"w": np.array([None, None, None])}), TypeError,
     r"grads\['w'\] must be a real.*object"),
    ("check_grads float16 grads", lambda: check_grads(f, P, {"w": G["w"].astype(np.float16)}), ValueError,
     r"grads have dtype float16.*pass eps, rtol and atol"),
    # check_directional
    ("check_directional n_directions 0", lambda: check_directional(f, P, G, n_directions=0), ValueError,
     r"n_directions must be an int >= 1, got 0"),
    ("check_directional n_directions 1.5", lambda: check_directional(f, P, G, n_directions=1.5), ValueError,
     r"n_directions must be an int >= 1, got 1.5"),
    ("check_directional key mismatch", lambda: check_directional(f, P, {"v": G["w"]}), ValueError,
     r"grads must have the keys.*missing \['w'\]"),
    # taylor_test
    ("taylor_test empty eps", lambda: taylor_test(f, P, G, eps=()), ValueError, r"eps must hold at least two steps"),
    ("taylor_test one eps", lambda: taylor_test(f, P, G, eps=[0.1]), ValueError, r"eps must hold at least two.*got 1"),
    ("taylor_test seed string", lambda: taylor_test(f, P, G, seed="0"), ValueError, r"seed must be an int >= 0"),
    ("check_directional seed -1", lambda: check_directional(f, P, G, seed=-1), ValueError,
     r"seed must be an int >= 0, got -1"),
    ("taylor_test negative eps", lambda: taylor_test(f, P, G, eps=(0.1, -0.05)), ValueError, r"eps must be.*-0.05"),
    ("taylor_test eps not a sequence", lambda: taylor_test(f, P, G, eps=object()), TypeError,
     r"eps must be a sequence"),
    ("taylor_test min_order 0", lambda: taylor_test(f, P, G, min_order=0), ValueError, r"min_order must be.*> 0"),
    ("taylor_test f not callable", lambda: taylor_test(None, P, G), TypeError, r"f must be callable.*NoneType"),
    ("taylor_test shape mismatch", lambda: taylor_test(f, P, {"w": np.ones((3, 1))}), ValueError,
     r"grads\['w'\] must have shape \(3,\)"),
    # compare_grads, dot_product_test
    ("compare_grads rtol None", lambda: compare_grads(G, G, rtol=None), ValueError, r"rtol must be.*None"),
    ("compare_grads empty reference", lambda: compare_grads({}, {}, rtol=1e-6), ValueError,
     r"reference must hold at least one array"),
    ("compare_grads nan reference", lambda: compare_grads(G, {"w": np.full(3, np.nan)}, rtol=1e-6), ValueError,
     r"reference\['w'\] must be finite, got nan"),
    ("compare_grads key mismatch", lambda: compare_grads({"x": G["w"]}, G, rtol=1e-6), ValueError,
     r"grads must have the keys.*missing \['w'\], extra \['x'\]"),
    ("dot_product_test array side", lambda: dot_product_test(np.ones(2), 1.0, rtol=1e-12), TypeError,
     r"u_Jv must be a real scalar"),
    ("dot_product_test rtol < 0", lambda: dot_product_test(1.0, 1.0, rtol=-1e-12), ValueError,
     r"rtol must be a finite number >= 0"),
    # finite differences
    ("numerical_gradient eps 0", lambda: numerical_gradient(f, P, eps=0), ValueError, r"eps must be a finite step > 0"),
    ("directional_derivative direction keys", lambda: directional_derivative(f, P, {"v": np.ones(3)}, eps=1e-6),
     ValueError, r"direction must have the keys \['w'\]"),
    ("directional_derivative direction shape", lambda: directional_derivative(f, P, {"w": np.ones(2)}, eps=1e-6),
     ValueError, r"direction\['w'\] must have shape \(3,\)"),
    # tolerances, compare, fixtures
    ("tolerances_for float16", lambda: tolerances_for(np.float16), ValueError, r"dtype must be one of.*float16"),
    ("tolerances_for nonsense", lambda: tolerances_for("no-such-dtype"), TypeError,
     r"dtype must be a NumPy dtype.*'no-such-dtype'"),
    ("compare candidate not arrays", lambda: compare(FIXTURE, 42), TypeError, r"candidate must be a fixture, a path"),
    ("compare candidate object array", lambda: compare(FIXTURE, {"grads/w": np.array([{}, {}, {}])}), TypeError,
     r"candidate\['grads/w'\] must be a real.*object"),
    ("compare candidate shape", lambda: compare(FIXTURE, {"grads/w": np.ones(4)}), ValueError,
     r"candidate\['grads/w'\] must have shape \(3,\)"),
    ("compare rtol < 0", lambda: compare(FIXTURE, {"grads/w": np.ones(3)}, rtol=-1.0), ValueError,
     r"rtol must be a finite number >= 0"),
    ("compare reference not a fixture", lambda: compare(3.0, {"grads/w": np.ones(3)}), TypeError,
     r"a fixture must be a path or have meta and arrays, got float"),
    ("load_fixture path not a path", lambda: load_fixture(3), TypeError, r"path must be a str or os.PathLike, got int"),
]


@pytest.mark.parametrize("call, error, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_argument_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_catalogue_has_at_least_25_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 25


def test_a_missing_fixture_file_is_named(tmp_path):
    with pytest.raises(FixtureError, match=r"nothing\.npz' does not exist"):
        load_fixture(tmp_path / "nothing")


def test_a_folder_of_two_fixtures_is_named(tmp_path):
    for name in ("a", "b"):
        save_fixture(FIXTURE, tmp_path / name)
    with pytest.raises(FixtureError, match="must hold exactly one fixture"):
        load_fixture(tmp_path)


def test_saving_a_string_array_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"fixture.arrays\['grads/w'\] must be a numeric array"):
        save_fixture(Fixture(FIXTURE.meta, {"grads/w": np.array(["x"])}), tmp_path / "s")


# ---- the CLI -------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gradcheck", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.mark.parametrize("args, needle", [
    (("compare",), "usage"),
    (("compare", "a", "b", "--atol", "x"), "--atol"),
    (("--dtype", "float16"), "invalid choice"),
    (("--cell", "no-such-cell"), "no check matches"),
    (("frobnicate",), "unrecognized arguments"),
], ids=["compare without files", "compare atol not a number", "matrix dtype float16", "matrix unknown cell",
        "unknown subcommand"])
def test_a_bad_command_line_exits_2_and_says_why(args, needle):
    out = _cli(*args)
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr


def test_a_sidecar_that_is_not_json_exits_2_naming_it(tmp_path):
    save_fixture(FIXTURE, tmp_path / "ref")
    (tmp_path / "ref.json").write_text("{oops")
    out = _cli("compare", tmp_path / "ref", tmp_path / "ref")
    assert out.returncode == 2 and "ref.json" in out.stderr and "not valid JSON" in out.stderr
