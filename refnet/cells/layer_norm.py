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
    a_hat: object  # (B, n) normalised input (a − μ) r
    r: object      # (B, 1) 1/√(σ² + ε)


def ln(a, gain, bias, eps=EPS):
    """Layer norm over the last axis (Ba et al. 2016, Eqs. 3–4).

    Parameters
    ----------
    a : (B, n) pre-activations;  gain, bias : (n,);  eps : float

    Returns
    -------
    (y (B, n), LNCache)
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
    """Backward of :func:`ln`: returns ``(da (B, n), dgain (n,), dbias (n,))``, dgain, dbias summed over B."""
    da = _normalise_jvp(cache, gain * dy)      # the Jacobian of a ↦ â is symmetric
    return da, (dy * cache.a_hat).sum(axis=0), dy.sum(axis=0)


def ln_jvp(cache, gain, da, dgain=None, dbias=None):
    """Forward mode of :func:`ln`: dy (B, n) for tangents da (B, n), dgain, dbias (n,); None is zero."""
    dy = gain * _normalise_jvp(cache, da)
    if dgain is not None:
        dy = dy + dgain * cache.a_hat
    if dbias is not None:
        dy = dy + dbias
    return dy
