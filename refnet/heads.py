"""Readouts and losses, each with its hand-written gradient.

A :class:`Head` is a linear readout ``y = W h + b`` (PyTorch nn.Linear names
``weight`` (O, n), ``bias`` (O,)) followed by a per-example loss ℓ(y, target).
Over a sequence the objective is a weighted sum

    L = Σ_t Σ_b w[t, b] ℓ(y_t[b], target_t[b])

and the weights say where losses are taken: :func:`every_step`,
:func:`last_step` or :func:`masked` (each normalised to a mean).

Losses (per example, summed over output units):

=====================  ==============================  ==================
loss                   ℓ(z, y)                         ∂ℓ/∂z
=====================  ==============================  ==================
softmax_cross_entropy  logsumexp(z) − z_y  (y a label)  softmax(z) − e_y
mse                    ½ ‖z − y‖²                       z − y
sigmoid_bce            Σ_k softplus(z_k) − y_k z_k      σ(z) − y
=====================  ==============================  ==================

All are computed without overflow for any finite z (logits of ±1e4 included).
"""
from dataclasses import dataclass
from typing import Callable, NamedTuple

from .backend import get_dtype, get_xp, xp_of
from ._validate import check_array, check_params
from .cells.activations import sigmoid

__all__ = ["Loss", "softmax_cross_entropy", "mse", "sigmoid_bce", "LOSSES", "Head",
           "every_step", "last_step", "masked"]


def _softmax_cross_entropy(z, y):
    """ℓ = logsumexp(z) − z_y with the max subtracted first; ∂ℓ/∂z = softmax(z) − e_y."""
    xp = xp_of(z)
    m = z.max(axis=1, keepdims=True)
    e = xp.exp(z - m)
    sum_e = e.sum(axis=1, keepdims=True)
    rows = xp.arange(z.shape[0])
    loss = (m + xp.log(sum_e))[:, 0] - z[rows, y]
    dz = e / sum_e
    dz[rows, y] -= 1.0
    return loss, dz


def _mse(z, y):
    """ℓ = ½ ‖z − y‖²; ∂ℓ/∂z = z − y."""
    r = z - y
    return 0.5 * (r * r).sum(axis=1), r


def _sigmoid_bce(z, y):
    """ℓ = Σ softplus(z) − y z, softplus(z) = max(z, 0) + log1p(e^{−|z|}); ∂ℓ/∂z = σ(z) − y."""
    xp = xp_of(z)
    softplus = xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))
    return (softplus - y * z).sum(axis=1), sigmoid.fn(z) - y


class Loss(NamedTuple):
    name: str
    value_and_grad: Callable  # (logits (B, O), target) -> (ℓ (B,), ∂ℓ/∂logits (B, O))
    label_target: bool        # targets are class labels (B,) rather than arrays (B, O)


softmax_cross_entropy = Loss("softmax_cross_entropy", _softmax_cross_entropy, True)
mse = Loss("mse", _mse, False)
sigmoid_bce = Loss("sigmoid_bce", _sigmoid_bce, False)

LOSSES = {loss.name: loss for loss in (softmax_cross_entropy, mse, sigmoid_bce)}


@dataclass(frozen=True)
class Head:
    """Linear readout from ``n_in`` features to ``n_out`` logits, then ``loss``."""

    n_in: int
    n_out: int
    loss: Loss = softmax_cross_entropy

    def __post_init__(self):
        for name in ("n_in", "n_out"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.loss, Loss):
            raise TypeError(f"loss must be one of {sorted(LOSSES)} (a refnet.heads.Loss), "
                            f"got {self.loss!r}")

    def param_shapes(self):
        return {"weight": (self.n_out, self.n_in), "bias": (self.n_out,)}

    def init(self, rng):
        """PyTorch nn.Linear's init: U(−1/√n_in, 1/√n_in)."""
        bound = self.n_in ** -0.5
        return {k: rng.uniform(shape, -bound, bound) for k, shape in self.param_shapes().items()}

    def check_params(self, beta, name="beta"):
        return check_params(name, beta, self.param_shapes())

    def check_targets(self, y, leading, name="y"):
        """Check targets whose leading dims are ``leading`` (e.g. (T, B))."""
        if self.loss.label_target:
            if not hasattr(y, "dtype") or y.dtype.kind not in "iu":
                raise TypeError(f"{name} must be integer class labels for {self.loss.name}, "
                                f"got {getattr(y, 'dtype', type(y).__name__)}")
            check_array(name, y, shape=tuple(leading), floating=False, finite=False)
            if y.size and (int(y.min()) < 0 or int(y.max()) >= self.n_out):
                raise ValueError(f"{name} must hold labels in [0, {self.n_out}), got values in "
                                 f"[{int(y.min())}, {int(y.max())}]")
        else:
            check_array(name, y, shape=tuple(leading) + (self.n_out,))
        return y

    def forward(self, beta, h):
        """Logits y = h Wᵀ + b, (B, n_out)."""
        return h @ beta["weight"].T + beta["bias"]

    def loss_and_grad(self, beta, h, y, w):
        """L = Σ_b w_b ℓ(W h_b + b, y_b); returns (L as a 0-d array, ∂L/∂h (B, n_in), ∂L/∂β)."""
        logits = self.forward(beta, h)
        ell, dlogits = self.loss.value_and_grad(logits, y)
        dlogits = dlogits * w[:, None]
        dbeta = {"weight": dlogits.T @ h, "bias": dlogits.sum(axis=0)}
        return (w * ell).sum(), dlogits @ beta["weight"], dbeta

    def loss_value(self, beta, h, y, w):
        """L alone (as in :meth:`loss_and_grad`), a 0-d array."""
        ell, _ = self.loss.value_and_grad(self.forward(beta, h), y)
        return (w * ell).sum()


def _new(like):
    """(array module, dtype) for new arrays: those of ``like``, else the active backend's."""
    if like is None:
        return get_xp(), get_dtype()
    return xp_of(like), like.dtype


def every_step(T, B, *, like=None):
    """Weights (T, B) for the mean loss over every step and sequence.

    Made on the backend and dtype of ``like`` if given, else on the active ones.
    """
    xp, dtype = _new(like)
    return xp.full((T, B), 1.0 / (T * B), dtype=dtype)


def last_step(T, B, *, like=None):
    """Weights (T, B) for the mean loss over sequences at the last step only."""
    xp, dtype = _new(like)
    w = xp.zeros((T, B), dtype=dtype)
    w[-1] = 1.0 / B
    return w


def masked(mask, *, dtype=None):
    """Weights (T, B) for the mean loss over the entries where ``mask`` is true.

    On the backend of ``mask``; ``dtype`` defaults to the active float dtype.
    """
    xp = xp_of(mask)
    m = xp.asarray(mask, dtype=get_dtype() if dtype is None else dtype)
    count = float(m.sum())
    if count == 0:
        raise ValueError("mask must select at least one (t, b) entry, got an all-false mask")
    return m / count
