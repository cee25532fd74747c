"""Layer normalisation over the hidden units (Ba, Kiros & Hinton 2016, Eqs. 3–4).

For one example's pre-activation a (n,):

    μ = (1/n) Σ_i a_i,    σ² = (1/n) Σ_i (a_i − μ)²,    â = (a − μ) / √(σ² + ε)
    LN(a) = g ⊙ â + b

with a learnable gain g and bias b (n,).  The statistics are taken over the
hidden units of each example, never over the batch (normalising over the
batch is the bug of several public fast-weights reimplementations): an
example's output does not depend on the other examples in its batch.

ε = 1e-5 (:data:`EPS`, PyTorch's ``nn.LayerNorm`` default) keeps 1/√(σ² + ε)
finite when all units are equal.  σ² is the biased variance (divide by n), as
in the paper and in PyTorch.

With r = 1/√(σ² + ε) and the cache (â, r):

    backward  da = r (dâ − mean(dâ) − â mean(dâ ⊙ â)),   dâ = g ⊙ dy
    forward   dy = g ⊙ r (da − mean(da) − â mean(da ⊙ â)) + dg ⊙ â + db

(the Jacobian of a ↦ â is r (I − 1/n − â âᵀ/n), symmetric, so both modes use it).
"""
from typing import NamedTuple

from ..backend import xp_of

__all__ = ["EPS", "LNCache", "ln", "ln_vjp", "ln_jvp"]

EPS = 1e-5


class LNCache(NamedTuple):
    """What :func:`ln` keeps for its VJP and JVP: the normalised input and the inverse deviation.

    Attributes
    ----------
    a_hat : (B, n) array
        â = (a − μ) r, the normalised pre-activations.
    r : (B, 1) array
        r = 1/√(σ² + ε), per example.
    """

    a_hat: object  # (B, n) normalised input (a − μ) r
    r: object      # (B, 1) 1/√(σ² + ε)


def ln(a, gain, bias, eps=EPS):
    """Layer norm over the last axis (Ba, Kiros & Hinton 2016, Eqs. 3–4): y = g ⊙ (a − μ)/√(σ² + ε) + b.

    μ and the biased variance σ² are taken over the n units of each example,
    never over the batch.

    Parameters
    ----------
    a : (B, n) array
        Pre-activations, one row per example.
    gain : (n,) array
        The learnable gain g.
    bias : (n,) array
        The learnable bias b.
    eps : float
        ε > 0 added to σ² (dimensionless, in the squared units of ``a``);
        default :data:`EPS` = 1e-5, PyTorch's.

    Returns
    -------
    y : (B, n) array
        LN(a).
    cache : LNCache
        (â (B, n), r (B, 1)) for :func:`ln_vjp` and :func:`ln_jvp`.

    Raises
    ------
    TypeError
        If ``a``, ``gain`` and ``bias`` mix NumPy and device (CuPy) arrays.
    ValueError
        If ``gain`` or ``bias`` does not broadcast against (B, n) (from the
        array module).  Nothing is checked for finiteness: with ``eps`` = 0 a
        row of equal entries gives NaN, which propagates.
    """
    xp = xp_of(a, gain, bias)
    mu = a.mean(axis=-1, keepdims=True)
    centred = a - mu
    r = 1.0 / xp.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
    a_hat = centred * r
    return gain * a_hat + bias, LNCache(a_hat, r)


def _normalise_jvp(cache, da):
    """Tangent of â for a tangent da of a: r (da − mean(da) − â mean(da ⊙ â)); also its adjoint."""
    a_hat = cache.a_hat
    return cache.r * (da - da.mean(axis=-1, keepdims=True)
                      - a_hat * (da * a_hat).mean(axis=-1, keepdims=True))


def ln_vjp(cache, gain, dy):
    """Backward (VJP) of :func:`ln`: da = r (dâ − mean(dâ) − â mean(dâ ⊙ â)) with dâ = g ⊙ dy.

    Parameters
    ----------
    cache : LNCache
        What :func:`ln` returned with the forward value.
    gain : (n,) array
        The gain g the forward used.
    dy : (B, n) array
        Cotangent of y = LN(a).

    Returns
    -------
    da : (B, n) array
        Cotangent of the pre-activations a.
    dgain : (n,) array
        Σ_b dy ⊙ â, summed over the batch.
    dbias : (n,) array
        Σ_b dy, summed over the batch.

    Raises
    ------
    AttributeError
        If ``cache`` has no ``a_hat`` or ``r`` (it is not an :class:`LNCache`).
    ValueError
        If ``gain`` or ``dy`` does not broadcast against (B, n) (from the array module).
    """
    da = _normalise_jvp(cache, gain * dy)      # the Jacobian of a ↦ â is symmetric
    return da, (dy * cache.a_hat).sum(axis=0), dy.sum(axis=0)


def ln_jvp(cache, gain, da, dgain=None, dbias=None):
    """Forward mode (JVP) of :func:`ln`: dy = g ⊙ r (da − mean(da) − â mean(da ⊙ â)) + dg ⊙ â + db.

    Parameters
    ----------
    cache : LNCache
        What :func:`ln` returned with the forward value.
    gain : (n,) array
        The gain g the forward used.
    da : (B, n) array
        Tangent of the pre-activations a.
    dgain : (n,) array or None
        Tangent of the gain, shared by the batch; None for zero.
    dbias : (n,) array or None
        Tangent of the bias, shared by the batch; None for zero.

    Returns
    -------
    (B, n) array
        The tangent dy of y = LN(a).

    Raises
    ------
    AttributeError
        If ``cache`` has no ``a_hat`` or ``r`` (it is not an :class:`LNCache`).
    ValueError
        If a tangent or ``gain`` does not broadcast against (B, n) (from the array module).
    """
    dy = gain * _normalise_jvp(cache, da)
    if dgain is not None:
        dy = dy + dgain * cache.a_hat
    if dbias is not None:
        dy = dy + dbias
    return dy
