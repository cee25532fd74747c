"""Elman RNN (PyTorch nn.RNN) and iRNN (Le, Jaitly & Hinton 2015).

    a_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh,     h_t = φ(a_t)

φ = tanh or ReLU (Elman 1990; PyTorch's nn.RNN).  The state is h.

At batch 1 on NumPy, ``step``, ``step_vjp``, ``jacobians``, ``steps`` and
``steps_vjp`` run numba kernels (:mod:`refnet.kernels.elman`,
``REFNET_NUMBA=0`` turns them off); the array code below each dispatch (for
``steps``, the contract's loop over ``step``) is their twin, and what every
other case runs.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from .. import kernels
from ..kernels import fused_device
from ..backend import to_numpy, xp_of
from .._validate import check_number
from .activations import ACTIVATIONS
from .base import Cell, affine_jvp, affine_vjp, forward_kernel_applies, input_projection, summed_outer
from .patterns import row_pattern

__all__ = ["ElmanRNN", "IRNN", "ElmanCache", "ElmanSteps", "ElmanFused"]


class ElmanCache(NamedTuple):
    """What ``ElmanRNN.step`` keeps for its VJP, JVP and Jacobians (φ' is read from h).

    Attributes
    ----------
    x : (B, I) array
        The step's input x_t.
    h_prev : (B, H) array
        The previous state h_{t−1}.
    h : (B, H) array
        The new state h_t = φ(a_t).
    """

    x: object       # (B, I) input
    h_prev: object  # (B, H) previous state
    h: object       # (B, H) new state, φ(a); φ' is read from it


class ElmanSteps(NamedTuple):
    """The trace of ``ElmanRNN.steps`` on its kernel path: every input and state of the run.

    Attributes
    ----------
    xs : (k, B, I) array
        The inputs x_1..x_k.
    hs : (k + 1, B, H) array
        The states h_0..h_k (hs[0] = h_0).
    """

    xs: object  # (k, B, I)
    hs: object  # (k + 1, B, H), hs[0] = h_0


class ElmanFused(NamedTuple):
    """The trace of ``ElmanRNN.fused_sequence``: the inputs and every state of the run.

    Attributes
    ----------
    x : (T, B, I) array
        The inputs x_1..x_T.
    hs : (T + 1, B, H) array
        The states h_0..h_T (hs[0] = h_0); φ' is read from them.
    """

    x: object   # (T, B, I)
    hs: object  # (T + 1, B, H), hs[0] = h_0


@dataclass(frozen=True)
class ElmanRNN(Cell):
    """Elman RNN cell (Elman 1990) in PyTorch nn.RNN's form and names.

    h_t = φ(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh) with weight_ih (H, I),
    weight_hh (H, H), bias_ih, bias_hh (H,).  The state is h (n_state = H).

    Parameters
    ----------
    input_size : int
        I >= 1, the width of x_t.
    hidden_size : int
        H >= 1, the width of h_t.
    nonlinearity : {'tanh', 'relu'}
        φ (ReLU'(0) = 0, as PyTorch).

    Raises
    ------
    ValueError
        If a size is not a positive int, or ``nonlinearity`` is not 'tanh' or 'relu'.
    """

    input_size: int
    hidden_size: int
    nonlinearity: str = "tanh"

    def __post_init__(self):
        super().__post_init__()
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")

    @property
    def phi(self):
        """φ as an :class:`~refnet.cells.activations.Activation` (fn, grad from the output)."""
        return ACTIVATIONS[self.nonlinearity]

    def param_shapes(self):
        """The parameters' names and shapes, in flatten (J_θ column) order.

        Returns
        -------
        dict {name: tuple of int}
            weight_ih (H, I), weight_hh (H, H), bias_ih (H,), bias_hh (H,).

        Raises
        ------
        None
            Nothing of its own: the sizes were checked when the cell was made.
        """
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (H, I), "weight_hh": (H, H), "bias_ih": (H,), "bias_hh": (H,)}

    def init(self, rng):
        """PyTorch's init for nn.RNN: every entry U(−1/√H, 1/√H).

        Parameters
        ----------
        rng : refnet.backend.Rng
            The random source (``refnet.rng(seed)``); draws are in its dtype.

        Returns
        -------
        dict {name: array}
            The four parameters, shapes as :meth:`param_shapes`.

        Raises
        ------
        AttributeError
            If ``rng`` has no ``uniform`` method.
        ValueError
            If ``rng.uniform`` does not take ``(shape, low, high)`` (a
            ``numpy.random.Generator`` does not).
        """
        return self.pytorch_init(rng)

    def step(self, params, s_prev, x, t=None):
        """One transition h_t = φ(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh) (Elman 1990).

        At batch 1 on NumPy this runs the numba kernel
        :func:`refnet.kernels.elman._elman_step` (the array code is its twin).

        Parameters
        ----------
        params : dict {name: array}
            weight_ih (H, I), weight_hh (H, H), bias_ih (H,), bias_hh (H,).
        s_prev : (B, H) array
            h_{t−1}.
        x : (B, I) array
            x_t.
        t : int or None
            Time index; unused (the cell is time-invariant).

        Returns
        -------
        h : (B, H) array
            h_t, the new state.
        cache : ElmanCache
            (x_t, h_{t−1}, h_t) for the backward.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.  Cells do not
            validate on the hot path; the algorithms check their input once.
        ValueError
            If the shapes do not fit (the array module's matmul error; the
            batch-1 kernel path does not check shapes), or, at batch 1 on
            NumPy, ``REFNET_NUMBA`` is neither '0' nor '1'.
        """
        if s_prev.shape[0] == 1 and kernels.applicable(s_prev, x, params["weight_hh"]):
            return self._step_kernel(params, s_prev, x)
        a = x @ params["weight_ih"].T + params["bias_ih"] + s_prev @ params["weight_hh"].T + params["bias_hh"]
        h = self.phi.fn(a)
        return h, ElmanCache(x, s_prev, h)

    def step_vjp(self, params, cache, ds):
        """VJP of one step: da = ds ⊙ φ'(a_t), then back through the two affine maps.

        ds_prev = da W_hh, dx = da W_ih, dW_ih = daᵀ x_t, dW_hh = daᵀ h_{t−1},
        db_ih = db_hh = Σ_b da.  At batch 1 on NumPy this runs the numba
        kernel :func:`refnet.kernels.elman._elman_step_vjp`.

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : ElmanCache
            What ``step`` returned.
        ds : (B, H) array
            Cotangent of h_t.

        Returns
        -------
        ds_prev : (B, H) array
            Cotangent of h_{t−1}.
        dparams : dict {name: array}
            Cotangents of the four parameters, summed over the batch.
        dx : (B, I) array
            Cotangent of x_t.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.  Cells do not
            validate on the hot path; the algorithms check their input once.
        ValueError
            If the shapes do not fit (the array module's matmul error; the
            batch-1 kernel path does not check shapes), or, at batch 1 on
            NumPy, ``REFNET_NUMBA`` is neither '0' nor '1'.
        """
        if ds.shape[0] == 1 and kernels.applicable(ds, cache.x, cache.h_prev, params["weight_hh"]):
            return self._step_vjp_kernel(params, cache, ds)
        da = ds * self.phi.grad(cache.h)
        dparams, dx, dh_prev = affine_vjp(params, cache.x, cache.h_prev, da, da)
        return dh_prev, dparams, dx

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """JVP of one step: dh_t = φ'(a_t) ⊙ (dW_ih x + W_ih dx + db_ih + dW_hh h_{t−1} + W_hh dh_{t−1} + db_hh).

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : ElmanCache
            What ``step`` returned.
        ds_prev : (B, H) array or None
            Tangent of h_{t−1}; None for zero.
        dparams : dict {name: array} or None
            Tangents of the four parameters (shared by the batch); None for zero.
        dx : (B, I) array or None
            Tangent of x_t; None for zero.

        Returns
        -------
        (B, H) array
            The tangent dh_t (zeros if every tangent is None).

        Raises
        ------
        KeyError
            If ``params`` or ``dparams`` lacks a name of ``param_shapes()``.
        ValueError
            If the shapes do not fit (the array module's matmul error).
        """
        da_i, da_h = affine_jvp(params, cache.x, cache.h_prev, dparams, dx, ds_prev)
        return self.phi.grad(cache.h) * (da_i + da_h)

    def jacobians(self, params, cache):
        """Immediate Jacobians of one step in closed form, what RTRL (Williams & Zipser 1989) propagates.

        With D = φ'(a_t) (B, H): J_s[b] = diag(D[b]) W_hh and
        J_θ[b] = diag(D[b]) [I ⊗ x[b]ᵀ, I ⊗ h_{t−1}[b]ᵀ, I, I] (the Kronecker
        structure KF-RTRL exploits).  At batch 1 on NumPy this runs
        :func:`refnet.kernels.elman._elman_jacobians`.

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : ElmanCache
            What ``step`` returned.

        Returns
        -------
        J_s : (B, H, H) array
            ∂h_t/∂h_{t−1}.
        J_theta : (B, H, P) array
            ∂h_t/∂θ, P = H·I + H·H + 2H, columns in flatten order.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.  Cells do not
            validate on the hot path; the algorithms check their input once.
        ValueError
            If the shapes do not fit (the array module's matmul error; the
            batch-1 kernel path does not check shapes), or, at batch 1 on
            NumPy, ``REFNET_NUMBA`` is neither '0' nor '1'.
        """
        if cache.x.shape[0] == 1 and kernels.applicable(cache.x, cache.h_prev, params["weight_hh"]):
            return self._jacobians_kernel(params, cache)
        xp = xp_of(cache.x)
        D = self.phi.grad(cache.h)
        B, H = D.shape
        eye = xp.eye(H, dtype=D.dtype)
        J_s = D[:, :, None] * params["weight_hh"][None]
        diag = D[:, :, None] * eye[None]                                # (B, H, H)
        J_theta = xp.concatenate([
            (diag[:, :, :, None] * cache.x[:, None, None, :]).reshape(B, H, -1),
            (diag[:, :, :, None] * cache.h_prev[:, None, None, :]).reshape(B, H, -1),
            diag,
            diag,
        ], axis=2)
        return J_s, J_theta

    def kronecker_factors(self, params, cache):
        """The factors of J_θ that KF-RTRL (Mujika, Meier & Steger 2018) keeps apart.

        For every parameter k, ∂h_t/∂θ_k = diag(D) ⊗ ĥ_kᵀ (θ_k flattened in C
        order, so column i·m + j is entry [i, j]) with D = φ'(a_t) and
        ĥ = x_t for weight_ih, h_{t−1} for weight_hh and 1 for each bias.

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with (unused: the factors do not involve θ).
        cache : ElmanCache
            What ``step`` returned.

        Returns
        -------
        D : (B, H) array
            φ'(a_t).
        h_hat : dict {name: (B, m_name) array}
            ĥ per parameter, in ``param_shapes`` order: x_t (B, I), h_{t−1} (B, H),
            and ones (B, 1) for each bias (the same array twice).

        Raises
        ------
        AttributeError
            If ``cache`` lacks ``x``, ``h_prev`` or ``h`` (it is not an :class:`ElmanCache`).
        """
        xp = xp_of(cache.x)
        one = xp.ones((cache.x.shape[0], 1), dtype=cache.x.dtype)
        return self.phi.grad(cache.h), {"weight_ih": cache.x, "weight_hh": cache.h_prev,
                                        "bias_ih": one, "bias_hh": one}

    def state_jacobian(self, params, cache):
        """J_s = diag(φ'(a_t)) W_hh alone, without J_θ's O(H·P) cost (the solvers and SnAp use it).

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : ElmanCache
            What ``step`` returned.

        Returns
        -------
        (B, H, H) array
            ∂h_t/∂h_{t−1} for every example.

        Raises
        ------
        KeyError
            If ``params`` lacks ``weight_hh``.
        ValueError
            If ``weight_hh`` does not broadcast against (B, H, H) (the array module's error).
        """
        return self.phi.grad(cache.h)[:, :, None] * params["weight_hh"][None]

    def jacobian_pattern(self, params):
        """Structural nonzero patterns of J_s and J_θ for SnAp (:mod:`refnet.cells.patterns`).

        J_s[i, j] can be nonzero iff W_hh[i, j] ≠ 0; row i of every parameter
        acts on unit i only.

        Parameters
        ----------
        params : dict {name: array}
            The parameters (only weight_hh's zeros are read, on the host).

        Returns
        -------
        S : (H, H) numpy bool array
            W_hh ≠ 0.
        Theta : (H, P) numpy bool array
            J_θ's pattern, columns in flatten order.

        Raises
        ------
        KeyError
            If ``params`` lacks ``weight_hh``.
        """
        return (to_numpy(params["weight_hh"]) != 0,
                row_pattern(self.param_shapes(), numpy.eye(self.hidden_size, dtype=bool)))

    def steps(self, params, s0, xs, t=None):
        """k transitions h_j = φ(W_ih x_j + b_ih + W_hh h_{j−1} + b_hh), j = 1..k, from h_0 = s0.

        At batch 1 on NumPy one numba call runs them all
        (:func:`refnet.kernels.elman._elman_steps`); otherwise ``Cell.steps``
        loops over :meth:`step`.

        Parameters
        ----------
        params : dict {name: array}
            The cell's parameters.
        s0 : (B, H) array
            h_0.
        xs : sequence of k (B, I) arrays, or a (k, B, I) array
            The inputs x_1..x_k (k >= 1).
        t : int or None
            Time index of the first transition; unused (time-invariant cell).

        Returns
        -------
        states : (k + 1, B, H) array on the kernel path, else a list of k + 1 (B, H) arrays
            states[j] = h_j, states[0] = h_0.
        trace : ElmanSteps on the kernel path, else a list of k ElmanCache
            What :meth:`steps_vjp` reads.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.  Cells do not
            validate on the hot path; the algorithms check their input once.
        ValueError
            If the shapes do not fit (the array module's matmul error; the
            batch-1 kernel path does not check shapes), or, at batch 1 on
            NumPy, ``REFNET_NUMBA`` is neither '0' nor '1'.
        IndexError
            If ``xs`` is empty at batch 1 (at B > 1 an empty ``xs`` gives ``([s0], [])``).
        """
        if s0.shape[0] == 1 and kernels.applicable(s0, xs[0], params["weight_hh"]):
            xs = numpy.stack(xs)
            hs = numpy.empty((xs.shape[0] + 1,) + s0.shape, dtype=s0.dtype)
            hs[0] = s0
            kernels.load("elman")._elman_steps(params["weight_ih"], params["weight_hh"], params["bias_ih"],
                                               params["bias_hh"], xs, self.nonlinearity == "relu", hs)
            return hs, ElmanSteps(xs, hs)
        return super().steps(params, s0, xs, t)

    def steps_vjp(self, params, trace, ds):
        """Back through :meth:`steps` from a cotangent ds on h_k alone.

        An :class:`ElmanSteps` trace goes through one numba call
        (:func:`refnet.kernels.elman._elman_steps_vjp`); a list of caches
        through ``Cell.steps_vjp``'s loop over :meth:`step_vjp`.

        Parameters
        ----------
        params : dict {name: array}
            The parameters :meth:`steps` ran with.
        trace : ElmanSteps or list of ElmanCache
            What :meth:`steps` returned.
        ds : (B, H) array
            Cotangent of h_k.

        Returns
        -------
        ds0 : (B, H) array
            Cotangent of h_0.
        dparams : dict {name: array}
            Cotangents of the four parameters, summed over the k steps and the batch.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.
        ValueError
            On the list path, shapes that do not fit (the array module's
            matmul error); the kernel path does not check shapes.
        """
        if not isinstance(trace, ElmanSteps):
            return super().steps_vjp(params, trace, ds)
        W_ih, W_hh = params["weight_ih"], params["weight_hh"]
        dh0, da = numpy.empty_like(ds), numpy.empty_like(ds)
        dW_ih, dW_hh, db = numpy.empty_like(W_ih), numpy.empty_like(W_hh), numpy.empty_like(params["bias_ih"])
        kernels.load("elman")._elman_steps_vjp(W_ih, W_hh, trace.xs, trace.hs, ds, self.nonlinearity == "relu",
                                               dh0, dW_ih, dW_hh, db, da)
        return dh0, {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}

    def fused_sequence(self, params, x, s0):
        """The whole run h_t = φ(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh), t = 1..T (Elman 1990), fused.

        W_ih x_t + b_ih + b_hh for all t is one GEMM over the T·B rows; per
        step, one product h_{t−1} W_hhᵀ and φ, in one numba kernel for the
        whole loop on NumPy while B·H <= ``FORWARD_KERNEL_MAX_BLOCK``
        (:func:`refnet.kernels.fused._elman_forward`), the array loop below
        otherwise.  Equal to T calls of :meth:`step` (``Cell.fused_sequence``).

        Parameters
        ----------
        params : dict {name: array}
            The cell's parameters.
        x : (T, B, I) array
            Inputs; x[t − 1] is x_t.
        s0 : (B, H) array
            h_0.

        Returns
        -------
        outputs : (T, B, H) array
            h_1..h_T: a view of ``trace.hs[1:]``, so writing into it changes the trace.
        s_T : (B, H) array
            h_T (a copy).
        trace : ElmanFused
            What :meth:`fused_sequence_vjp` reads.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.
        ValueError
            If ``x`` is not 3-D, or the shapes do not fit (the array module's
            matmul or assignment error), or ``REFNET_NUMBA`` is neither '0' nor '1'.
        TypeError
            If ``x`` and ``s0`` mix NumPy and device (CuPy) arrays.
        """
        xp = xp_of(x, s0)
        T, B, _ = x.shape
        XW = input_projection(x, params["weight_ih"], params["bias_ih"] + params["bias_hh"])
        hs = xp.empty((T + 1, B, self.hidden_size), dtype=x.dtype)
        hs[0] = s0
        W_hh = params["weight_hh"]
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.elman_forward(device, self.nonlinearity, XW, W_hh, hs)
        elif forward_kernel_applies(B * self.hidden_size, XW, hs, W_hh):
            kernels.load("fused")._elman_forward(XW, numpy.ascontiguousarray(W_hh), self._code, hs,
                                                 numpy.empty_like(s0, order="C"))
        else:
            for t in range(T):
                hs[t + 1] = self.phi.fn(XW[t] + hs[t] @ W_hh.T)
        return hs[1:], hs[T].copy(), ElmanFused(x, hs)

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """VJP of :meth:`fused_sequence` over the window of steps start+1..start+n.

        Per step, back to front: da_t = (dh_t + dout_t) ⊙ φ'(a_t) and
        dh_{t−1} = da_t W_hh (numba :func:`refnet.kernels.fused._elman_backward`
        on NumPy); then dW_ih, dW_hh, the biases and dx each as one GEMM or
        sum over the window's n·B rows (``Cell.fused_sequence_vjp``).

        Parameters
        ----------
        params : dict {name: array}
            The parameters :meth:`fused_sequence` ran with.
        trace : ElmanFused
            What :meth:`fused_sequence` returned.
        dout : (n, B, H) array
            Cotangents of h_t as outputs, t = start+1..start+n.
        ds_last : (B, H) array
            Cotangent of the state h_{start+n} (not copied into; left unchanged).
        start : int
            The window starts from h_start, 0 <= start and start + n <= T
            (not checked: the algorithms pass windows inside the run).

        Returns
        -------
        ds_start : (B, H) array
            Cotangent of h_start.
        dparams : dict {name: array}
            Cotangents of the four parameters, summed over the window's steps and the batch.
        dx : (n, B, I) array
            Cotangents of x_t, t = start+1..start+n.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.
        ValueError
            If ``dout`` is not 3-D or the shapes do not fit (the array
            module's matmul error), or ``REFNET_NUMBA`` is neither '0' nor '1'.
        IndexError
            If start + n > T on the array path (the kernel path reads past
            the trace, then fails with a ValueError).
        TypeError
            If ``dout`` and ``ds_last`` mix NumPy and device (CuPy) arrays.
        """
        xp = xp_of(dout, ds_last)
        n, B, H = dout.shape
        W_ih, W_hh = params["weight_ih"], params["weight_hh"]
        dA = xp.empty((n, B, H), dtype=dout.dtype)
        dh = ds_last.copy()
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.elman_backward(device, self.nonlinearity, W_hh, trace.hs, dout, start, dh, dA)
        elif kernels.applicable(dout, dh, trace.hs, W_hh):
            kernels.load("fused")._elman_backward(numpy.ascontiguousarray(W_hh), trace.hs,
                                                  numpy.ascontiguousarray(dout), start, self._code, dh, dA)
        else:
            for j in range(n - 1, -1, -1):
                dA[j] = (dh + dout[j]) * self.phi.grad(trace.hs[start + j + 1])
                dh = dA[j] @ W_hh
        x = trace.x[start:start + n]
        db = dA.sum(axis=(0, 1))
        dparams = {"weight_ih": summed_outer(dA, x), "weight_hh": summed_outer(dA, trace.hs[start:start + n]),
                   "bias_ih": db, "bias_hh": db.copy()}
        return dh, dparams, (dA.reshape(n * B, H) @ W_ih).reshape(n, B, x.shape[2])

    @property
    def _code(self):
        """φ's code for :mod:`refnet.kernels.fused`."""
        return 2 if self.nonlinearity == "relu" else 1

    def _step_kernel(self, params, s_prev, x):
        """``step`` by :func:`refnet.kernels.elman._elman_step`."""
        h = numpy.empty_like(s_prev)
        kernels.load("elman")._elman_step(params["weight_ih"], params["weight_hh"], params["bias_ih"],
                                          params["bias_hh"], x, s_prev, self.nonlinearity == "relu", h)
        return h, ElmanCache(x, s_prev, h)

    def _step_vjp_kernel(self, params, cache, ds):
        """``step_vjp`` by :func:`refnet.kernels.elman._elman_step_vjp`."""
        W_ih, W_hh = params["weight_ih"], params["weight_hh"]
        dh_prev, dx = numpy.empty_like(cache.h_prev), numpy.empty_like(cache.x)
        dW_ih, dW_hh, db = numpy.empty_like(W_ih), numpy.empty_like(W_hh), numpy.empty_like(params["bias_ih"])
        kernels.load("elman")._elman_step_vjp(W_ih, W_hh, cache.x, cache.h_prev, cache.h, ds,
                                              self.nonlinearity == "relu", dh_prev, dW_ih, dW_hh, db, dx)
        return dh_prev, {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}, dx

    def _jacobians_kernel(self, params, cache):
        """``jacobians`` by :func:`refnet.kernels.elman._elman_jacobians`."""
        B, H, I = cache.x.shape[0], self.hidden_size, self.input_size
        J_s = numpy.empty((B, H, H), dtype=cache.x.dtype)
        J_theta = numpy.empty((B, H, H * I + H * H + 2 * H), dtype=cache.x.dtype)
        kernels.load("elman")._elman_jacobians(params["weight_hh"], cache.x, cache.h_prev, cache.h,
                                               self.nonlinearity == "relu", J_s, J_theta)
        return J_s, J_theta


@dataclass(frozen=True)
class IRNN(ElmanRNN):
    """iRNN (Le, Jaitly & Hinton 2015): a ReLU Elman RNN initialised with W_hh = scale·I.

    Zero biases and W_ih ~ N(0, input_std²) at init; after that it is the
    :class:`ElmanRNN` with φ = ReLU.

    Parameters
    ----------
    input_size : int
        I >= 1.
    hidden_size : int
        H >= 1.
    nonlinearity : {'relu'}
        Must stay 'relu'.
    scale : float
        The factor of the identity in W_hh at init (1 in the paper), finite.
    input_std : float
        Standard deviation of W_ih's entries at init (1e-3 by default), finite and >= 0.

    Raises
    ------
    ValueError
        If a size is not a positive int, ``nonlinearity`` is not 'relu', ``scale`` is not
        finite, or ``input_std`` is negative or not finite.
    TypeError
        If ``scale`` or ``input_std`` is not a real number (a bool is refused).
    """

    nonlinearity: str = "relu"
    scale: float = 1.0
    input_std: float = 1e-3

    def __post_init__(self):
        super().__post_init__()
        if self.nonlinearity != "relu":
            raise ValueError(f"nonlinearity of an IRNN must be 'relu', got {self.nonlinearity!r}")
        check_number("scale", self.scale)
        check_number("input_std", self.input_std, low=0.0)      # a standard deviation

    def init(self, rng):
        """Le, Jaitly & Hinton (2015): identity recurrence, zero biases, small Gaussian input weights.

        Parameters
        ----------
        rng : refnet.backend.Rng
            The random source (``refnet.rng(seed)``); W_ih is drawn in its dtype
            and the other parameters follow W_ih's dtype and backend.

        Returns
        -------
        dict {name: array}
            weight_ih ~ N(0, input_std²) (H, I), weight_hh = scale·I (H, H),
            bias_ih = bias_hh = 0 (H,).

        Raises
        ------
        AttributeError
            If ``rng`` has no ``normal`` method.
        """
        H, I = self.hidden_size, self.input_size
        weight_ih = rng.normal((H, I), self.input_std)
        xp, dtype = xp_of(weight_ih), weight_ih.dtype
        return {
            "weight_ih": weight_ih,
            "weight_hh": self.scale * xp.eye(H, dtype=dtype),
            "bias_ih": xp.zeros(H, dtype=dtype),
            "bias_hh": xp.zeros(H, dtype=dtype),
        }
