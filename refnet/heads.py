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

import numbers

from .backend import get_dtype, get_xp, xp_of
from ._validate import as_array, check_array, check_int, check_params, check_same_dtype, first_nonfinite
from .cells.activations import sigmoid
from .errors import NumericalError

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
    """A per-example loss ℓ(z, target) with its hand-written gradient (the table above).

    Attributes
    ----------
    name : str
        The key in :data:`LOSSES`.
    value_and_grad : callable
        ``(logits (B, O), target) -> (ℓ (B,), ∂ℓ/∂logits (B, O))``.
    label_target : bool
        True when targets are integer class labels (B,), False when they are
        float arrays (B, O).
    """

    name: str
    value_and_grad: Callable  # (logits (B, O), target) -> (ℓ (B,), ∂ℓ/∂logits (B, O))
    label_target: bool        # targets are class labels (B,) rather than arrays (B, O)


softmax_cross_entropy = Loss("softmax_cross_entropy", _softmax_cross_entropy, True)
mse = Loss("mse", _mse, False)
sigmoid_bce = Loss("sigmoid_bce", _sigmoid_bce, False)

LOSSES = {loss.name: loss for loss in (softmax_cross_entropy, mse, sigmoid_bce)}


@dataclass(frozen=True)
class Head:
    """Linear readout from ``n_in`` features to ``n_out`` logits, then ``loss``.

    logits = h Wᵀ + b (PyTorch ``nn.Linear``), then ℓ(logits, target) per
    example, weighted by w over the batch.

    Attributes
    ----------
    n_in : int
        Features per example (the cell's output size n), >= 1.
    n_out : int
        Logits per example O (classes for a label loss), >= 1.
    loss : Loss
        One of :data:`LOSSES`; default :data:`softmax_cross_entropy`.

    Raises
    ------
    ValueError
        If ``n_in`` or ``n_out`` is not a positive int (a bool is refused).
    TypeError
        If ``loss`` is not a :class:`Loss`.
    """

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
        """{name: shape} of β: weight (n_out, n_in), bias (n_out,) (PyTorch nn.Linear).

        Returns
        -------
        dict {str: tuple of int}
            The parameter names in flattening order and their shapes.

        Raises
        ------
        None
            Nothing of its own: it only reads the validated ``n_in`` and ``n_out``.
        """
        return {"weight": (self.n_out, self.n_in), "bias": (self.n_out,)}

    def init(self, rng):
        """PyTorch nn.Linear's init: U(−1/√n_in, 1/√n_in) for weight and bias.

        Parameters
        ----------
        rng : refnet.backend.Rng
            Random source; its dtype and the active backend decide the arrays'.

        Returns
        -------
        dict {name: array}
            β: ``weight`` (n_out, n_in) and ``bias`` (n_out,).

        Raises
        ------
        AttributeError
            If ``rng`` has no ``uniform`` method (not a :class:`~refnet.backend.Rng`).
        """
        bound = self.n_in ** -0.5
        return {k: rng.uniform(shape, -bound, bound) for k, shape in self.param_shapes().items()}

    def check_params(self, beta, name="beta"):
        """Raise TypeError/ValueError unless ``beta`` has exactly this head's names and shapes, all finite.

        Parameters
        ----------
        beta : dict {name: array}
            Candidate head parameters (:meth:`param_shapes`).
        name : str
            How the error messages call ``beta``.

        Returns
        -------
        dict {name: array}
            ``beta`` itself, unchanged.

        Raises
        ------
        TypeError
            If ``beta`` is not a dict, a value is not a NumPy/CuPy floating
            array, or the arrays' dtypes differ.
        ValueError
            If keys are missing or unexpected, a shape is wrong, or an entry is
            NaN/Inf (names the key and the first bad index).
        """
        return check_params(name, beta, self.param_shapes())

    def check_targets(self, y, leading, name="y"):
        """Check targets whose leading dims are ``leading`` (e.g. (T, B)).

        Parameters
        ----------
        y : (*leading,) int array or (*leading, n_out) float array
            Class labels in [0, n_out) for a label loss
            (``softmax_cross_entropy``), float targets otherwise.
        leading : tuple of int
            The leading dimensions ``y`` must have, e.g. (T, B) or (B,).
        name : str
            How the error messages call ``y``.

        Returns
        -------
        array
            ``y`` itself, unchanged.

        Raises
        ------
        TypeError
            If labels are not an integer array, float targets not a floating
            array, or ``y`` is not a NumPy/CuPy array.
        ValueError
            If the shape is wrong, a label lies outside [0, n_out), or a float
            target is NaN/Inf.
        """
        if self.loss.label_target:
            if not hasattr(y, "dtype") or y.dtype.kind not in "iu":
                raise TypeError(f"{name} must be integer class labels for {self.loss.name}, "
                                f"got {getattr(y, 'dtype', type(y).__name__)}")
            check_array(name, y, shape=tuple(leading), floating=False, finite=False)
            # one read-back (a device's host sync) for the range test; min and max only on failure
            if y.size and bool(((y < 0) | (y >= self.n_out)).any()):
                raise ValueError(f"{name} must hold labels in [0, {self.n_out}), got values in "
                                 f"[{int(y.min())}, {int(y.max())}]")
        else:
            check_array(name, y, shape=tuple(leading) + (self.n_out,))
        return y

    # The three public computations validate their arguments and check their results when
    # ``check`` is true (the default).  The algorithms call them once per time step with
    # check=False — they validated everything at entry and check their results in blocks —
    # so the per-step hot path pays no reductions or host read-backs (README, "Backend and dtype").

    def forward(self, beta, h, *, check=True):
        """Logits y = h Wᵀ + b.

        Parameters
        ----------
        beta : dict {name: array}
            The head's params (:meth:`param_shapes`).
        h : (B, n_in) array
            Features, B >= 1.
        check : bool
            Validate the arguments and the result (default True).

        Returns
        -------
        (B, n_out) array
            The logits.

        Raises
        ------
        TypeError
            ``beta`` not a dict of floating NumPy/CuPy arrays, ``h`` not an
            array, or mixed dtypes (``check``).
        ValueError
            A missing or extra key in ``beta``, a wrong shape, B = 0, NaN/Inf in
            an argument (``check``).
        refnet.NumericalError
            The logits are NaN/Inf (``check``; names the first bad index).
        """
        if check:
            h = self._check_call(beta, h)[0]
        logits = self._logits(beta, h)
        if check:
            _check_result("forward", {"logits": logits})
        return logits

    def loss_and_grad(self, beta, h, y, w, *, check=True):
        """L = Σ_b w_b ℓ(head(h_b), y_b) and its gradients.

        Parameters
        ----------
        beta : dict {name: array}
            The head's params (:meth:`param_shapes`).
        h : (B, n_in) array
            Features, B >= 1.
        y : (B,) int array or (B, n_out) float array
            Labels (softmax_cross_entropy) or float targets (mse, sigmoid_bce).
        w : (B,) array or float
            Weights of the examples (a number is used for every example).
        check : bool
            Validate the arguments and the results (default True).

        Returns
        -------
        L : 0-d array
            The weighted loss, in the dtype of ``h``.
        dh : (B, n_in) array
            ∂L/∂h.
        dbeta : dict {name: array}
            ∂L/∂β, shaped as ``beta``.

        Raises
        ------
        TypeError
            ``beta`` not a dict of floating NumPy/CuPy arrays, ``h``/``y``/``w`` not an
            array, labels not integers for a label loss, or mixed dtypes (``check``).
        ValueError
            A missing or extra key in ``beta``, a wrong shape, B = 0, NaN/Inf in
            an argument, a label outside [0, n_out) (``check``).
        refnet.NumericalError
            L or a gradient is NaN/Inf (``check``; names which and the index).
        """
        if check:
            h, y, w = self._check_call(beta, h, y, w)
        L, dh, dbeta = self._loss_and_grad(beta, h, y, w)
        if check:
            _check_result("loss_and_grad", {"L": L, "dh": dh, **{f"dbeta[{k!r}]": v for k, v in dbeta.items()}})
        return L, dh, dbeta

    def loss_value(self, beta, h, y, w, *, check=True):
        """L = Σ_b w_b ℓ(head(h_b), y_b) alone (as in :meth:`loss_and_grad`), without gradients.

        Parameters
        ----------
        beta : dict {name: array}
            The head's params (:meth:`param_shapes`).
        h : (B, n_in) array
            Features, B >= 1.
        y : (B,) int array or (B, n_out) float array
            Labels (softmax_cross_entropy) or float targets (mse, sigmoid_bce).
        w : (B,) array or float
            Weights of the examples (a number is used for every example).
        check : bool
            Validate the arguments and the result (default True).

        Returns
        -------
        0-d array
            L, on the backend and in the dtype of ``h``.

        Raises
        ------
        TypeError
            ``beta`` not a dict of floating NumPy/CuPy arrays, ``h``/``y``/``w`` not an
            array, labels not integers for a label loss, or mixed dtypes (``check``).
        ValueError
            A missing or extra key in ``beta``, a wrong shape, B = 0, NaN/Inf in
            an argument, a label outside [0, n_out) (``check``).
        refnet.NumericalError
            L is NaN/Inf (``check``).
        """
        if check:
            h, y, w = self._check_call(beta, h, y, w)
        ell, _ = self.loss.value_and_grad(self._logits(beta, h), y)
        L = (w * ell).sum()
        if check:
            _check_result("loss_value", {"L": L})
        return L

    def _logits(self, beta, h):
        return h @ beta["weight"].T + beta["bias"]

    def _loss_and_grad(self, beta, h, y, w):
        logits = self._logits(beta, h)
        ell, dlogits = self.loss.value_and_grad(logits, y)
        dlogits = dlogits * w[:, None]
        dbeta = {"weight": dlogits.T @ h, "bias": dlogits.sum(axis=0)}
        return (w * ell).sum(), dlogits @ beta["weight"], dbeta

    def _check_call(self, beta, h, y=None, w=None):
        """Validate (β, h[, y, w]) of one call; returns h, y, w as arrays."""
        self.check_params(beta, "beta")
        h = as_array("h", h)
        check_array("h", h, shape=(None, self.n_in))
        B = h.shape[0]
        if B < 1:
            raise ValueError(f"h must hold at least one example (B >= 1), got shape {tuple(h.shape)}")
        arrays = {"h": h, "beta['weight']": beta["weight"]}
        if y is not None or w is not None:
            y = as_array("y", y)
            self.check_targets(y, (B,), "y")
            if isinstance(w, numbers.Real) and not isinstance(w, bool):
                w = xp_of(h).full(B, w, dtype=h.dtype)
            w = as_array("w", w)
            check_array("w", w, shape=(B,))
            arrays["w"] = w
            if y.dtype.kind == "f":
                arrays["y"] = y
        check_same_dtype(arrays)
        return h, y, w


