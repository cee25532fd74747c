"""refnet.cells.layer_norm: LN over the hidden units, its VJP and JVP."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads, dot_product_test
from refnet.cells.layer_norm import EPS, ln, ln_jvp, ln_vjp


def _point(B, n, seed):
    r = refnet.rng(seed)
    return r.normal((B, n), 2.0), r.uniform((n,), 0.5, 1.5), r.normal((n,), 0.3), r


def test_ln_with_unit_gain_and_zero_bias_gives_zero_mean_and_variance_below_one_per_example():
    a, _, _, _ = _point(5, 7, 0)
    y, _ = ln(a, np.ones(7), np.zeros(7))
    var_a = a.var(axis=1)
    # mean: rounding of a sum of 7 O(1) terms; variance σ²/(σ² + ε) exactly up to rounding.
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-14)
    np.testing.assert_allclose(y.var(axis=1), var_a / (var_a + EPS), rtol=1e-13)


def test_ln_of_an_example_does_not_depend_on_the_rest_of_its_batch():
    a, gain, bias, _ = _point(6, 5, 1)
    alone, _ = ln(a[2:3], gain, bias)
    in_batch, _ = ln(a, gain, bias)
    np.testing.assert_array_equal(in_batch[2:3], alone)


def test_ln_of_equal_units_is_the_bias_and_finite():
    y, cache = ln(np.full((2, 4), 3.0), np.full(4, 2.0), np.arange(4.0))
    np.testing.assert_array_equal(y, np.tile(np.arange(4.0), (2, 1)))
    assert np.isfinite(cache.r).all()


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 4), n=st.integers(2, 6), seed=st.integers(0, 1000))
def test_ln_vjp_equals_finite_differences_of_the_pairing(B, n, seed):
    a, gain, bias, r = _point(B, n, seed)
    dy = r.normal((B, n))
    _, cache = ln(a, gain, bias)
    da, dgain, dbias = ln_vjp(cache, gain, dy)

    def f(p):
        return float((ln(p["a"], p["gain"], p["bias"])[0] * dy).sum())
    check_grads(f, {"a": a, "gain": gain, "bias": bias}, {"a": da, "gain": dgain, "bias": dbias},
                atol=_fd_noise_floor(a, gain, bias, dy, cache))


def _fd_noise_floor(a, gain, bias, dy, cache, step=1e-6):
    """The absolute error a central difference of <dy, LN(a)> can carry from rounding alone.

    The default float64 atol, 1e-9 ≈ 10 u / step, is the noise floor of an O(1) objective whose
    value is computed to a few ulps.  This pairing is computed less well: centring a (a − μ, an
    error of u‖a‖∞) is amplified by r = 1/√(σ² + ε), so f carries an error of about
    u Σ_b r_b ‖a_b‖∞ Σ_i |g_i dy_bi| (plus u Σ |b dy| from the bias term), and its difference
    quotient that divided by the step.  At n = 2 layer norm is nearly degenerate:
    â = ±d/√(d² + 4ε) with d = a_1 − a_2, so ∂f/∂a is O(ε r³), a few 1e-3, while r reaches 15
    for close units; the quotient's rounding noise (1.6e-9 for B = 4, n = 2, seed 101) is then
    above 1e-9 while its truncation error is far smaller (steps of 1e-5 and 1e-4 agree better,
    1e-7 worse).  So the floor is 10 u κ / step with that κ: the default for κ = 1.  Over every
    B ≤ 4, n ≤ 6 and 1000 seeds at n = 2 (5 400 points) the worst error is then 1.8e-7, against
    rtol 1e-6; with the default floor 54 of those points fail.
    """
    u = np.finfo(np.float64).eps / 2
    kappa = float((cache.r[:, 0] * np.abs(a).max(axis=1) * np.abs(gain * dy).sum(axis=1)).sum()
                  + np.abs(bias * dy).sum())
    return max(1e-9, 10 * u * kappa / step)


def test_ln_vjp_fd_check_at_the_nearly_degenerate_two_unit_point_is_clean():
    # The point where the default floor blamed a correct VJP (its FD noise, not its gradient).
    a, gain, bias, r = _point(4, 2, 101)
    dy = r.normal((4, 2))
    _, cache = ln(a, gain, bias)
    da, dgain, dbias = ln_vjp(cache, gain, dy)

    def f(p):
        return float((ln(p["a"], p["gain"], p["bias"])[0] * dy).sum())
    report = check_grads(f, {"a": a, "gain": gain, "bias": bias}, {"a": da, "gain": dgain, "bias": dbias},
                         atol=_fd_noise_floor(a, gain, bias, dy, cache))
    assert report.max_rel_error < 1e-7


def test_ln_vjp_fd_check_still_fails_a_vjp_missing_its_projection_term():
    # The noise floor must not hide a wrong VJP at n = 2: drop â mean(dâ ⊙ â) from da.
    a, gain, bias, r = _point(4, 2, 101)
    dy = r.normal((4, 2))
    _, cache = ln(a, gain, bias)
    da, dgain, dbias = ln_vjp(cache, gain, dy)
    g = gain * dy
    wrong = cache.r * (g - g.mean(axis=1, keepdims=True))

    def f(p):
        return float((ln(p["a"], p["gain"], p["bias"])[0] * dy).sum())
    report = check_grads(f, {"a": a, "gain": gain, "bias": bias}, {"a": wrong, "gain": dgain, "bias": dbias},
                         atol=_fd_noise_floor(a, gain, bias, dy, cache), raise_on_failure=False)
    assert not report.passed and report.params[0].name == "a"


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 4), n=st.integers(2, 6), seed=st.integers(0, 1000))
def test_ln_jvp_and_vjp_pass_the_dot_product_test(B, n, seed):
    a, gain, bias, r = _point(B, n, seed)
    u, da, dgain, dbias = r.normal((B, n)), r.normal((B, n)), r.normal((n,)), r.normal((n,))
    _, cache = ln(a, gain, bias)
    Jv = ln_jvp(cache, gain, da, dgain, dbias)
    ua, ugain, ubias = ln_vjp(cache, gain, u)
    # One Jacobian applied two ways: equal to rounding.
    dot_product_test(float((u * Jv).sum()),
                     float((ua * da).sum() + (ugain * dgain).sum() + (ubias * dbias).sum()), rtol=1e-12)


def test_ln_jvp_with_no_parameter_tangents_is_the_input_tangent_alone():
    a, gain, bias, r = _point(3, 4, 2)
    da = r.normal((3, 4))
    _, cache = ln(a, gain, bias)
    full = ln_jvp(cache, gain, da, np.zeros(4), np.zeros(4))
    np.testing.assert_array_equal(ln_jvp(cache, gain, da), full)


def test_ln_and_its_vjp_match_torch_layer_norm():
    torch = pytest.importorskip("torch")
    a, gain, bias, r = _point(3, 6, 3)
    dy = r.normal((3, 6))
    y, cache = ln(a, gain, bias)
    da, dgain, dbias = ln_vjp(cache, gain, dy)
    ta, tg, tb = (torch.tensor(v, requires_grad=True) for v in (a, gain, bias))
    ty = torch.nn.functional.layer_norm(ta, (6,), tg, tb, eps=torch.nn.LayerNorm(6).eps)
    ty.backward(torch.tensor(dy))
    # Same formula, different summation order: float64 rounding only.
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    for ours, theirs in ((da, ta), (dgain, tg), (dbias, tb)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-11, atol=1e-12)
    assert EPS == torch.nn.LayerNorm(6).eps
