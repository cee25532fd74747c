"""refnet.backend: variables, the one door to the array module, the seeded RNG."""
import numpy as np
import pytest

import refnet
from refnet import backend


class _FakeCupyArray:
    """Stands in for a cupy.ndarray: only its module name matters to xp_of's mixing check."""
    __module__ = "cupy._core.core"
    shape = (2, 3)


def test_defaults_are_numpy_float64():
    assert backend.get_xp() is np
    assert backend.get_dtype() == np.float64


def test_float32_variable_sets_the_dtype_of_new_arrays(monkeypatch):
    monkeypatch.setenv("REFNET_DTYPE", "float32")
    assert refnet.rng(0).normal((2, 2)).dtype == np.float32


@pytest.mark.parametrize("variable, value", [("REFNET_BACKEND", "torch"), ("REFNET_DTYPE", "float16")])
def test_unknown_value_names_variable_value_and_choices(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as info:
        backend.get_xp() if variable == "REFNET_BACKEND" else backend.get_dtype()
    message = str(info.value)
    assert variable in message and repr(value) in message
    assert "numpy" in message or "float64" in message


def test_unusable_cupy_fails_loudly_at_first_use(monkeypatch):
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
        pytest.skip("CuPy with a GPU is usable here")
    except Exception:
        pass
    monkeypatch.setenv("REFNET_BACKEND", "cupy")
    with pytest.raises(RuntimeError, match="REFNET_BACKEND='cupy'"):
        refnet.rng(0).normal((2,))


def test_mixing_numpy_and_cupy_is_a_type_error_naming_both():
    with pytest.raises(TypeError, match=r"numpy\.ndarray.*cupy\.ndarray"):
        backend.xp_of(np.zeros(3), _FakeCupyArray())


def test_xp_of_ignores_none_and_scalars():
    assert backend.xp_of(None, 1.0, np.ones(2)) is np
    assert backend.xp_of() is np


def test_rng_is_reproducible_and_backend_independent_in_values():
    a = refnet.rng(7).normal((3, 4))
    b = refnet.rng(7).normal((3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, refnet.rng(8).normal((3, 4)))


def test_rng_rejects_a_non_integer_seed():
    with pytest.raises(TypeError, match="seed"):
        refnet.rng(1.5)


def test_signs_are_plus_minus_one():
    s = refnet.rng(0).signs((1000,))
    assert set(np.unique(s)) == {-1.0, 1.0}


def test_to_numpy_returns_an_ndarray():
    assert isinstance(refnet.to_numpy([1.0, 2.0]), np.ndarray)


def test_rng_dtype_overrides_the_environment():
    r = refnet.rng(0, dtype="float32")
    assert r.normal((2,)).dtype == np.float32 and r.integers(0, 3, (2,)).dtype == np.int64
    assert refnet.IRNN(2, 3).init(refnet.rng(0, dtype=np.float32))["weight_hh"].dtype == np.float32


def test_rng_rejects_an_unsupported_dtype():
    with pytest.raises(ValueError, match="dtype must be one of"):
        refnet.rng(0, dtype="float16")