def _check_result(method, arrays):
    """NumericalError naming the first non-finite result ({name: array}) of a head's ``method``."""
    found = first_nonfinite(list(arrays.values()))
    if found is not None:
        k, index, value = found
        name = list(arrays)[k]
        raise NumericalError(f"Head.{method}: {name} is non-finite at index {index} ({value}); the features "
                             "or the head's weights are too large", where=f"Head.{method}: {name}", index=index)


def _new(like):
    """(array module, dtype) for new arrays: those of ``like``, else the active backend's."""
    if like is None:
        return get_xp(), get_dtype()
    return xp_of(like), like.dtype


def every_step(T, B, *, like=None):
    """Weights (T, B) for the mean loss over every step and sequence: w[t, b] = 1 / (T B).

    Made on the backend and dtype of ``like`` if given, else on the active ones.

    Parameters
    ----------
    T : int
        Sequence length (steps), >= 1.
    B : int
        Batch size (sequences), >= 1.
    like : array or None
        Array whose backend and dtype the weights take.

    Returns
    -------
    (T, B) array
        Every entry 1 / (T B); they sum to 1.

    Raises
    ------
    ValueError
        If ``T`` or ``B`` is below 1.
    TypeError
        If ``T`` or ``B`` is not an int (a bool is refused).
    """
    T, B = check_int("T", T, 1), check_int("B", B, 1)
    xp, dtype = _new(like)
    return xp.full((T, B), 1.0 / (T * B), dtype=dtype)


