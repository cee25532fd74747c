"""LSTM (Hochreiter & Schmidhuber 1997; forget gate: Gers, Schmidhuber & Cummins 2000) in PyTorch nn.LSTM's form.

    [a_i, a_f, a_g, a_o] = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
    i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
    c_t = f ⊙ c_{t−1} + i ⊙ g,      h_t = o ⊙ tanh(c_t)

Gates stacked i, f, g, o in weight_ih (4H, I) and weight_hh (4H, H).
The state is s = [h, c] (B, 2H); the output is h.
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

__all__ = ["LSTM", "LSTMCache", "LSTMFused"]


class LSTMCache(NamedTuple):
    """What ``LSTM.step`` keeps for its VJP and JVP: the inputs of the step and its gate values.

    The gates' derivatives are read from their outputs (σ' = y(1 − y), tanh' = 1 − y²).

    Attributes
    ----------
    x : (B, I) array
        The step's input x_t.
    h_prev : (B, H) array
        h_{t−1}.
    c_prev : (B, H) array
        c_{t−1}.
    i : (B, H) array
        Input gate σ(a_i).
    f : (B, H) array
        Forget gate σ(a_f).
    g : (B, H) array
        Cell candidate tanh(a_g).
    o : (B, H) array
        Output gate σ(a_o).
    tanh_c : (B, H) array
        tanh(c_t).
    """

    x: object       # (B, I)
    h_prev: object  # (B, H)
    c_prev: object  # (B, H)
    i: object       # (B, H) input gate
    f: object       # (B, H) forget gate
    g: object       # (B, H) cell candidate
    o: object       # (B, H) output gate
    tanh_c: object  # (B, H) tanh(c_t)


class LSTMFused(NamedTuple):
    """The trace of ``LSTM.fused_sequence``, every array preallocated over the run.

    Attributes
    ----------
    x : (T, B, I) array
        The inputs x_1..x_T.
    hs : (T + 1, B, H) array
        h_0..h_T (hs[0] = h_0).
    cs : (T + 1, B, H) array
        c_0..c_T (cs[0] = c_0).
    gates : (T, B, 4H) array
        The gate values i, f, g, o of every step, stacked in that order.
    tanh_c : (T, B, H) array
        tanh(c_t), t = 1..T.
    """

    x: object       # (T, B, I)
    hs: object      # (T + 1, B, H), hs[0] = h_0
    cs: object      # (T + 1, B, H), cs[0] = c_0
    gates: object   # (T, B, 4H): i, f, g, o of every step
    tanh_c: object  # (T, B, H)


@dataclass(frozen=True)
class LSTM(Cell):
    """LSTM cell with PyTorch's names and gate order (i, f, g, o); the state is s = [h, c].

    weight_ih (4H, I), weight_hh (4H, H), bias_ih, bias_hh (4H,), gate rows
    stacked i | f | g | o; n_state = 2H, n_out = H (the head reads h).

    Parameters
    ----------
    input_size : int
        I >= 1, the width of x_t.
    hidden_size : int
        H >= 1, the width of h_t and of c_t.

    Raises
    ------
    ValueError
        If a size is not a positive int (a bool is refused).
    """

    input_size: int
    hidden_size: int

    @property
    def n_state(self):
        """Width of the state s = [h, c]: 2H."""
        return 2 * self.hidden_size

    def param_shapes(self):
        """The parameters' names and shapes, in flatten (J_θ column) order.

        Returns
        -------
        dict {name: tuple of int}
            weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,).

        Raises
        ------
        None
            Nothing of its own: the sizes were checked when the cell was made.
        """
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (4 * H, I), "weight_hh": (4 * H, H), "bias_ih": (4 * H,), "bias_hh": (4 * H,)}

    def init(self, rng):
        """PyTorch's init for nn.LSTM: every entry U(−1/√H, 1/√H).

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

    def split_state(self, s):
        """(h, c) views of s = [h, c] (no copies).

        Parameters
        ----------
        s : (B, 2H) array
            A state, or a cotangent or tangent of one.

        Returns
        -------
        h : (B, H) array
            s[:, :H].
        c : (B, H) array
            s[:, H:].

        Raises
        ------
        IndexError
            If ``s`` is not 2-D.
        """
        H = self.hidden_size
        return s[:, :H], s[:, H:]

    def output(self, s):
        """The part of the state a head reads: h, a view of s[:, :H].

        Parameters
        ----------
        s : (B, 2H) array
            A state [h, c].

        Returns
        -------
        (B, H) array
            h.

        Raises
        ------
        IndexError
            If ``s`` is not 2-D.
        """
        return s[:, :self.hidden_size]

    def output_vjp(self, dy):
        """The cotangent on s = [h, c] for a cotangent dy on h: [dy, 0].

        Parameters
        ----------
        dy : (B, H) array
            Cotangent of ``output(s)`` = h.

        Returns
        -------
        (B, 2H) array
            [dy, 0], a new array.

        Raises
        ------
        ValueError
            If ``dy`` is not 2-D (the array module's concatenate error).
        """
        xp = xp_of(dy)
        return xp.concatenate([dy, xp.zeros_like(dy)], axis=1)

    def step(self, params, s_prev, x, t=None):
        """One LSTM transition (Hochreiter & Schmidhuber 1997; Gers et al. 2000's forget gate; PyTorch's form).

        [a_i, a_f, a_g, a_o] = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh;
        i, f, o = σ(a_i, a_f, a_o), g = tanh(a_g);
        c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t).

        Parameters
        ----------
        params : dict {name: array}
            weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,).
        s_prev : (B, 2H) array
            [h_{t−1}, c_{t−1}].
        x : (B, I) array
            x_t.
        t : int or None
            Time index; unused (the cell is time-invariant).

        Returns
        -------
        s : (B, 2H) array
            [h_t, c_t].
        cache : LSTMCache
            The step's inputs and gate values for the backward.

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
        xp = xp_of(s_prev, x)
        H = self.hidden_size
        h_prev, c_prev = self.split_state(s_prev)
        a = x @ params["weight_ih"].T + params["bias_ih"] + h_prev @ params["weight_hh"].T + params["bias_hh"]
        i = sigmoid.fn(a[:, :H])
        f = sigmoid.fn(a[:, H:2 * H])
        g = tanh.fn(a[:, 2 * H:3 * H])
        o = sigmoid.fn(a[:, 3 * H:])
        c = f * c_prev + i * g
        tanh_c = tanh.fn(c)
        h = o * tanh_c
        return xp.concatenate([h, c], axis=1), LSTMCache(x, h_prev, c_prev, i, f, g, o, tanh_c)

    def step_vjp(self, params, cache, ds):
        """VJP of one step: back through h = o ⊙ tanh(c), c = f ⊙ c_{t−1} + i ⊙ g, the gates and the affine maps.

        With dh, dc the two halves of ds: dc ← dc + dh ⊙ o ⊙ (1 − tanh²c);
        da_i = dc ⊙ g ⊙ σ'(a_i), da_f = dc ⊙ c_{t−1} ⊙ σ'(a_f),
        da_g = dc ⊙ i ⊙ tanh'(a_g), da_o = dh ⊙ tanh(c) ⊙ σ'(a_o);
        dc_{t−1} = dc ⊙ f and dh_{t−1} = da W_hh.

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : LSTMCache
            What ``step`` returned.
        ds : (B, 2H) array
            Cotangent of s_t = [h_t, c_t].

        Returns
        -------
        ds_prev : (B, 2H) array
            Cotangent of [h_{t−1}, c_{t−1}].
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
        dh, dc = self.split_state(ds)
        dc = dc + dh * cache.o * tanh.grad(cache.tanh_c)            # h_t depends on c_t too
        da = xp.concatenate([
            dc * cache.g * sigmoid.grad(cache.i),                    # ∂/∂a_i
            dc * cache.c_prev * sigmoid.grad(cache.f),               # ∂/∂a_f
            dc * cache.i * tanh.grad(cache.g),                       # ∂/∂a_g
            dh * cache.tanh_c * sigmoid.grad(cache.o),               # ∂/∂a_o
        ], axis=1)
        dparams, dx, dh_prev = affine_vjp(params, cache.x, cache.h_prev, da, da)
        return xp.concatenate([dh_prev, dc * cache.f], axis=1), dparams, dx

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """JVP of one step: tangents of the gates, then dc_t = df c_{t−1} + f dc_{t−1} + di g + i dg and dh_t.

        dh_t = do ⊙ tanh(c_t) + o ⊙ (1 − tanh²c_t) ⊙ dc_t; each gate tangent is
        its derivative times the tangent of its pre-activation.

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : LSTMCache
            What ``step`` returned.
        ds_prev : (B, 2H) array or None
            Tangent of [h_{t−1}, c_{t−1}]; None for zero.
        dparams : dict {name: array} or None
            Tangents of the four parameters (shared by the batch); None for zero.
        dx : (B, I) array or None
            Tangent of x_t; None for zero.

        Returns
        -------
        (B, 2H) array
            The tangent [dh_t, dc_t].

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
        dh_prev, dc_prev = (None, 0.0) if ds_prev is None else self.split_state(ds_prev)
        da_i, da_h = affine_jvp(params, cache.x, cache.h_prev, dparams, dx, dh_prev)
        da = da_i + da_h + xp.zeros((cache.x.shape[0], 4 * H), dtype=cache.x.dtype)
        di = sigmoid.grad(cache.i) * da[:, :H]
        df = sigmoid.grad(cache.f) * da[:, H:2 * H]
        dg = tanh.grad(cache.g) * da[:, 2 * H:3 * H]
        do = sigmoid.grad(cache.o) * da[:, 3 * H:]
        dc = df * cache.c_prev + cache.f * dc_prev + di * cache.g + cache.i * dg
        dh = do * cache.tanh_c + cache.o * tanh.grad(cache.tanh_c) * dc
        return xp.concatenate([dh, dc], axis=1)

    def jacobian_pattern(self, params):
        """Structural nonzero patterns (NumPy bool) of J_s (2H, 2H) and J_θ (2H, P) on s = [h, c], for SnAp.

        c_i reads c_i (f ⊙ c_{t−1}) and h_j through the i, f, g rows W_hh[·, j] of unit i; h_i =
        o_i tanh(c_i) reads c_i and h_j through all four gate rows.  Row i of gate blocks i, f, g of
        every parameter acts on c_i and h_i; row i of the o block on h_i alone.

        Parameters
        ----------
        params : dict {name: array}
            The parameters (only weight_hh's zeros are read, on the host).

        Returns
        -------
        S : (2H, 2H) numpy bool array
            Where ∂s_t/∂s_{t−1} can be nonzero.
        Theta : (2H, P) numpy bool array
            Where ∂s_t/∂θ can be nonzero, columns in flatten order.

        Raises
        ------
        KeyError
            If ``params`` lacks ``weight_hh``.
        ValueError
            If ``weight_hh`` does not have 4H rows (the gate blocks do not broadcast).
        """
        H = self.hidden_size
        W = to_numpy(params["weight_hh"]) != 0
        eye = numpy.eye(H, dtype=bool)
        into_c = W[:H] | W[H:2 * H] | W[2 * H:3 * H]
        S = numpy.block([[into_c | W[3 * H:], eye], [into_c, eye]])
        no = numpy.zeros((H, H), dtype=bool)
        owner = numpy.block([[eye, eye], [eye, eye], [eye, eye], [eye, no]])   # gate rows i, f, g, o -> [h, c]
        return S, row_pattern(self.param_shapes(), owner)

    def fused_sequence(self, params, x, s0):
        """The whole run of :meth:`step` over t = 1..T (Hochreiter & Schmidhuber 1997; PyTorch's gate order), fused.

        The gate pre-activations' input part x_t W_ihᵀ + b_ih + b_hh is one
        GEMM over all T·B rows; per step, one product h_{t−1} W_hhᵀ and the
        gate arithmetic, the whole loop in one numba kernel on NumPy while
        B·4H <= ``FORWARD_KERNEL_MAX_BLOCK``
        (:func:`refnet.kernels.fused._lstm_forward`), the array loop below
        otherwise (``Cell.fused_sequence``).

        Parameters
        ----------
        params : dict {name: array}
            The cell's parameters.
        x : (T, B, I) array
            Inputs; x[t − 1] is x_t.
        s0 : (B, 2H) array
            [h_0, c_0].

        Returns
        -------
        outputs : (T, B, H) array
            h_1..h_T: a view of ``trace.hs[1:]``, so writing into it changes the trace.
        s_T : (B, 2H) array
            [h_T, c_T] (a new array).
        trace : LSTMFused
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
        W_hh = params["weight_hh"]
        hs = xp.empty((T + 1, B, H), dtype=x.dtype)
        cs = xp.empty((T + 1, B, H), dtype=x.dtype)
        hs[0], cs[0] = self.split_state(s0)
        gates = xp.empty((T, B, 4 * H), dtype=x.dtype)
        tanh_c = xp.empty((T, B, H), dtype=x.dtype)
        device = fused_device.kernels_for(xp)
        if device is not None:
            XW = input_projection(x, params["weight_ih"], params["bias_ih"] + params["bias_hh"])
            fused_device.lstm_forward(device, XW, W_hh, hs, cs, gates, tanh_c)
            return hs[1:], xp.concatenate([hs[T], cs[T]], axis=1), LSTMFused(x, hs, cs, gates, tanh_c)
        if forward_kernel_applies(B * 4 * H, x, hs, W_hh):
            XW = input_projection(x, params["weight_ih"], params["bias_ih"] + params["bias_hh"])
            kernels.load("fused")._lstm_forward(XW, numpy.ascontiguousarray(W_hh), hs, cs, gates, tanh_c,
                                                numpy.empty((B, 4 * H), dtype=x.dtype))
            return hs[1:], xp.concatenate([hs[T], cs[T]], axis=1), LSTMFused(x, hs, cs, gates, tanh_c)
        # σ(a) = (tanh(a/2) + 1)/2 (activations.sigmoid): the i, f, o rows of the weights and
        # biases are halved (exact in binary floating point), so one tanh takes all four gates.
        half = xp.ones((4, 1), dtype=x.dtype)
        half[[0, 1, 3]] = 0.5
        half = xp.broadcast_to(half, (4, H)).reshape(4 * H)
        XW = input_projection(x, params["weight_ih"] * half[:, None], (params["bias_ih"] + params["bias_hh"]) * half)
        W_half = W_hh * half[:, None]
        for t in range(T):
            a = gates[t]
            xp.matmul(hs[t], W_half.T, out=a)
            a += XW[t]
            xp.tanh(a, out=a)
            for sig in (a[:, :2 * H], a[:, 3 * H:]):
                sig *= 0.5
                sig += 0.5
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            xp.multiply(f, cs[t], out=cs[t + 1])
            cs[t + 1] += i * g
            xp.tanh(cs[t + 1], out=tanh_c[t])
            xp.multiply(o, tanh_c[t], out=hs[t + 1])
        return hs[1:], xp.concatenate([hs[T], cs[T]], axis=1), LSTMFused(x, hs, cs, gates, tanh_c)

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """VJP of :meth:`fused_sequence` over the window of steps start+1..start+n.

        Per step, back to front, :meth:`step_vjp`'s gate arithmetic and one
        product da W_hh (numba :func:`refnet.kernels.fused._lstm_backward` on
        NumPy); then dW_ih, dW_hh, the biases and dx each as one GEMM or sum
        over the window's n·B rows (``Cell.fused_sequence_vjp``).

        Parameters
        ----------
        params : dict {name: array}
            The parameters :meth:`fused_sequence` ran with.
        trace : LSTMFused
            What :meth:`fused_sequence` returned.
        dout : (n, B, H) array
            Cotangents of the outputs h_t, t = start+1..start+n.
        ds_last : (B, 2H) array
            Cotangent of the state [h, c]_{start+n} (left unchanged).
        start : int
            The window starts from s_start, 0 <= start and start + n <= T
            (not checked: the algorithms pass windows inside the run).

        Returns
        -------
        ds_start : (B, 2H) array
            Cotangent of [h_start, c_start].
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
        dA = xp.empty((n, B, 4 * H), dtype=dout.dtype)
        dh, dc = ds_last[:, :H].copy(), ds_last[:, H:].copy()
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.lstm_backward(device, W_hh, trace.cs, trace.gates, trace.tanh_c, dout, start, dh, dc, dA)
        elif kernels.applicable(dout, dh, trace.hs, W_hh):
            kernels.load("fused")._lstm_backward(numpy.ascontiguousarray(W_hh), trace.cs, trace.gates,
                                                 trace.tanh_c, numpy.ascontiguousarray(dout), start, dh, dc, dA)
        else:
            for j in range(n - 1, -1, -1):
                t = start + j
                i, f, g, o = (trace.gates[t, :, k * H:(k + 1) * H] for k in range(4))
                dh_t = dh + dout[j]
                dc = dc + dh_t * o * tanh.grad(trace.tanh_c[t])
                dA[j] = xp.concatenate([dc * g * sigmoid.grad(i), dc * trace.cs[t] * sigmoid.grad(f),
                                        dc * i * tanh.grad(g), dh_t * trace.tanh_c[t] * sigmoid.grad(o)], axis=1)
                dc = dc * f
                dh = dA[j] @ W_hh
        x = trace.x[start:start + n]
        db = dA.sum(axis=(0, 1))
        dparams = {"weight_ih": summed_outer(dA, x), "weight_hh": summed_outer(dA, trace.hs[start:start + n]),
                   "bias_ih": db, "bias_hh": db.copy()}
        dx = (dA.reshape(n * B, 4 * H) @ W_ih).reshape(n, B, x.shape[2])
        return xp.concatenate([dh, dc], axis=1), dparams, dx
