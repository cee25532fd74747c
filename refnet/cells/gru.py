"""GRU (Cho et al. 2014) in PyTorch nn.GRU's form.

    [a_ir, a_iz, a_in] = W_ih x_t + b_ih,      [a_hr, a_hz, a_hn] = W_hh h_{t−1} + b_hh
    r = σ(a_ir + a_hr),  z = σ(a_iz + a_hz),  n = tanh(a_in + r ⊙ a_hn)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

The reset gate multiplies W_hn h + b_hn *after* the product (PyTorch; Cho et
al. 2014, Eq. 8 applies r to h before it: U(r ⊙ h_{t−1})).  The gates are Cho
et al.'s Eqs. 5–6 and the interpolation their Eq. 7.  Gates stacked r, z, n.
The state is h.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from .. import kernels
from ..kernels import fused_device
from ..backend import to_numpy, xp_of
from .activations import sigmoid, tanh
from .base import Cell, affine_jvp, affine_vjp, forward_kernel_applies, input_projection, summed_outer
from .patterns import row_pattern

__all__ = ["GRU", "GRUCache", "GRUFused"]


class GRUCache(NamedTuple):
    """What ``GRU.step`` keeps for its VJP and JVP: the step's inputs, gate values and a_hn.

    Attributes
    ----------
    x : (B, I) array
        The step's input x_t.
    h_prev : (B, H) array
        h_{t−1}.
    r : (B, H) array
        Reset gate σ(a_ir + a_hr).
    z : (B, H) array
        Update gate σ(a_iz + a_hz).
    n : (B, H) array
        Candidate tanh(a_in + r ⊙ a_hn).
    a_hn : (B, H) array
        W_hn h_{t−1} + b_hn, which r multiplies.
    """

    x: object       # (B, I)
    h_prev: object  # (B, H)
    r: object       # (B, H) reset gate
    z: object       # (B, H) update gate
    n: object       # (B, H) candidate
    a_hn: object    # (B, H) W_hn h_{t−1} + b_hn, which r multiplies


class GRUFused(NamedTuple):
    """The trace of ``GRU.fused_sequence``, every array preallocated over the run.

    Attributes
    ----------
    x : (T, B, I) array
        The inputs x_1..x_T.
    hs : (T + 1, B, H) array
        h_0..h_T (hs[0] = h_0).
    gates : (T, B, 3H) array
        The gate values r, z, n of every step, stacked in that order.
    a_hn : (T, B, H) array
        W_hn h_{t−1} + b_hn of every step, which r multiplies.
    """

    x: object      # (T, B, I)
    hs: object     # (T + 1, B, H), hs[0] = h_0
    gates: object  # (T, B, 3H): r, z, n of every step
    a_hn: object   # (T, B, H): W_hn h_{t−1} + b_hn, which r multiplies


@dataclass(frozen=True)
class GRU(Cell):
    """GRU cell (Cho et al. 2014) with PyTorch's names, form and gate order (r, z, n); the state is h.

    weight_ih (3H, I), weight_hh (3H, H), bias_ih, bias_hh (3H,), gate rows
    stacked r | z | n; n_state = n_out = H.

    Parameters
    ----------
    input_size : int
        I >= 1, the width of x_t.
    hidden_size : int
        H >= 1, the width of h_t.

    Raises
    ------
    ValueError
        If a size is not a positive int (a bool is refused).
    """

    input_size: int
    hidden_size: int

    def param_shapes(self):
        """The parameters' names and shapes, in flatten (J_θ column) order.

        Returns
        -------
        dict {name: tuple of int}
            weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,).

        Raises
        ------
        None
            Nothing of its own: the sizes were checked when the cell was made.
        """
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (3 * H, I), "weight_hh": (3 * H, H), "bias_ih": (3 * H,), "bias_hh": (3 * H,)}

    def init(self, rng):
        """PyTorch's init for nn.GRU: every entry U(−1/√H, 1/√H).

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
        """One GRU transition (Cho et al. 2014, Eqs. 5–7; the candidate in PyTorch's form).

        r = σ(a_ir + a_hr), z = σ(a_iz + a_hz), n = tanh(a_in + r ⊙ a_hn),
        h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}, with [a_ir, a_iz, a_in] = W_ih x_t + b_ih
        and [a_hr, a_hz, a_hn] = W_hh h_{t−1} + b_hh.

        Parameters
        ----------
        params : dict {name: array}
            weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,).
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
        cache : GRUCache
            The step's inputs, gate values and a_hn for the backward.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.  Cells do not
            validate on the hot path; the algorithms check their input once.
        ValueError
            If the shapes do not fit (the array module's matmul, broadcast or
            concatenate error).
        TypeError
            If NumPy and device (CuPy) arrays are mixed.
        """
        H = self.hidden_size
        a_i = x @ params["weight_ih"].T + params["bias_ih"]
        a_h = s_prev @ params["weight_hh"].T + params["bias_hh"]
        r = sigmoid.fn(a_i[:, :H] + a_h[:, :H])
        z = sigmoid.fn(a_i[:, H:2 * H] + a_h[:, H:2 * H])
        a_hn = a_h[:, 2 * H:]
        n = tanh.fn(a_i[:, 2 * H:] + r * a_hn)
        h = (1.0 - z) * n + z * s_prev
        return h, GRUCache(x, s_prev, r, z, n, a_hn)

    def step_vjp(self, params, cache, ds):
        """VJP of one step: back through the interpolation, the candidate, the gates and the affine maps.

        With dn̂ = ds ⊙ (1 − z) ⊙ tanh'(·) the cotangent of n's pre-activation:
        dr̂ = dn̂ ⊙ a_hn ⊙ σ'(·), dẑ = ds ⊙ (h_{t−1} − n) ⊙ σ'(·);
        da_i = [dr̂, dẑ, dn̂], da_h = [dr̂, dẑ, dn̂ ⊙ r];
        ds_{t−1} = da_h W_hh + ds ⊙ z.

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : GRUCache
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
            If the shapes do not fit (the array module's matmul, broadcast or
            concatenate error).
        TypeError
            If NumPy and device (CuPy) arrays are mixed.
        """
        xp = xp_of(ds)
        dn_pre = ds * (1.0 - cache.z) * tanh.grad(cache.n)              # ∂/∂(a_in + r a_hn)
        dr_pre = dn_pre * cache.a_hn * sigmoid.grad(cache.r)           # ∂/∂(a_ir + a_hr)
        dz_pre = ds * (cache.h_prev - cache.n) * sigmoid.grad(cache.z)  # ∂/∂(a_iz + a_hz)
        da_i = xp.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        da_h = xp.concatenate([dr_pre, dz_pre, dn_pre * cache.r], axis=1)
        dparams, dx, dh_prev = affine_vjp(params, cache.x, cache.h_prev, da_i, da_h)
        return dh_prev + ds * cache.z, dparams, dx

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """JVP of one step: dh_t = (1 − z) ⊙ dn + dz ⊙ (h_{t−1} − n) + z ⊙ dh_{t−1}.

        dr, dz are the gates' derivatives times their pre-activations'
        tangents; dn = tanh'(·) ⊙ (da_in + dr ⊙ a_hn + r ⊙ da_hn).

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : GRUCache
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
            The tangent dh_t.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.  Cells do not
            validate on the hot path; the algorithms check their input once.
        ValueError
            If the shapes do not fit (the array module's matmul, broadcast or
            concatenate error).
        TypeError
            If NumPy and device (CuPy) arrays are mixed.
        """
        xp = xp_of(cache.x)
        H = self.hidden_size
        zero = xp.zeros((cache.x.shape[0], 3 * H), dtype=cache.x.dtype)
        da_i, da_h = affine_jvp(params, cache.x, cache.h_prev, dparams, dx, ds_prev)
        da_i, da_h = da_i + zero, da_h + zero
        dr = sigmoid.grad(cache.r) * (da_i[:, :H] + da_h[:, :H])
        dz = sigmoid.grad(cache.z) * (da_i[:, H:2 * H] + da_h[:, H:2 * H])
        dn = tanh.grad(cache.n) * (da_i[:, 2 * H:] + dr * cache.a_hn + cache.r * da_h[:, 2 * H:])
        dh = (1.0 - cache.z) * dn + dz * (cache.h_prev - cache.n)
        if ds_prev is not None:
            dh = dh + cache.z * ds_prev
        return dh

    def jacobian_pattern(self, params):
        """Structural nonzero patterns (NumPy bool) of J_s (H, H) and J_θ (H, P), for SnAp.

        h_i reads h_j through W_hr, W_hz or W_hn [i, j] and always reads h_i (z ⊙ h_{t−1});
        row i of each gate block (r, z, n) of every parameter acts on h_i alone.

        Parameters
        ----------
        params : dict {name: array}
            The parameters (only weight_hh's zeros are read, on the host).

        Returns
        -------
        S : (H, H) numpy bool array
            Where ∂h_t/∂h_{t−1} can be nonzero.
        Theta : (H, P) numpy bool array
            Where ∂h_t/∂θ can be nonzero, columns in flatten order.

        Raises
        ------
        KeyError
            If ``params`` lacks ``weight_hh``.
        ValueError
            If ``weight_hh``'s three (·, H) gate blocks do not broadcast against (H, H).
        """
        H = self.hidden_size
        W = to_numpy(params["weight_hh"]) != 0
        S = W[:H] | W[H:2 * H] | W[2 * H:] | numpy.eye(H, dtype=bool)
        return S, row_pattern(self.param_shapes(), numpy.tile(numpy.eye(H, dtype=bool), (3, 1)))

    def fused_sequence(self, params, x, s0):
        """The whole run of :meth:`step` over t = 1..T (Cho et al. 2014, PyTorch's form), fused.

        x_t W_ihᵀ + b_ih is one GEMM over all T·B rows (b_hh stays inside,
        since r multiplies W_hn h + b_hn); per step, one product h_{t−1} W_hhᵀ
        and the gate arithmetic, the whole loop in one numba kernel on NumPy
        while B·3H <= ``FORWARD_KERNEL_MAX_BLOCK``
        (:func:`refnet.kernels.fused._gru_forward`), the array loop below
        otherwise (``Cell.fused_sequence``).

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
        trace : GRUFused
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
        H = self.hidden_size
        hs = xp.empty((T + 1, B, H), dtype=x.dtype)
        hs[0] = s0
        gates = xp.empty((T, B, 3 * H), dtype=x.dtype)
        a_hn = xp.empty((T, B, H), dtype=x.dtype)
        W_hh, b_hh = params["weight_hh"], params["bias_hh"]
        device = fused_device.kernels_for(xp)
        if device is not None:
            XI = input_projection(x, params["weight_ih"], params["bias_ih"])
            fused_device.gru_forward(device, XI, W_hh, b_hh, hs, gates, a_hn)
            return hs[1:], hs[T].copy(), GRUFused(x, hs, gates, a_hn)
        if forward_kernel_applies(B * 3 * H, x, hs, W_hh, b_hh):
            XI = input_projection(x, params["weight_ih"], params["bias_ih"])
            kernels.load("fused")._gru_forward(XI, numpy.ascontiguousarray(W_hh), numpy.ascontiguousarray(b_hh),
                                               hs, gates, a_hn, numpy.empty((B, 3 * H), dtype=x.dtype))
            return hs[1:], hs[T].copy(), GRUFused(x, hs, gates, a_hn)
        # σ(a) = (tanh(a/2) + 1)/2 (activations.sigmoid): the r, z rows of both affine maps are
        # halved (exact in binary floating point), so one tanh takes both gates.
        half = xp.ones((3, 1), dtype=x.dtype)
        half[:2] = 0.5
        half = xp.broadcast_to(half, (3, H)).reshape(3 * H)
        XI = input_projection(x, params["weight_ih"] * half[:, None], params["bias_ih"] * half)
        W_half, b_half = W_hh * half[:, None], b_hh * half
        a_h = xp.empty((B, 3 * H), dtype=x.dtype)
        for t in range(T):
            xp.matmul(hs[t], W_half.T, out=a_h)
            a_h += b_half
            rz = gates[t, :, :2 * H]
            xp.add(XI[t, :, :2 * H], a_h[:, :2 * H], out=rz)
            xp.tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5
            r, z, n = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
            a_hn[t] = a_h[:, 2 * H:]
            xp.multiply(r, a_hn[t], out=n)
            n += XI[t, :, 2 * H:]
            xp.tanh(n, out=n)
            xp.subtract(hs[t], n, out=hs[t + 1])          # h = (1 − z) n + z h_prev = n + z (h_prev − n)
            hs[t + 1] *= z
            hs[t + 1] += n
        return hs[1:], hs[T].copy(), GRUFused(x, hs, gates, a_hn)

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """VJP of :meth:`fused_sequence` over the window of steps start+1..start+n.

        Per step, back to front, :meth:`step_vjp`'s gate arithmetic and one
        product da_h W_hh (numba :func:`refnet.kernels.fused._gru_backward` on
        NumPy); then dW_ih, dW_hh, the biases and dx each as one GEMM or sum
        over the window's n·B rows (``Cell.fused_sequence_vjp``).

        Parameters
        ----------
        params : dict {name: array}
            The parameters :meth:`fused_sequence` ran with.
        trace : GRUFused
            What :meth:`fused_sequence` returned.
        dout : (n, B, H) array
            Cotangents of the outputs h_t, t = start+1..start+n.
        ds_last : (B, H) array
            Cotangent of the state h_{start+n} (left unchanged).
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
        dA_i = xp.empty((n, B, 3 * H), dtype=dout.dtype)
        dA_h = xp.empty((n, B, 3 * H), dtype=dout.dtype)
        dh = ds_last.copy()
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.gru_backward(device, W_hh, trace.hs, trace.gates, trace.a_hn, dout, start, dh, dA_i, dA_h)
        elif kernels.applicable(dout, dh, trace.hs, W_hh):
            kernels.load("fused")._gru_backward(numpy.ascontiguousarray(W_hh), trace.hs, trace.gates, trace.a_hn,
                                                numpy.ascontiguousarray(dout), start, dh, dA_i, dA_h,
                                                numpy.empty_like(dh))
        else:
            for j in range(n - 1, -1, -1):
                t = start + j
                r, z, n_t = (trace.gates[t, :, k * H:(k + 1) * H] for k in range(3))
                dh_t = dh + dout[j]
                dn = dh_t * (1.0 - z) * tanh.grad(n_t)
                dr = dn * trace.a_hn[t] * sigmoid.grad(r)
                dz = dh_t * (trace.hs[t] - n_t) * sigmoid.grad(z)
                dA_i[j] = xp.concatenate([dr, dz, dn], axis=1)
                dA_h[j] = xp.concatenate([dr, dz, dn * r], axis=1)
                dh = dA_h[j] @ W_hh + dh_t * z
        x = trace.x[start:start + n]
        dparams = {"weight_ih": summed_outer(dA_i, x), "weight_hh": summed_outer(dA_h, trace.hs[start:start + n]),
                   "bias_ih": dA_i.sum(axis=(0, 1)), "bias_hh": dA_h.sum(axis=(0, 1))}
        dx = (dA_i.reshape(n * B, 3 * H) @ W_ih).reshape(n, B, x.shape[2])
        return dh, dparams, dx