def last_step(T, B, *, like=None):
    """Weights (T, B) for the mean loss over sequences at the last step only: w[T−1, b] = 1 / B.

    Parameters
    ----------
    T : int
        Sequence length (steps), >= 1.
    B : int
        Batch size (sequences), >= 1.
    like : array or None
        Array whose backend and dtype the weights take; None for the active ones.

    Returns
    -------
    (T, B) array
        Zeros except the last row, 1 / B; they sum to 1.

    Raises
    ------
    ValueError
        If ``T`` or ``B`` is below 1 (with ``T`` = 0 there is no last step).
    TypeError
        If ``T`` or ``B`` is not an int (a bool is refused).
    """
    T, B = check_int("T", T, 1), check_int("B", B, 1)
    xp, dtype = _new(like)
    w = xp.zeros((T, B), dtype=dtype)
    w[-1] = 1.0 / B
    return w


def masked(mask, *, dtype=None):
    """Weights (T, B) for the mean loss over the entries where ``mask`` is true.

    On the backend of ``mask``; ``dtype`` defaults to the active float dtype.

    Parameters
    ----------
    mask : (T, B) bool array
        True where a loss is taken (any shape is accepted; the result has it).
    dtype : dtype or None
        Dtype of the weights; None for ``REFNET_DTYPE``.

    Returns
    -------
    (T, B) array
        mask / (number of true entries); they sum to 1.

    Raises
    ------
    ValueError
        If ``mask`` selects no entry, or ``REFNET_DTYPE`` is invalid.
    TypeError
        If ``dtype`` is not a dtype the array module understands.
    """
    xp = xp_of(mask)
    m = xp.asarray(mask, dtype=get_dtype() if dtype is None else dtype)
    count = float(m.sum())
    if count == 0:
        raise ValueError("mask must select at least one (t, b) entry, got an all-false mask")
    return m / count
