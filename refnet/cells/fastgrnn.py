"""FastGRNN (Kusupati et al. 2018, "FastGRNN", Eq. 3–4), in EdgeML's parametrisation.

    a = W x_t + U h_{t−1}
    z_t = σ_g(a + b_z),      h̃_t = σ_u(a + b_h)
    h_t = (ζ (1 − z_t) + ν) ⊙ h̃_t + z_t ⊙ h_{t−1}
    ζ = sigmoid(ζ̂),  ν = sigmoid(ν̂)

σ_g = sigmoid and σ_u = tanh by default (Kusupati et al. 2018, FastGRNN); the gate
and the candidate share W and U.  This is FastGRNN-LSQ's model: no low rank,
sparsity or quantisation.  Parameters, with EdgeML's ``FastGRNNCell`` names:

=============  =========  =====================================================
name           shape      meaning and init (EdgeML)
=============  =========  =====================================================
W              (H, I)     shared input weights, 0.1·N(0, 1)
U              (H, H)     shared recurrent weights, 0.1·N(0, 1)
bias_gate      (H,)       b_z, ones
bias_update    (H,)       b_h, ones
zeta           (1,)       ζ̂, the logit of ζ; 1
nu             (1,)       ν̂, the logit of ν; −4
=============  =========  =====================================================

EdgeML's shapes (1, H) and (1, 1) become (H,) and (1,).  refnet applies W
and U from the left (``x Wᵀ``, ``h Uᵀ``, W (H, I)), as EdgeML's
FastGRNNCUDACell does; EdgeML's FastGRNNCell stores W (I, H) and applies
both from the right (``x @ W``, ``h @ U``), so its weights load transposed:
use :func:`refnet.interop_edgeml.from_edgeml` with the ``layout`` of your
EdgeML release (a square U loads untransposed without any error otherwise).
The state is h.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from .. import kernels
from ..kernels import fused_device
from ..backend import xp_of
from .._validate import check_number
from .activations import ACTIVATIONS, sigmoid
from .base import Cell, forward_kernel_applies, input_projection, summed_outer
from .fastrnn import _CODES

__all__ = ["FastGRNN", "FastGRNNCache", "FastGRNNFused"]


class FastGRNNCache(NamedTuple):
    """What :meth:`FastGRNN.step` keeps for its VJP and JVP.

    Attributes
    ----------
    x : (B, I) array
        The input x_t.
    h_prev : (B, H) array
        h_{t−1}.
    z : (B, H) array
        The gate z_t = σ_g(a + b_z); σ_g' is read from it.
    h_tilde : (B, H) array
        The candidate h̃_t = σ_u(a + b_h); σ_u' is read from it.
    zeta : (1,) array
        ζ = sigmoid(ζ̂).
    nu : (1,) array
        ν = sigmoid(ν̂).
    """

    x: object
    h_prev: object
    z: object
    h_tilde: object
    zeta: object
    nu: object


class FastGRNNFused(NamedTuple):
    """The trace of :meth:`FastGRNN.fused_sequence`, read by :meth:`FastGRNN.fused_sequence_vjp`.

    Attributes
    ----------
    x : (T, B, I) array
        The inputs.
    hs : (T + 1, B, H) array
        hs[t] = h_t, hs[0] = h_0.
    z : (T, B, H) array
        z[t − 1] = z_t, the gates.
    h_tilde : (T, B, H) array
        h_tilde[t − 1] = h̃_t, the candidates.
    zeta : (1,) array
        ζ = sigmoid(ζ̂).
    nu : (1,) array
        ν = sigmoid(ν̂).
    """

    x: object
    hs: object
    z: object
    h_tilde: object
    zeta: object
    nu: object


@dataclass(frozen=True)
class FastGRNN(Cell):
    """FastGRNN cell (Kusupati et al. 2018, Eqs. 3–4): a gated residual update with learnable ζ, ν.

    h_t = (ζ (1 − z_t) + ν) ⊙ h̃_t + z_t ⊙ h_{t−1}, with the gate z_t and the
    candidate h̃_t sharing W and U; EdgeML's names and init (module
    docstring).  The state is h (B, H).

    Parameters
    ----------
    input_size : int
        I, the width of x_t, >= 1.
    hidden_size : int
        H, the width of h, >= 1.
    gate_nonlinearity : str
        σ_g, a name of :data:`refnet.cells.activations.ACTIVATIONS`; 'sigmoid' by default.
    update_nonlinearity : str
        σ_u, a name of ``ACTIVATIONS``; 'tanh' by default.
    zeta_init : float
        Initial ζ̂, the logit of ζ (dimensionless); 1 (EdgeML), ζ ≈ 0.73.
    nu_init : float
        Initial ν̂, the logit of ν (dimensionless); −4 (EdgeML), ν ≈ 0.018.

    Raises
    ------
    ValueError
        If ``input_size`` or ``hidden_size`` is not a positive int, a
        nonlinearity is not a name of ``ACTIVATIONS``, or ``zeta_init`` or
        ``nu_init`` is not finite.
    TypeError
        If ``zeta_init`` or ``nu_init`` is not a real number (a bool is refused).
    """

    input_size: int
    hidden_size: int
    gate_nonlinearity: str = "sigmoid"
    update_nonlinearity: str = "tanh"
    zeta_init: float = 1.0
    nu_init: float = -4.0

    def __post_init__(self):
        super().__post_init__()
        for name in ("gate_nonlinearity", "update_nonlinearity"):
            value = getattr(self, name)
            if value not in ACTIVATIONS:
                raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)}, got {value!r}")
        for name in ("zeta_init", "nu_init"):         # logits: any finite value is a gate in (0, 1)
            check_number(name, getattr(self, name))

    def param_shapes(self):
        """The parameters' names and shapes (EdgeML's names).

        Returns
        -------
        dict
            {'W': (H, I), 'U': (H, H), 'bias_gate': (H,), 'bias_update': (H,),
            'zeta': (1,), 'nu': (1,)}.

        Raises
        ------
        TypeError
            Only if called with arguments (it takes none); the sizes it reads
            were validated when the cell was made.
        """
        H, I = self.hidden_size, self.input_size
        return {"W": (H, I), "U": (H, H), "bias_gate": (H,), "bias_update": (H,),
                "zeta": (1,), "nu": (1,)}

    def init(self, rng):
        """EdgeML's init: W, U ~ 0.1·N(0, 1), b_z = b_h = 1, ζ̂ = ``zeta_init``, ν̂ = ``nu_init``.

        Parameters
        ----------
        rng : refnet.backend.Rng
            Source of the random draws; its dtype and backend are the parameters'.

        Returns
        -------
        dict
            {name: array} with the shapes of :meth:`param_shapes`.

        Raises
        ------
        AttributeError
            If ``rng`` is not a :class:`refnet.backend.Rng` (it lacks ``normal`` or ``constant``).
        """
        H, I = self.hidden_size, self.input_size
        return {                                    # constants too in the rng's dtype (rng.constant)
            "W": rng.normal((H, I), 0.1),
            "U": rng.normal((H, H), 0.1),
            "bias_gate": rng.constant(numpy.ones(H)),
            "bias_update": rng.constant(numpy.ones(H)),
            "zeta": rng.constant([self.zeta_init]),
            "nu": rng.constant([self.nu_init]),
        }

    def step(self, params, s_prev, x, t=None):
        """One transition (Kusupati et al. 2018, Eqs. 3–4).

        a = W x_t + U h_{t−1}, z_t = σ_g(a + b_z), h̃_t = σ_u(a + b_h),
        h_t = (ζ (1 − z_t) + ν) ⊙ h̃_t + z_t ⊙ h_{t−1}.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        s_prev : (B, H) array
            h_{t−1}.
        x : (B, I) array
            x_t.
        t : int or None
            0-based index of x_t (steps); unused, FastGRNN is time-invariant.

        Returns
        -------
        h : (B, H) array
            h_t.
        cache : FastGRNNCache
            What :meth:`step_vjp` and :meth:`step_jvp` read.

        Raises
        ------
        KeyError
            If ``params`` lacks one of W, U, bias_gate, bias_update, zeta, nu.
        ValueError
            If the shapes of ``params``, ``s_prev`` and ``x`` disagree (from the array product).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        a = x @ params["W"].T + s_prev @ params["U"].T
        z = ACTIVATIONS[self.gate_nonlinearity].fn(a + params["bias_gate"])
        h_tilde = ACTIVATIONS[self.update_nonlinearity].fn(a + params["bias_update"])
        zeta, nu = sigmoid.fn(params["zeta"]), sigmoid.fn(params["nu"])
        h = (zeta * (1.0 - z) + nu) * h_tilde + z * s_prev
        return h, FastGRNNCache(x, s_prev, z, h_tilde, zeta, nu)

    def step_vjp(self, params, cache, ds):
        """VJP of :meth:`step`: back through the gated sum, the two nonlinearities and the shared affine map.

        da_z = ds ⊙ (h_{t−1} − ζ h̃) ⊙ σ_g', da_h = ds ⊙ (ζ (1 − z) + ν) ⊙ σ_u',
        da = da_z + da_h (W and U are shared): dW = daᵀ x, dU = daᵀ h_{t−1},
        ds_prev = ds ⊙ z + da U, dx = da W.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`; W and U are read.
        cache : FastGRNNCache
            What :meth:`step` returned for this step.
        ds : (B, H) array
            Cotangent of h_t.

        Returns
        -------
        ds_prev : (B, H) array
            ∂/∂h_{t−1}.
        dparams : dict
            ∂/∂θ for every parameter, summed over the batch.
        dx : (B, I) array
            ∂/∂x_t.

        Raises
        ------
        KeyError
            If ``params`` lacks W or U.
        ValueError
            If the shape of ``ds`` disagrees with the cache's (from the array product).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(ds)
        c = cache
        da_z = ds * (c.h_prev - c.zeta * c.h_tilde) * ACTIVATIONS[self.gate_nonlinearity].grad(c.z)
        da_h = ds * (c.zeta * (1.0 - c.z) + c.nu) * ACTIVATIONS[self.update_nonlinearity].grad(c.h_tilde)
        da = da_z + da_h                                                 # W, U are shared
        dparams = {
            "W": da.T @ c.x,
            "U": da.T @ c.h_prev,
            "bias_gate": da_z.sum(axis=0),
            "bias_update": da_h.sum(axis=0),
            # back through ζ = sigmoid(ζ̂) and ν = sigmoid(ν̂)
            "zeta": xp.reshape((ds * (1.0 - c.z) * c.h_tilde).sum(), (1,)) * sigmoid.grad(c.zeta),
            "nu": xp.reshape((ds * c.h_tilde).sum(), (1,)) * sigmoid.grad(c.nu),
        }
        return ds * c.z + da @ params["U"], dparams, da @ params["W"]

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """JVP of :meth:`step`: tangents of a, z, h̃, ζ, ν, then of h.

        dh = z ⊙ dh_{t−1} + dz ⊙ (h_{t−1} − ζ h̃) + (ζ (1 − z) + ν) ⊙ dh̃
        + dζ (1 − z) ⊙ h̃ + dν h̃, with dz = σ_g' (da + db_z), dh̃ = σ_u' (da + db_h).

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        cache : FastGRNNCache
            What :meth:`step` returned for this step.
        ds_prev : (B, H) array or None
            Tangent of h_{t−1}; None for zero.
        dparams : dict or None
            Tangent of every parameter, shared by the batch; None for zero.
        dx : (B, I) array or None
            Tangent of x_t; None for zero.

        Returns
        -------
        (B, H) array
            Tangent of h_t.

        Raises
        ------
        KeyError
            If ``params`` or ``dparams`` lacks a parameter the tangents need.
        ValueError
            If a tangent's shape disagrees with the cache's (from the array product).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(cache.x)
        c = cache
        da = xp.zeros_like(c.z)
        dh = xp.zeros_like(c.z)
        da_z = da_h = 0.0
        if dx is not None:
            da = da + dx @ params["W"].T
        if ds_prev is not None:
            da = da + ds_prev @ params["U"].T
            dh = dh + c.z * ds_prev
        if dparams is not None:
            da = da + c.x @ dparams["W"].T + c.h_prev @ dparams["U"].T
            da_z, da_h = dparams["bias_gate"], dparams["bias_update"]
            dh = (dh + sigmoid.grad(c.zeta) * dparams["zeta"] * (1.0 - c.z) * c.h_tilde
                  + sigmoid.grad(c.nu) * dparams["nu"] * c.h_tilde)
        dz = ACTIVATIONS[self.gate_nonlinearity].grad(c.z) * (da + da_z)
        dh_tilde = ACTIVATIONS[self.update_nonlinearity].grad(c.h_tilde) * (da + da_h)
        return dh + dz * (c.h_prev - c.zeta * c.h_tilde) + (c.zeta * (1.0 - c.z) + c.nu) * dh_tilde

    def fused_sequence(self, params, x, s0):
        """The whole run (Kusupati et al. 2018, Eqs. 3–4), ``Cell.fused_sequence``.

        x_t Wᵀ for all t is one GEMM over the T·B rows; per step, one product
        h_{t−1} Uᵀ and the gate arithmetic, the whole loop in one numba kernel
        on NumPy (:func:`refnet.kernels.fused._fastgrnn_forward`), the array loop below otherwise.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes` (the
            algorithms check them; the kernel does not).
        x : (T, B, I) array
            Inputs; x[t − 1] is x_t.
        s0 : (B, H) array
            h_0.

        Returns
        -------
        outputs : (T, B, H) array
            h_t for t = 1..T (a view of the trace's ``hs``).
        s_T : (B, H) array
            h_T (a copy).
        trace : FastGRNNFused
            What :meth:`fused_sequence_vjp` reads.

        Raises
        ------
        ValueError
            If ``x`` is not 3-D, or the shapes of ``x``, ``s0`` and ``params``
            disagree (from the array product or assignment).
        KeyError
            If ``params`` lacks one of W, U, bias_gate, bias_update, zeta, nu.
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(x, s0)
        T, B, _ = x.shape
        H = self.hidden_size
        XW = input_projection(x, params["W"], None)
        hs = xp.empty((T + 1, B, H), dtype=x.dtype)
        hs[0] = s0
        zs = xp.empty((T, B, H), dtype=x.dtype)
        h_tilde = xp.empty((T, B, H), dtype=x.dtype)
        zeta, nu = sigmoid.fn(params["zeta"]), sigmoid.fn(params["nu"])
        U, b_z, b_h = params["U"], params["bias_gate"], params["bias_update"]
        gate, update = ACTIVATIONS[self.gate_nonlinearity], ACTIVATIONS[self.update_nonlinearity]
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.fastgrnn_forward(device, self.gate_nonlinearity, self.update_nonlinearity, XW, U, b_z, b_h,
                                          zeta, nu, hs, zs, h_tilde)
        elif forward_kernel_applies(B * H, XW, hs, U, b_z, b_h):
            kernels.load("fused")._fastgrnn_forward(
                XW, numpy.ascontiguousarray(U), numpy.ascontiguousarray(b_z), numpy.ascontiguousarray(b_h),
                _CODES[self.gate_nonlinearity], _CODES[self.update_nonlinearity], zeta[0], nu[0], hs, zs, h_tilde,
                numpy.empty_like(s0, order="C"))
        else:
            for t in range(T):
                a = XW[t] + hs[t] @ U.T
                zs[t] = gate.fn(a + b_z)
                h_tilde[t] = update.fn(a + b_h)
                hs[t + 1] = (zeta * (1.0 - zs[t]) + nu) * h_tilde[t] + zs[t] * hs[t]
        return hs[1:], hs[T].copy(), FastGRNNFused(x, hs, zs, h_tilde, zeta, nu)

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """VJP of :meth:`fused_sequence` over the window of steps start+1..start+n.

        Per step, dS_t = dh_t + dout_t, the gate and candidate cotangents
        dA_z, dA_h of :meth:`step_vjp` and one product dh_{t−1} = (dA_z + dA_h) U
        + dS_t ⊙ z_t; then dW, dU, the biases, dζ̂, dν̂ and dx each as one GEMM
        or sum over the window's n·B rows.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`; W and U are read.
        trace : FastGRNNFused
            What :meth:`fused_sequence` returned.
        dout : (n, B, H) array
            Cotangents of the outputs h_t for t = start+1..start+n.
        ds_last : (B, H) array
            Cotangent of h_{start+n} from beyond the window.
        start : int
            The window starts from h_start (steps, 0: h_0); start + n <= T.

        Returns
        -------
        ds_start : (B, H) array
            ∂/∂h_start.
        dparams : dict
            ∂/∂θ for every parameter, summed over the window's steps and the batch.
        dx : (n, B, I) array
            ∂/∂x_t for t = start+1..start+n.

        Raises
        ------
        ValueError
            If ``dout`` is not 3-D, its shape or that of ``ds_last`` disagrees
            with the trace's, or start + n > T (from the array products).
        KeyError
            If ``params`` lacks W or U.
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(dout, ds_last)
        n, B, H = dout.shape
        W, U = params["W"], params["U"]
        zeta, nu = trace.zeta, trace.nu
        dS, dA_z, dA_h, dA = (xp.empty((n, B, H), dtype=dout.dtype) for _ in range(4))
        dh = ds_last.copy()
        gate, update = ACTIVATIONS[self.gate_nonlinearity], ACTIVATIONS[self.update_nonlinearity]
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.fastgrnn_backward(device, self.gate_nonlinearity, self.update_nonlinearity, U, trace.hs,
                                           trace.z, trace.h_tilde, dout, start, zeta, nu, dh, dS, dA_z, dA_h, dA)
        elif kernels.applicable(dout, dh, trace.hs, U):
            kernels.load("fused")._fastgrnn_backward(
                numpy.ascontiguousarray(U), trace.hs, trace.z, trace.h_tilde, numpy.ascontiguousarray(dout), start,
                _CODES[self.gate_nonlinearity], _CODES[self.update_nonlinearity], zeta[0], nu[0], dh, dS, dA_z,
                dA_h, dA)
        else:
            for j in range(n - 1, -1, -1):
                t = start + j
                z, y = trace.z[t], trace.h_tilde[t]
                dS[j] = dh + dout[j]
                dA_z[j] = dS[j] * (trace.hs[t] - zeta * y) * gate.grad(z)
                dA_h[j] = dS[j] * (zeta * (1.0 - z) + nu) * update.grad(y)
                dA[j] = dA_z[j] + dA_h[j]
                dh = dA[j] @ U + dS[j] * z
        window = slice(start, start + n)
        x, z, y = trace.x[window], trace.z[window], trace.h_tilde[window]
        dparams = {
            "W": summed_outer(dA, x),
            "U": summed_outer(dA, trace.hs[window]),
            "bias_gate": dA_z.sum(axis=(0, 1)),
            "bias_update": dA_h.sum(axis=(0, 1)),
            "zeta": xp.reshape((dS * (1.0 - z) * y).sum(), (1,)) * sigmoid.grad(zeta),
            "nu": xp.reshape((dS * y).sum(), (1,)) * sigmoid.grad(nu),
        }
        return dh, dparams, (dA.reshape(n * B, H) @ W).reshape(n, B, x.shape[2])
