"""Online learners: one observation at a time, a gradient algorithm plus an optimiser.

Every learner has the same interface::

    learner = RTRLLearner(cell, head, theta, beta, Adagrad(0.1))
    for x_t, y_t in stream:              # x_t (B, I); y_t (B,) labels or (B, O) targets
        prediction, loss = learner.step(x_t, y_t)

``step`` is ``predict(x_t)`` — observe x_t, advance the state
s_t = f(θ, s_{t−1}, x_t) and return the head's output, the prediction made
before y_t is seen — then ``learn(y_t)``: take the loss
ℓ_t = mean_b ℓ(head(output(s_t))_b, y_t[b]), form the algorithm's gradient of
ℓ_t and let the optimiser update θ and β.  The learners differ only in how
∂ℓ_t/∂θ is formed through the past:

=================  ==========================================================
TBPTTLearner(k)    exact gradient of ℓ_t with the last k steps re-run under the
                   current θ from the state k steps back, held fixed (TBPTT(1, k))
RTRLLearner        ∂ℓ_t/∂s_t M_t, with M_t = J_s M_{t−1} + J_θ carried (RTRL)
UOROLearner        ∂ℓ_t/∂s_t s̃_t θ̃_tᵀ, a rank-one unbiased estimate of M_t (UORO)
KFRTRLLearner      ∂ℓ_t/∂s_t (A_t ⊗ u_t), a Kronecker-factored estimate (KF-RTRL)
FPPLearner         no gradient through the past: n one-step updates per step on
                   transitions replayed from a buffer of stored states (FPP)
SnApLearner(n)     ∂ℓ_t/∂s_t M̃_t, M̃_t RTRL's kept to the entries reachable in n steps (SnAp-n)
RFLOLearner        δ_t ⊙ E_t, a per-parameter trace without W_hh's non-local term (RFLO)
=================  ==========================================================

With the parameters changing online, RTRL, UORO and KF-RTRL carry their
sensitivities across updates (the usual online approximation); with θ fixed
(learning rate 0) each learner's gradients sum to its sequence algorithm's.

A step is all or nothing.  Every learner computes the step's new state and
carried quantities (kept inputs, sensitivities, traces, factors, the replay
buffer) and the optimiser's update, checks them finite, and only then
commits; when any of them is NaN/Inf the step raises
:class:`refnet.NumericalError` naming the step and the quantity, and the
learner is exactly as before it (state, carried quantities, parameters,
optimiser state, step count and the position in its random stream), so the
next good observation is learnt as if the bad one had never come.  ``grad``
(and the ``dtheta``/``dbeta`` views) hold the last successful step's gradient.

A learner owns copies of θ and β: they live in one flat vector ``w``
([θ in ``cell.param_shapes()`` order; β]), ``learner.theta`` and
``learner.beta`` are dicts of views into it, and the optimiser updates
``{"w": w}`` with the flat gradient, one array operation per optimiser
formula rather than one per parameter — at batch 1 and a few hidden units
the per-call overhead is the cost.

**On a device** (CuPy, or the strict double) a learner makes no host round-trip
per step.  Its checks are deferred: each step records, on the device, whether
its state, carried quantities, loss and gradient were finite; the optimiser's step is applied and
then undone on the device if anything so far was not (so θ and β keep their
values from before the first bad step); the flags are read back once every
``check_every`` steps (:data:`refnet.algorithms.checks.CHECK_EVERY` by
default, 1 on NumPy, where there is no device) and by :meth:`OnlineLearner.flush`,
and the :class:`refnet.NumericalError` then names the first bad step.  The
flags are read after the step that reaches the check has committed, so that
step is kept (a step is still all or nothing: one that raises anything else
is undone, on the device, without a read-back).  The loss
``step``/``learn`` return is a 0-d device array when checks are deferred
(``float(loss)`` reads it: one synchronisation), a float otherwise.
Observations may be NumPy arrays on a device learner: they are validated on the
host and copied over (no synchronisation); a device observation costs one
read-back for its finiteness (and one for a label range) per step.  FPP's
prioritised sampling reads its sampled index back, once per sampled transition.
"""
import math
from collections import deque
from typing import NamedTuple

import inspect

import numpy
import numpy as np

from ._validate import as_array, check_array, check_int, check_number, first_nonfinite
from .algorithms.checks import CHECK_EVERY, check_cell, check_head
from .algorithms.fpp import _fpp_grad, _fpp_refresh
from .algorithms.fpp_buffer import FPPBuffer
from .algorithms.kfrtrl import EPS as KF_EPS
from .algorithms.kfrtrl import kfrtrl_gradient, kfrtrl_init, kfrtrl_update
from .algorithms.rflo import check_feedback, rflo_delta, rflo_gradient, rflo_init, rflo_update
from .algorithms.rtrl import rtrl_update
from .algorithms.trainable import check_trainable, trainable_columns
from .algorithms.snap import snap_gradient, snap_init, snap_pattern, snap_update
from .algorithms.uoro import EPS as UORO_EPS
from .algorithms.uoro import uoro_gradient, uoro_init, uoro_update
from . import online_kernels
from .backend import Rng, to_numpy, xp_of
from .errors import NumericalError
from .params import flatten

__all__ = ["Step", "OnlineLearner", "TBPTTLearner", "RTRLLearner", "UOROLearner", "KFRTRLLearner",
           "FPPLearner", "SnApLearner", "RFLOLearner", "check_optimiser"]


def _arrays(name, params):
    """A params dict with every value made an array by :func:`as_array` (anything else passes, to be named)."""
    if not isinstance(params, dict):
        return params
    return {k: as_array(f"{name}[{k!r}]", v) for k, v in params.items()}


def check_optimiser(optimiser):
    """``optimiser`` itself if it has ``init(params)`` and ``update(params, grads, state)`` (refnet.optim).

    Parameters
    ----------
    optimiser : object
        A refnet.optim optimiser (SGD, Adagrad, Adam) or anything with those two methods.

    Returns
    -------
    object
        ``optimiser``, unchanged.

    Raises
    ------
    TypeError
        If ``init`` or ``update`` is missing or not callable.
    """
    if not (callable(getattr(optimiser, "init", None)) and callable(getattr(optimiser, "update", None))):
        raise TypeError(f"optimiser must be a refnet.optim optimiser (SGD, Adagrad, Adam, or anything with "
                        f"init(params) and update(params, grads, state)), got {type(optimiser).__name__} "
                        f"{optimiser!r:.60}")
    return optimiser


class _Signs:
    """Random signs of one shape, one draw per step, taken from ``rng`` in blocks of steps.

    A draw from a refnet Rng costs a few microseconds whatever its size, so
    ``BLOCK`` steps are drawn at once; the sequence is ``rng.signs((BLOCK, *shape))``,
    block after block.
    """

    BLOCK = 1024

    def __init__(self, rng, shape, like):
        if not isinstance(rng, Rng):
            raise TypeError(f"rng must be a refnet.backend.Rng (refnet.rng(seed)), got {type(rng).__name__}")
        self.rng, self.shape, self.like = rng, tuple(shape), like
        self.block, self.used = None, self.BLOCK
        self.before_block = None     # the generator's state before the current block was drawn

    def _draw(self):
        return self.rng.signs((self.BLOCK,) + self.shape, like=self.like)

    def next(self):
        if self.used == self.BLOCK:     # on the learner's backend and in its dtype, whatever REFNET_BACKEND says
            # the generator's state is kept so that a failed step can put the draw back (once per
            # block: the state is a dict)
            self.before_block = self.rng.generator.bit_generator.state
            self.block = self._draw()
            self.used = 0
        self.used += 1
        return self.block[self.used - 1]

    def save(self):
        """Where the stream is now, for :meth:`restore`."""
        return self.block, self.used, self.before_block

    def restore(self, saved):
        """Back to ``saved`` (from :meth:`save`), the generator too if a block was drawn since."""
        block, used, before = saved
        if block is not self.block:
            self.rng.generator.bit_generator.state = self.before_block
        self.block, self.used, self.before_block = block, used, before


class Step(NamedTuple):
    """What a learner's ``step(x_t, y_t)`` returns.

    Attributes
    ----------
    prediction : (B, O) array
        The head's output for x_t, made before y_t was seen.
    loss : float or 0-d array
        ℓ_t, the batch-mean loss of that prediction (a 0-d device array when checks are deferred).
    """

    prediction: object  # (B, O) the head's output for x_t, before y_t was seen
    loss: float         # ℓ_t, the loss of that prediction


class OnlineLearner:
    """What every learner shares: parameters, state, the loss, the optimiser step.

    The base class: a subclass supplies how s_t is advanced and how ∂ℓ_t/∂θ is formed.

    Parameters
    ----------
    cell : refnet cell
        The recurrent cell (:mod:`refnet.cells`), state (B, n_state).
    head : refnet.heads.Head or MLPHead
        The readout on ``cell.output(s)``, with ``head.n_in == cell.n_out``.
    theta : dict
        The cell's params ``{name: array}`` (``cell.param_shapes()``); copied into the learner.
    beta : dict
        The head's params; copied.
    optimiser : refnet.optim.SGD, Adagrad or Adam
        Or anything with ``init(params)`` and ``update(params, grads, state)``; one update of θ and β
        per step (FPP: per update), at the optimiser's own learning rate.
    s0 : (B, n_state) array or None
        Initial state; None for zeros of batch ``batch``.
    batch : int
        B, the number of parallel streams when ``s0`` is None, >= 1 (default 1).
    trainable : collection of str or None
        θ's parameter names to learn (None: all); the others are held fixed: their gradient
        entries are zero and the optimiser never moves them.  The learners that carry a sensitivity
        carry none for them: RTRL's M_t, UORO's θ̃, KF-RTRL's u and M_rest, SnAp's kept entries and
        RFLO's trace hold the trainable parameters only (KF-RTRL's A (n, n) is shared by every
        factored block and stays; TBPTT and FPP carry no sensitivity, their VJPs compute a frozen
        parameter's gradient and drop it).
    check_every : int or None
        Steps between two reads of the finiteness flags, >= 1 (module docstring); None: 1 on NumPy,
        :data:`~refnet.algorithms.checks.CHECK_EVERY` on a device.

    Raises
    ------
    TypeError
        A cell, head or optimiser that is not one; θ/β not dicts of floating arrays; ``trainable`` a
        str or not a collection; ``batch`` or ``check_every`` not an int.
    ValueError
        Missing/extra parameters or wrong shapes, ``head.n_in != cell.n_out``, ``batch`` < 1,
        ``s0`` not (B, n_state) with B >= 1, NaN/Inf in θ, β or s0, ``trainable`` naming a parameter
        the cell lacks, ``check_every`` < 1.

    Notes
    -----
    Every ``step``/``predict``/``learn`` validates its observation x_t and target y_t
    *before* touching the state, the carried traces or the parameters: a NaN/Inf or a
    wrong shape raises ValueError (TypeError for a wrong kind) and the learner goes on
    with the next good observation as if it had never seen the bad one.  A step whose
    state, loss or gradient overflows raises :class:`refnet.NumericalError` naming the
    step before the optimiser updates θ and β.
    """

    def __init__(self, cell, head, theta, beta, optimiser, *, s0=None, batch=1, trainable=None,
                 check_every=None):
        check_cell(cell)
        self.trainable = check_trainable(cell, trainable)
        # the learner copies θ and β into w, so array-likes (torch tensors, lists) are converted here
        theta, beta = _arrays("theta", theta), _arrays("beta", beta)
        cell.check_params(theta, "theta")
        check_head(head, cell)
        head.check_params(beta, "beta")
        check_optimiser(optimiser)
        ordered = {k: theta[k] for k in cell.param_shapes()}
        xp = xp_of(*ordered.values(), *beta.values())
        dtype = ordered[next(iter(ordered))].dtype
        self.cell, self.head, self.optimiser = cell, head, optimiser
        self.n_theta = sum(int(v.size) for v in ordered.values())
        self.w = xp.concatenate([flatten(ordered).astype(dtype), flatten(beta).astype(dtype)])
        self.grad = xp.zeros_like(self.w)
        self.theta, self.dtheta = self._views(self.w, ordered, 0), self._views(self.grad, ordered, 0)
        self.beta, self.dbeta = self._views(self.w, beta, self.n_theta), self._views(self.grad, beta, self.n_theta)
        # frozen parameters (trainable=): their gradient entries are zeroed before every update
        self._frozen = xp.asarray(np.setdiff1d(np.arange(self.n_theta), trainable_columns(cell, self.trainable)))
        if s0 is None:
            s0 = xp.zeros((check_int("batch", batch, 1), cell.n_state), dtype=dtype)
        s0 = as_array("s0", s0)
        check_array("s0", s0, shape=(None, cell.n_state))
        if s0.shape[0] < 1:
            raise ValueError(f"s0 must hold at least one stream (B >= 1), got shape {tuple(s0.shape)}")
        self.opt_state = optimiser.init({"w": self.w})
        self.s = s0.astype(dtype, copy=True)
        self.batch = self.s.shape[0]
        self._mean = xp.full(self.batch, 1.0 / self.batch, dtype=dtype)   # ℓ_t is the batch mean
        self._x_shape = (self.batch, cell.input_size)
        self._y_shape = (self.batch,) if head.loss.label_target else (self.batch, head.n_out)
        self.t = 0
        self._xp = xp
        self.check_every = (1 if xp is numpy else CHECK_EVERY) if check_every is None \
            else check_int("check_every", check_every, 1)
        self.deferred = self.check_every > 1
        self._pending = []               # (t, (4,) device bools: state, loss, gradient, carried finite; names)
        self._ok = xp.ones((), dtype=bool)   # every step so far was finite (sticky, on the device)
        self._step_flags = {}
        self._unchecked_update = "check" in inspect.signature(optimiser.update).parameters

    @staticmethod
    def _views(flat, like, start):
        """Dict of views into ``flat`` shaped as ``like``, from offset ``start``."""
        out = {}
        for k, v in like.items():
            out[k] = flat[start:start + v.size].reshape(v.shape)
            start += v.size
        return out

    def _check_x(self, x):
        """x_t as an array of the learner's shape and dtype, finite; ValueError/TypeError otherwise."""
        x = as_array("x", x)
        check_array("x", x, shape=self._x_shape)
        if x.dtype != self.w.dtype:
            raise TypeError(f"x must have the learner's dtype {self.w.dtype}, got {x.dtype}")
        return self._to_device(x)

    def _to_device(self, a):
        """A host observation (validated on the host) copied to a device learner's backend."""
        if self._xp is not numpy and isinstance(a, numpy.ndarray):
            return self._xp.asarray(a)
        return a

    def _check_y(self, y):
        """y_t as an array of the learner's shape, finite labels in range or float targets."""
        y = as_array("y", y)
        if tuple(y.shape) != self._y_shape:
            raise ValueError(f"y must have shape {self._y_shape}, got {tuple(y.shape)}")
        self.head.check_targets(y, (self.batch,), "y")
        if y.dtype.kind == "f" and y.dtype != self.w.dtype:
            raise TypeError(f"y must have the learner's dtype {self.w.dtype}, got {y.dtype}")
        return self._to_device(y)

    def _fail(self, what, found, step=None):
        """The NumericalError for a non-finite ``what`` at step ``step`` (default: this step, ``self.t``;
        ``found`` from first_nonfinite)."""
        step = self.t if step is None else step
        _, index, value = found
        return NumericalError(f"{type(self).__name__}: {what} became non-finite at step t={step} "
                              f"(index {index}: {value}); the state or the parameters have overflowed; "
                              "the learner is as before this step", where=f"step {step}: {what}", step=step,
                              index=index)

    def _check_state(self, s):
        if self.deferred:
            self._flag("state", self._xp.isfinite(s).all())
            return
        found = first_nonfinite([s])
        if found is not None:
            raise self._fail(f"state s_{self.t}", found)

    def _check_carried(self, what, *arrays):
        """NumericalError unless the step's new carried quantities (``what``: their name; None entries
        skipped) are finite (deferred checks: a flag recorded on the device, read at the next check)."""
        if self.deferred:
            xp = self._xp
            self._flag("carried", xp.stack([xp.isfinite(a).all() for a in arrays if a is not None]).all(), what)
            return
        found = first_nonfinite(arrays)
        if found is not None:
            raise self._fail(what, found)

    # --- deferred checks (module docstring) -----------------------------------------------------------
    _QUANTITIES = ("state", "loss", "gradient", "carried")

    def _flag(self, quantity, ok, what=None):
        """Record this step's finiteness flag (a 0-d device bool) for ``quantity`` (one of _QUANTITIES);
        ``what`` names a carried quantity in the error."""
        if quantity in self._step_flags:            # several FPP updates in one step
            ok = self._step_flags[quantity] & ok
        self._step_flags[quantity] = ok
        if what is not None:                        # rebound, not written: _save copies the dict shallowly
            self._step_flags["names"] = {**self._step_flags.get("names", {}), quantity: what}
        self._ok = self._ok & ok

    def _end_step(self):
        """Close this step's flags (they join the pending ones; :meth:`_check_due` reads them)."""
        if not self.deferred:
            return
        flags, self._step_flags = self._step_flags, {}
        if not flags:
            return
        xp = self._xp
        names = flags.pop("names", {})
        self._pending.append((self.t, xp.stack([flags.get(q, xp.ones((), dtype=bool)) for q in self._QUANTITIES]),
                              names))

    def _check_due(self):
        """Read the pending flags back every ``check_every`` steps.

        Called after a step has committed (outside :meth:`_transaction`): the error names an earlier
        step whose updates were undone on the device, and the learner goes on from there, so the
        step that happened to reach the check is not rolled back.
        """
        if len(self._pending) >= self.check_every:
            self.flush()

    def flush(self):
        """Read the deferred finiteness flags back (one transfer) and raise for the first bad step.

        Raises
        ------
        refnet.NumericalError
            Names the first step whose state, carried quantities, loss or gradient was NaN/Inf; θ
            and β keep their values from before that step (its update and every later one were
            undone on the device).
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        flags = to_numpy(self._xp.stack([f for _, f, _ in pending]))
        bad = numpy.argwhere(~flags)
        if bad.size == 0:
            return
        row, column = (int(i) for i in bad[0])
        t, _, names = pending[row]
        what = self._QUANTITIES[column]
        name = {"state": f"state s_{t}", "loss": "the loss", "gradient": "the gradient",
                "carried": names.get("carried", "a carried quantity")}[what]
        self._ok = self._xp.ones((), dtype=bool)     # the learner goes on from θ, β as they were before t
        raise NumericalError(f"{type(self).__name__}: {name} became non-finite at step t={t} (found at the "
                             f"check after step {self.t}; θ and β keep their values from before step {t}); "
                             "the state or the parameters have overflowed", where=f"step {t}: {what}", step=t)

    def _optimiser_step(self):
        """The optimiser's step on w from ``self.grad``; undone on the device unless every step so far
        was finite (deferred checks), so no read-back is needed."""
        if not self._unchecked_update:
            self.opt_state = self.optimiser.update({"w": self.w}, {"w": self.grad}, self.opt_state)
            return
        arrays = [self.w] + [a for field in self.opt_state if isinstance(field, dict) for a in field.values()]
        saved = [a.copy() for a in arrays]
        self.opt_state = self.optimiser.update({"w": self.w}, {"w": self.grad}, self.opt_state, check=False)
        keep_old = ~self._ok
        for a, old in zip(arrays, saved):
            self._xp.copyto(a, old, where=keep_old)

    # --- all-or-nothing steps ---------------------------------------------------------------------------
    # What a step may change in place, beyond rebinding attributes (which _save keeps by reference:
    # every carried quantity is made anew by _advance, or written into a spare buffer and swapped).
    def _in_place(self):
        """The arrays a step writes in place (their contents are copied by :meth:`_save`)."""
        return [self.w, self.grad]

    def _streams(self):
        """The random streams (:class:`_Signs`) a step draws from."""
        return []

    def _save(self):
        """Everything a step may change, for :meth:`_restore` if the step fails.

        The attributes by reference (a step rebinds them), copies of the arrays
        it writes in place (on a device: device copies, no read-back), the random
        streams' positions, and shallow copies of the containers a step appends
        to (TBPTT's window, the pending finiteness flags).
        """
        attributes = dict(self.__dict__)
        for name, value in attributes.items():
            if isinstance(value, (deque, list)) or name == "_step_flags":
                attributes[name] = value.copy()
        return (attributes, [(a, a.copy()) for a in self._in_place()],
                [(r, r.save()) for r in self._streams()])

    def _restore(self, saved):
        attributes, arrays, streams = saved
        self.__dict__.clear()
        self.__dict__.update(attributes)
        for a, copy in arrays:
            a[...] = copy
        for r, position in streams:
            r.restore(position)

    def _transaction(self, work, *args):
        """``work(*args)`` with the learner put back as it was if it raises (a NumericalError, or anything);
        then, the step committed, the deferred flags are read if a check is due."""
        saved = self._save()
        try:
            result = work(*args)
        except BaseException:
            self._restore(saved)
            raise
        self._check_due()
        return result

    def predict(self, x):
        """Observe x_t (B, I): advance the state and return the head's output (B, O).

        s_t = f(θ, s_{t−1}, x_t), the algorithm's carried quantities advanced with it; the
        prediction is made before y_t is seen.

        Parameters
        ----------
        x : (B, I) array
            The observation x_t, in the learner's dtype (NumPy, or the learner's backend).

        Returns
        -------
        (B, O) array
            ``head(output(s_t))``.

        Raises
        ------
        TypeError
            (nothing changed) ``x`` not an array, or not of the learner's dtype.
        ValueError
            (nothing changed) ``x`` not (B, I), or NaN/Inf in it.
        refnet.NumericalError
            (nothing changed) s_t or a carried quantity is NaN/Inf: names the step and quantity.
            With deferred checks (``check_every`` > 1) it is raised at the next read-back instead,
            naming the first bad step: θ and β keep their values from before it, and the step that
            reached the read-back is kept (:meth:`flush`).
        """
        return self._transaction(self._predict, self._check_x(x))

    def _predict(self, x):
        self._end_step()                 # a step that was predicted but not learnt from
        self.t += 1
        self.s = self._advance(x)
        self._check_state(self.s)
        return self.head.forward(self.beta, self.cell.output(self.s), check=False)

    def learn(self, y):
        """Take ℓ_t on target y_t, form the gradient, update θ and β; returns ℓ_t.

        ℓ_t = mean_b ℓ(head(output(s_t))_b, y_t[b]); the gradient is the learner's algorithm's.

        Parameters
        ----------
        y : (B,) int array or (B, O) array
            The target y_t: class labels in [0, O) for a label loss, float targets in the learner's
            dtype otherwise.

        Returns
        -------
        float or 0-d array
            ℓ_t (a 0-d device array when checks are deferred).

        Raises
        ------
        TypeError
            (nothing changed) ``y`` not an array, float targets of another dtype, or non-integer labels.
        ValueError
            (nothing changed) ``y`` of the wrong shape, labels outside [0, O), or NaN/Inf targets.
        refnet.NumericalError
            (nothing changed) ℓ_t, its gradient or the optimiser's update is NaN/Inf.
            With deferred checks (``check_every`` > 1) it is raised at the next read-back instead,
            naming the first bad step: θ and β keep their values from before it, and the step that
            reached the read-back is kept (:meth:`flush`).
        """
        return self._transaction(self._learn_step, self._check_y(y))

    def _learn_step(self, y):
        loss = self._learn(y)
        self._end_step()
        return loss

    def _learn(self, y):
        L, dh, dbeta = self.head.loss_and_grad(self.beta, self.cell.output(self.s), y, self._mean, check=False)
        if self.deferred:
            self._flag("loss", self._xp.isfinite(L))
            for k, v in dbeta.items():
                self.dbeta[k][...] = v
            self._gradient(self.cell.output_vjp(dh))
            self._apply_gradient()
            return L
        loss = float(L)
        if not math.isfinite(loss):
            raise NumericalError(f"{type(self).__name__}: the loss at step {self.t} is {loss}; "
                                 "the state or the parameters have overflowed", where=f"step {self.t}: loss",
                                 step=self.t)
        for k, v in dbeta.items():
            self.dbeta[k][...] = v
        self._gradient(self.cell.output_vjp(dh))
        self._apply_gradient()
        return loss

    def _apply_gradient(self):
        """The optimiser's step on w from ``self.grad``, refused (NumericalError) if the gradient is not finite.

        Frozen parameters (``trainable=``) have their gradient entries zeroed first, so no optimiser moves them.
        """
        if self._frozen.size:
            self.grad[self._frozen] = 0.0
        if self.deferred:
            self._flag("gradient", self._xp.isfinite(self.grad).all())
            self._optimiser_step()
            return
        found = first_nonfinite([self.grad])
        if found is not None:
            raise self._fail("the gradient", found)
        try:
            self.opt_state = self.optimiser.update({"w": self.w}, {"w": self.grad}, self.opt_state)
        except NumericalError as exc:         # refnet.optim names the quantity; say which learner and step
            raise NumericalError(f"{type(self).__name__} at step t={self.t}: {exc}; the learner is as before "
                                 "this step", where=f"step {self.t}: {exc.where}", step=self.t,
                                 index=exc.index) from exc

    def step(self, x, y):
        """``predict(x)`` then ``learn(y)``: returns Step(prediction, loss).

        Both x_t and y_t are validated before either is used, so a bad one changes nothing; a step
        that overflows anywhere raises NumericalError and changes nothing either.

        Parameters
        ----------
        x : (B, I) array
            The observation x_t, in the learner's dtype (NumPy, or the learner's backend).
        y : (B,) int array or (B, O) array
            The target y_t: class labels in [0, O) for a label loss, float targets in the learner's
            dtype otherwise.

        Returns
        -------
        Step
            (prediction (B, O), ℓ_t).

        Raises
        ------
        TypeError
            (nothing changed) ``x`` or ``y`` not an array, of another dtype, or non-integer labels.
        ValueError
            (nothing changed) ``x`` or ``y`` of the wrong shape, labels outside [0, O), or NaN/Inf.
        refnet.NumericalError
            (nothing changed) s_t, a carried quantity, ℓ_t, the gradient or the update is NaN/Inf.
            With deferred checks (``check_every`` > 1) it is raised at the next read-back instead,
            naming the first bad step: θ and β keep their values from before it, and the step that
            reached the read-back is kept (:meth:`flush`).
        """
        return self._transaction(self._step, self._check_x(x), self._check_y(y))

    def _step(self, x, y):
        prediction = self._predict(x)
        loss = self._learn(y)
        self._end_step()
        return Step(prediction, loss)

    def _advance(self, x):
        """Make s_t from x_t and update the algorithm's carried quantities; returns s_t."""
        raise NotImplementedError

    def _gradient(self, ds):
        """Write ∂ℓ_t/∂θ into ``self.dtheta`` from ds = ∂ℓ_t/∂s_t (B, n)."""
        raise NotImplementedError


class TBPTTLearner(OnlineLearner):
    """Online TBPTT(1, k) (Williams & Peng 1990): back-propagate ℓ_t through the last k steps.

    The learner keeps the last k inputs and the state s_{t−k} before them.
    Each step re-runs those k transitions under the current θ from s_{t−k}
    (held fixed), so the gradient is exactly that of the truncated objective
    ℓ_t(θ) — the form a PyTorch user writes (buffer, re-run, backward,
    detach).  k = 1 back-propagates through the last transition only.  The
    run and its VJP are the cell's ``steps`` and ``steps_vjp`` (one kernel
    call each for the Elman RNN at batch 1).

    Parameters
    ----------
    cell : refnet cell
        The recurrent cell (:mod:`refnet.cells`), state (B, n_state).
    head : refnet.heads.Head or MLPHead
        The readout on ``cell.output(s)``, with ``head.n_in == cell.n_out``.
    theta : dict
        The cell's params ``{name: array}`` (``cell.param_shapes()``); copied into the learner.
    beta : dict
        The head's params; copied.
    optimiser : refnet.optim.SGD, Adagrad or Adam
        Or anything with ``init(params)`` and ``update(params, grads, state)``; one update of θ and β
        per step (FPP: per update), at the optimiser's own learning rate.
    k : int
        The truncation: ℓ_t is back-propagated through the last k steps, >= 1.
    s0 : (B, n_state) array or None
        Initial state; None for zeros of batch ``batch``.
    batch : int
        B, the number of parallel streams when ``s0`` is None, >= 1.
    trainable : collection of str or None
        θ's parameter names to learn (None: all); the others are held fixed and carry no
        sensitivity (:class:`OnlineLearner`).
    check_every : int or None
        Steps between two reads of the finiteness flags, >= 1 (module docstring); None: 1 on NumPy,
        :data:`~refnet.algorithms.checks.CHECK_EVERY` on a device.

    Raises
    ------
    TypeError
        A cell, head or optimiser that is not one; θ/β not dicts of floating arrays; ``trainable`` a
        str or not a collection; ``batch``, ``check_every`` or ``k`` not an int.
    ValueError
        Missing/extra parameters or wrong shapes, ``head.n_in != cell.n_out``, ``batch`` < 1,
        ``s0`` not (B, n_state) with B >= 1, NaN/Inf in θ, β or s0, ``trainable`` naming a parameter
        the cell lacks, ``check_every`` < 1, or ``k`` < 1.
    """

    def __init__(self, cell, head, theta, beta, optimiser, *, k, s0=None, batch=1, trainable=None,
                 check_every=None):
        super().__init__(cell, head, theta, beta, optimiser, s0=s0, batch=batch, trainable=trainable,
                         check_every=check_every)
        self.k = check_int("k", k, 1)
        self.inputs = deque(maxlen=self.k)
        self.anchor = self.s        # s_{t−k}: the state before the first kept input
        self._second = None         # the state after the first kept input, the next anchor
        self.trace = None           # from cell.steps, for cell.steps_vjp

    def step(self, x, y):
        """``predict(x)`` then ``learn(y)``; one kernel call at batch 1 where :mod:`refnet.online_kernels` applies.

        The kernel and the learner's own path make the same step (the kernel's plain twin);
        anything the kernel does not take goes the learner's way, which names a bad input.

        Parameters
        ----------
        x : (B, I) array
            The observation x_t, in the learner's dtype (NumPy, or the learner's backend).
        y : (B,) int array or (B, O) array
            The target y_t: class labels in [0, O) for a label loss, float targets in the learner's
            dtype otherwise.

        Returns
        -------
        Step
            (prediction (B, O), ℓ_t).

        Raises
        ------
        TypeError
            (nothing changed) ``x`` or ``y`` not an array, of another dtype, or non-integer labels.
        ValueError
            (nothing changed) ``x`` or ``y`` of the wrong shape, labels outside [0, O), or NaN/Inf.
        refnet.NumericalError
            (nothing changed) s_t, a carried quantity, ℓ_t, the gradient or the update is NaN/Inf.
            With deferred checks (``check_every`` > 1) it is raised at the next read-back instead,
            naming the first bad step: θ and β keep their values from before it, and the step that
            reached the read-back is kept (:meth:`flush`).
        """
        fast = online_kernels.tbptt_step(self, x, y, TBPTTLearner, Step)
        return super().step(x, y) if fast is None else fast

    def _advance(self, x):
        if len(self.inputs) == self.k:
            self.anchor = self._second
        self.inputs.append(x)
        states, self.trace = self.cell.steps(self.theta, self.anchor, self.inputs, self.t - len(self.inputs))
        self._second = states[1]
        self._check_carried(f"the window's state s_{self.t - len(self.inputs) + 1} (the next anchor)", states[1])
        return states[-1]

    def _gradient(self, ds):
        dtheta = self.cell.steps_vjp(self.theta, self.trace, ds)[1]
        for k, v in dtheta.items():
            self.dtheta[k][...] = v


class RTRLLearner(OnlineLearner):
    """Online RTRL (Williams & Zipser 1989): M_t = J_s M_{t−1} + J_θ, gradient ∂ℓ_t/∂s_t M_t.

    M_t (B, n_state, P) is carried across updates of θ (the usual online approximation); with θ
    fixed the gradients sum to BPTT's.  Memory B·n·P, cost O(n²P) per step.

    Parameters
    ----------
    cell : refnet cell
        The recurrent cell (:mod:`refnet.cells`), state (B, n_state).
    head : refnet.heads.Head or MLPHead
        The readout on ``cell.output(s)``, with ``head.n_in == cell.n_out``.
    theta : dict
        The cell's params ``{name: array}`` (``cell.param_shapes()``); copied into the learner.
    beta : dict
        The head's params; copied.
    optimiser : refnet.optim.SGD, Adagrad or Adam
        Or anything with ``init(params)`` and ``update(params, grads, state)``; one update of θ and β
        per step (FPP: per update), at the optimiser's own learning rate.
    s0 : (B, n_state) array or None
        Initial state; None for zeros of batch ``batch``.
    batch : int
        B, the number of parallel streams when ``s0`` is None, >= 1.
    trainable : collection of str or None
        θ's parameter names to learn (None: all); the others are held fixed and carry no
        sensitivity (:class:`OnlineLearner`).
    check_every : int or None
        Steps between two reads of the finiteness flags, >= 1 (module docstring); None: 1 on NumPy,
        :data:`~refnet.algorithms.checks.CHECK_EVERY` on a device.

    Raises
    ------
    TypeError
        A cell, head or optimiser that is not one; θ/β not dicts of floating arrays; ``trainable`` a
        str or not a collection; ``batch`` or ``check_every`` not an int.
    ValueError
        Missing/extra parameters or wrong shapes, ``head.n_in != cell.n_out``, ``batch`` < 1,
        ``s0`` not (B, n_state) with B >= 1, NaN/Inf in θ, β or s0, ``trainable`` naming a parameter
        the cell lacks, ``check_every`` < 1.
    """

    def __init__(self, cell, head, theta, beta, optimiser, *, s0=None, batch=1, trainable=None,
                 check_every=None):
        super().__init__(cell, head, theta, beta, optimiser, s0=s0, batch=batch, trainable=trainable,
                         check_every=check_every)
        xp = xp_of(self.w)
        # sensitivity columns of the trainable entries only: a frozen parameter costs no memory here
        self._columns = xp.asarray(trainable_columns(cell, self.trainable))
        self._all = self._columns.size == self.n_theta
        self.M = xp.zeros((self.batch, cell.n_state, self._columns.size), dtype=self.w.dtype)
        self._M_next = xp.empty_like(self.M)   # M_t is written here, then the two swap

    def step(self, x, y):
        """``predict(x)`` then ``learn(y)``; one kernel call at batch 1 where :mod:`refnet.online_kernels` applies.

        The kernel and the learner's own path make the same step (the kernel's plain twin);
        anything the kernel does not take goes the learner's way, which names a bad input.

        Parameters
        ----------
        x : (B, I) array
            The observation x_t, in the learner's dtype (NumPy, or the learner's backend).
        y : (B,) int array or (B, O) array
            The target y_t: class labels in [0, O) for a label loss, float targets in the learner's
            dtype otherwise.

        Returns
        -------
        Step
            (prediction (B, O), ℓ_t).

        Raises
        ------
        TypeError
            (nothing changed) ``x`` or ``y`` not an array, of another dtype, or non-integer labels.
        ValueError
            (nothing changed) ``x`` or ``y`` of the wrong shape, labels outside [0, O), or NaN/Inf.
        refnet.NumericalError
            (nothing changed) s_t, a carried quantity, ℓ_t, the gradient or the update is NaN/Inf.
            With deferred checks (``check_every`` > 1) it is raised at the next read-back instead,
            naming the first bad step: θ and β keep their values from before it, and the step that
            reached the read-back is kept (:meth:`flush`).
        """
        fast = online_kernels.rtrl_step(self, x, y, RTRLLearner, Step)
        return super().step(x, y) if fast is None else fast

    def _advance(self, x):
        s, cache = self.cell.step(self.theta, self.s, x, self.t - 1)
        J_s, J_theta = self.cell.jacobians(self.theta, cache)
        if not self._all:
            J_theta = xp_of(J_theta).ascontiguousarray(J_theta[:, :, self._columns])
        self.M, self._M_next = rtrl_update(J_s, J_theta, self.M, out=self._M_next), self.M
        self._check_carried(f"the sensitivity M_{self.t}", self.M)
        return s

    def _gradient(self, ds):
        if self._all:
            self.grad[:self.n_theta] = (ds[:, None, :] @ self.M).sum(axis=(0, 1))
        else:
            self.grad[self._columns] = (ds[:, None, :] @ self.M).sum(axis=(0, 1))


class UOROLearner(OnlineLearner):
    """Online UORO (Tallec & Ollivier 2018, Alg. 1): gradient (∂ℓ_t/∂s_t · s̃_t) θ̃_t.

    s̃_t = ρ_0 J_s s̃_{t−1} + ρ_1 ν_t, θ̃_t = θ̃_{t−1}/ρ_0 + ν_tᵀ J_θ/ρ_1 with random signs ν_t:
    an unbiased rank-one estimate s̃_t θ̃_tᵀ of M_t.

    Parameters
    ----------
    cell : refnet cell
        The recurrent cell (:mod:`refnet.cells`), state (B, n_state).
    head : refnet.heads.Head or MLPHead
        The readout on ``cell.output(s)``, with ``head.n_in == cell.n_out``.
    theta : dict
        The cell's params ``{name: array}`` (``cell.param_shapes()``); copied into the learner.
    beta : dict
        The head's params; copied.
    optimiser : refnet.optim.SGD, Adagrad or Adam
        Or anything with ``init(params)`` and ``update(params, grads, state)``; one update of θ and β
        per step (FPP: per update), at the optimiser's own learning rate.
    rng : refnet.backend.Rng
        The stream of the signs ν_t (``refnet.rng(seed)``), drawn in blocks of steps.
    eps : float
        ε of ρ_0, ρ_1 (keeps them finite and positive when a factor is zero), > 0.
    s0 : (B, n_state) array or None
        Initial state; None for zeros of batch ``batch``.
    batch : int
        B, the number of parallel streams when ``s0`` is None, >= 1.
    trainable : collection of str or None
        θ's parameter names to learn (None: all); the others are held fixed and carry no
        sensitivity (:class:`OnlineLearner`).
    check_every : int or None
        Steps between two reads of the finiteness flags, >= 1 (module docstring); None: 1 on NumPy,
        :data:`~refnet.algorithms.checks.CHECK_EVERY` on a device.

    Raises
    ------
    TypeError
        A cell, head or optimiser that is not one; θ/β not dicts of floating arrays; ``trainable`` a
        str or not a collection; ``batch`` or ``check_every`` not an int;
        ``rng`` not a refnet Rng; ``eps`` not a real number.
    ValueError
        Missing/extra parameters or wrong shapes, ``head.n_in != cell.n_out``, ``batch`` < 1,
        ``s0`` not (B, n_state) with B >= 1, NaN/Inf in θ, β or s0, ``trainable`` naming a parameter
        the cell lacks, ``check_every`` < 1, or ``eps`` not finite and > 0.
    """

    def __init__(self, cell, head, theta, beta, optimiser, *, rng, eps=UORO_EPS, s0=None, batch=1,
                 trainable=None, check_every=None):
        super().__init__(cell, head, theta, beta, optimiser, s0=s0, batch=batch, trainable=trainable,
                         check_every=check_every)
        self.eps = check_number("eps", eps, low=0.0, low_open=True)
        self.signs = _Signs(rng, (self.batch, cell.n_state), self.w)
        self.uoro = uoro_init(cell, self.batch, self.w, self.trainable)   # θ̃: the trainable entries only

    def _advance(self, x):
        s, cache = self.cell.step(self.theta, self.s, x, self.t - 1)
        self.uoro = uoro_update(self.cell, self.theta, cache, self.uoro, self.signs.next(), eps=self.eps)
        self._check_carried(f"UORO's factors s̃_{self.t}, θ̃_{self.t}", self.uoro.s_tilde, self.uoro.theta_tilde)
        return s

    def _streams(self):
        return [self.signs]

    def _gradient(self, ds):
        if self.uoro.columns is None:
            self.grad[:self.n_theta] = uoro_gradient(self.uoro, ds)
        else:
            self.grad[self.uoro.columns] = uoro_gradient(self.uoro, ds)


class KFRTRLLearner(OnlineLearner):
    """Online KF-RTRL (Mujika, Meier & Steger 2018, Eq. 5): gradient ∂ℓ_t/∂s_t (A_t ⊗ u_t).

    For cells with ``kronecker_factors`` (Elman, iRNN, FastRNN, leaky RNN).  M_t ≈ A_t ⊗ u_t, updated
    with two random signs c1, c2 per step.

    Parameters
    ----------
    cell : refnet cell
        The recurrent cell (:mod:`refnet.cells`), state (B, n_state).
    head : refnet.heads.Head or MLPHead
        The readout on ``cell.output(s)``, with ``head.n_in == cell.n_out``.
    theta : dict
        The cell's params ``{name: array}`` (``cell.param_shapes()``); copied into the learner.
    beta : dict
        The head's params; copied.
    optimiser : refnet.optim.SGD, Adagrad or Adam
        Or anything with ``init(params)`` and ``update(params, grads, state)``; one update of θ and β
        per step (FPP: per update), at the optimiser's own learning rate.
    rng : refnet.backend.Rng
        The stream of the signs c1, c2 (``refnet.rng(seed)``).
    eps : float
        ε of the factors' rescaling (keeps it finite when a factor is zero), > 0.
    s0 : (B, n_state) array or None
        Initial state; None for zeros of batch ``batch``.
    batch : int
        B, the number of parallel streams when ``s0`` is None, >= 1.
    trainable : collection of str or None
        θ's parameter names to learn (None: all); the others are held fixed and carry no
        sensitivity (:class:`OnlineLearner`).
    check_every : int or None
        Steps between two reads of the finiteness flags, >= 1 (module docstring); None: 1 on NumPy,
        :data:`~refnet.algorithms.checks.CHECK_EVERY` on a device.

    Raises
    ------
    TypeError
        A cell, head or optimiser that is not one; θ/β not dicts of floating arrays; ``trainable`` a
        str or not a collection; ``batch`` or ``check_every`` not an int;
        a cell without ``kronecker_factors``; ``rng`` not a refnet Rng; ``eps`` not a real number.
    ValueError
        Missing/extra parameters or wrong shapes, ``head.n_in != cell.n_out``, ``batch`` < 1,
        ``s0`` not (B, n_state) with B >= 1, NaN/Inf in θ, β or s0, ``trainable`` naming a parameter
        the cell lacks, ``check_every`` < 1, or ``eps`` not finite and > 0.
    """

    def __init__(self, cell, head, theta, beta, optimiser, *, rng, eps=KF_EPS, s0=None, batch=1,
                 trainable=None, check_every=None):
        super().__init__(cell, head, theta, beta, optimiser, s0=s0, batch=batch, trainable=trainable,
                         check_every=check_every)
        self.eps = check_number("eps", eps, low=0.0, low_open=True)
        self.signs = _Signs(rng, (2, self.batch), self.w)
        self.kf = kfrtrl_init(cell, self.batch, self.w, self.trainable)     # u, M_rest: trainable only
        self._shapes = cell.param_shapes()

    def _advance(self, x):
        s, cache = self.cell.step(self.theta, self.s, x, self.t - 1)
        c1, c2 = self.signs.next()
        self.kf = kfrtrl_update(self.cell, self.theta, cache, self.kf, c1, c2, eps=self.eps)
        self._check_carried(f"the Kronecker factors A_{self.t}, u_{self.t}", self.kf.A, self.kf.u, self.kf.M_rest)
        return s

    def _streams(self):
        return [self.signs]

    def _gradient(self, ds):
        for k, v in kfrtrl_gradient(self.kf, ds, self._shapes).items():
            self.dtheta[k][...] = v


class _Uniforms(_Signs):
    """Uniform numbers in [0, 1), one per call, drawn from ``rng`` in blocks (as :class:`_Signs`)."""

    def __init__(self, rng):
        super().__init__(rng, (), None)

    def _draw(self):
        return [float(u) for u in self.rng.generator.uniform(0.0, 1.0, self.BLOCK)]


def _copy_state(state):
    """A copy of an optimiser state: NamedTuples, dicts and lists rebuilt, arrays copied, the rest shared."""
    if hasattr(state, "_fields"):
        return type(state)(*(_copy_state(v) for v in state))
    if isinstance(state, dict):
        return {k: _copy_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_copy_state(v) for v in state)
    if hasattr(state, "copy") and hasattr(state, "dtype"):
        return state.copy()
    return state


def _check_nonnegative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):      # the kind first: a str is no value
        raise TypeError(f"{name} must be a finite number >= 0 (int or float), got {type(value).__name__} "
                        f"{value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class FPPLearner(OnlineLearner):
    """Fixed Point Propagation (FPP paper, Algorithm 1) with a replay buffer of the last N transitions.

    Every step t the learner runs the cell forward (s_t = f_W(s_{t−1}, o_t)
    from the buffer's s_{t−1}), records o_t, s_t and y_t, and then makes
    ``n`` updates: sample a held transition T, take the gradient of
    L = L_s + L_t (:func:`refnet.algorithms.fpp.fpp_grad`), let the optimiser
    update W and β, recompute s'_{T+1} = f_W(f_W(s_{T−1}, o_T), o_{T+1}) with
    the new W and write it back as s_{T+1}.  No gradient crosses a
    transition, so an update costs two steps and two VJPs whatever the
    dependencies' length.  The loss ``learn`` returns is the online one,
    ℓ_t of the prediction made at ``predict``; transition t − 1 is the newest
    to be replayed at step t (it needs o_t and s_t).

    Options, each defaulting to Algorithm 1:

    ``n=1``            updates per environment step (Algorithm 1 is one)
    ``buffer_size=100`` N, transitions kept (the paper leaves N open: Fig. 1c sweeps it)
    ``state_weight=1`` λ, the weight of the state loss L_s
    ``refresh=0``      extra state-only updates per step: write back s'_{T+1} for that many
                       more random transitions with no change to W or β — the states on a
                       faster time scale than the weights (the paper's next step)
    ``prioritised=False``  sample transitions with probability ∝ their last L (new ones at the
                       largest priority seen, Schaul et al. 2016, no importance weights);
                       uniformly otherwise
    ``state_lr=0``     > 0: the stored s_{T−1} is a variable too, s_{T−1} ← s_{T−1} − state_lr ∂L/∂s_{T−1}
                       after each update (the ICLR 2020 formulation); 0 leaves it as stored

    ``rng`` (a refnet.backend.Rng) draws the sampled transitions.

    Parameters
    ----------
    cell : refnet cell
        The recurrent cell (:mod:`refnet.cells`), state (B, n_state).
    head : refnet.heads.Head or MLPHead
        The readout on ``cell.output(s)``, with ``head.n_in == cell.n_out``.
    theta : dict
        The cell's params ``{name: array}`` (``cell.param_shapes()``); copied into the learner.
    beta : dict
        The head's params; copied.
    optimiser : refnet.optim.SGD, Adagrad or Adam
        Or anything with ``init(params)`` and ``update(params, grads, state)``; one update of θ and β
        per step (FPP: per update), at the optimiser's own learning rate.
    rng : refnet.backend.Rng
        Draws the sampled transitions (``refnet.rng(seed)``).
    n : int
        Updates per environment step, >= 1.
    buffer_size : int
        N, the transitions kept, >= 1.
    state_weight : float
        λ, the weight of the state loss L_s (dimensionless), finite, >= 0.
    refresh : int
        Extra state-only write-backs per step, >= 0.
    prioritised : bool
        Sample transitions by their last L (True) or uniformly (False).
    state_lr : float
        Step size of the stored s_{T−1} as a variable (per update), finite, >= 0; 0 leaves it.
    s0 : (B, n_state) array or None
        Initial state; None for zeros of batch ``batch``.
    batch : int
        B, the number of parallel streams when ``s0`` is None, >= 1.
    trainable : collection of str or None
        θ's parameter names to learn (None: all); the others are held fixed and carry no
        sensitivity (:class:`OnlineLearner`).
    check_every : int or None
        Steps between two reads of the finiteness flags, >= 1 (module docstring); None: 1 on NumPy,
        :data:`~refnet.algorithms.checks.CHECK_EVERY` on a device.

    Raises
    ------
    TypeError
        A cell, head or optimiser that is not one; θ/β not dicts of floating arrays; ``trainable`` a
        str or not a collection; ``batch`` or ``check_every`` not an int;
        ``rng`` not a refnet Rng; ``prioritised`` not a bool; ``n``, ``refresh`` or ``buffer_size``
        not an int; ``state_weight`` or ``state_lr`` not an int or float (a bool or a str).
    ValueError
        Missing/extra parameters or wrong shapes, ``head.n_in != cell.n_out``, ``batch`` < 1,
        ``s0`` not (B, n_state) with B >= 1, NaN/Inf in θ, β or s0, ``trainable`` naming a parameter
        the cell lacks, ``check_every`` < 1, ``n`` or ``buffer_size`` < 1, ``refresh`` < 0, or
        ``state_weight`` or ``state_lr`` negative or non-finite.
    """

    def __init__(self, cell, head, theta, beta, optimiser, *, rng, n=1, buffer_size=100, state_weight=1.0,
                 refresh=0, prioritised=False, state_lr=0.0, s0=None, batch=1, trainable=None,
                 check_every=None):
        super().__init__(cell, head, theta, beta, optimiser, s0=s0, batch=batch, trainable=trainable,
                         check_every=check_every)
        self.n = check_int("n", n, 1)
        self.refresh = check_int("refresh", refresh, 0)
        self.state_weight = _check_nonnegative("state_weight", state_weight)
        self.state_lr = _check_nonnegative("state_lr", state_lr)
        if not isinstance(prioritised, bool):
            raise TypeError(f"prioritised must be a bool, got {type(prioritised).__name__} {prioritised!r}")
        self.prioritised = prioritised
        self.uniforms = _Uniforms(rng)
        y_dtype = "int64" if head.loss.label_target else self.w.dtype
        self.buffer = FPPBuffer(check_int("buffer_size", buffer_size, 1), self.s, self._x_shape, self._y_shape,
                                y_dtype)
        self.updates = 0    # FPP updates made so far (n per step once transitions are held)

    def _advance(self, x):
        s, _ = self.cell.step(self.theta, self.buffer.state(self.t - 1), x, self.t - 1)
        self._check_state(s)                      # before the buffer records it
        self.buffer.push(x, s, check=not self.deferred)
        return s

    def _in_place(self):
        # the n updates write w and the optimiser state; push, the write-backs and the priorities the rings
        b = self.buffer
        return super()._in_place() + [b.S, b.X, b.Y, b.priority]

    def _streams(self):
        return [self.uniforms]

    def _save(self):
        saved = super()._save()
        # n optimiser updates per step: its state is copied (a later update may fail after an earlier one)
        return saved + (_copy_state(self.opt_state), dict(self.buffer.__dict__))

    def _restore(self, saved):
        super()._restore(saved[:3])
        self.opt_state = saved[3]
        self.buffer.__dict__.update(saved[4])

    def _sample(self):
        u = self.uniforms.next()
        return self.buffer.prioritised_index(u) if self.prioritised else self.buffer.uniform_index(u)

    def _learn(self, y):
        """Take ℓ_t on y_t (returned), record y_t, then make the n FPP updates and the refreshes."""
        loss = self.head.loss_value(self.beta, self.cell.output(self.s), y, self._mean, check=False)
        if self.deferred:
            self._flag("loss", self._xp.isfinite(loss))
        else:
            loss = float(loss)
            if not math.isfinite(loss):
                raise NumericalError(f"{type(self).__name__}: the loss at step {self.t} is {loss}; "
                                     "the state or the parameters have overflowed", where=f"step {self.t}")
        self.buffer.set_target(y, check=not self.deferred)
        if len(self.buffer) == 0:
            return loss
        for _ in range(self.n):
            self._update(self._sample())
        for _ in range(self.refresh):
            self._write_back(self.buffer.transition(self._sample()))
        return loss

    def _update(self, T):
        """One FPP update on transition T: gradient, optimiser step, write-back."""
        tr = self.buffer.transition(T)
        g = _fpp_grad(self.cell, self.theta, self.head, self.beta, tr.s_prev, tr.x, tr.x_next, tr.s_next, tr.y,
                      self._mean, state_weight=self.state_weight, t=T - 1, check=not self.deferred)
        if self.deferred:
            self._flag("loss", self._xp.isfinite(g.loss))
        elif not math.isfinite(g.loss):
            raise NumericalError(f"{type(self).__name__}: the FPP loss of transition {T} at step {self.t} "
                                 f"is {g.loss}", where=f"step {self.t}: FPP loss", step=self.t)
        for k, v in g.dtheta.items():
            self.dtheta[k][...] = v
        for k, v in g.dbeta.items():
            self.dbeta[k][...] = v
        self._apply_gradient()
        self.updates += 1
        if self.prioritised:
            self.buffer.set_priority(T, g.loss, check=not self.deferred)
        if self.state_lr:
            tr.s_prev[...] -= self.state_lr * g.ds_prev
        self._write_back(tr)

    def _write_back(self, tr):
        """s_{T+1} ← f_W(f_W(s_{T−1}, o_T), o_{T+1}) under the current W."""
        s_new = _fpp_refresh(self.cell, self.theta, tr.s_prev, tr.x, tr.x_next, t=tr.T - 1,
                             check=not self.deferred)[1]
        if self.deferred:                        # a non-finite s'_{T+1} is recorded, not written back
            ok = self._xp.isfinite(s_new).all()
            self._flag("state", ok)
            s_new = self._xp.where(ok, s_new, tr.s_next)
        tr.s_next[...] = s_new


class SnApLearner(OnlineLearner):
    """Online SnAp-n (Menick et al. 2021): gradient ∂ℓ_t/∂s_t M̃_t, M̃_t = (J_s M̃_{t−1} + J_θ) ⊙ 𝟙_n.

    For cells with ``jacobian_pattern`` (Elman, iRNN, leaky, GRU, LSTM).  The
    mask 𝟙_n is built once, from θ at construction (W_hh's zeros then), and
    kept while θ changes, as the paper keeps a sparse network's pattern; see
    :mod:`refnet.algorithms.snap` for the memory and cost per step.

    Parameters
    ----------
    cell : refnet cell
        The recurrent cell (:mod:`refnet.cells`), state (B, n_state).
    head : refnet.heads.Head or MLPHead
        The readout on ``cell.output(s)``, with ``head.n_in == cell.n_out``.
    theta : dict
        The cell's params ``{name: array}`` (``cell.param_shapes()``); copied into the learner.
    beta : dict
        The head's params; copied.
    optimiser : refnet.optim.SGD, Adagrad or Adam
        Or anything with ``init(params)`` and ``update(params, grads, state)``; one update of θ and β
        per step (FPP: per update), at the optimiser's own learning rate.
    n : int
        The SnAp order: M̃ keeps the entries reachable in n steps, >= 1.
    s0 : (B, n_state) array or None
        Initial state; None for zeros of batch ``batch``.
    batch : int
        B, the number of parallel streams when ``s0`` is None, >= 1.
    trainable : collection of str or None
        θ's parameter names to learn (None: all); the others are held fixed and carry no
        sensitivity (:class:`OnlineLearner`).
    check_every : int or None
        Steps between two reads of the finiteness flags, >= 1 (module docstring); None: 1 on NumPy,
        :data:`~refnet.algorithms.checks.CHECK_EVERY` on a device.

    Raises
    ------
    TypeError
        A cell, head or optimiser that is not one; θ/β not dicts of floating arrays; ``trainable`` a
        str or not a collection; ``batch`` or ``check_every`` not an int;
        a cell without ``jacobian_pattern``; ``n`` not an int.
    ValueError
        Missing/extra parameters or wrong shapes, ``head.n_in != cell.n_out``, ``batch`` < 1,
        ``s0`` not (B, n_state) with B >= 1, NaN/Inf in θ, β or s0, ``trainable`` naming a parameter
        the cell lacks, ``check_every`` < 1, ``n`` < 1, or ``trainable``
        leaving no column with a kept entry.
    """

    def __init__(self, cell, head, theta, beta, optimiser, *, n, s0=None, batch=1, trainable=None,
                 check_every=None):
        super().__init__(cell, head, theta, beta, optimiser, s0=s0, batch=batch, trainable=trainable,
                         check_every=check_every)
        self.pattern = snap_pattern(cell, self.theta, n, self.trainable)     # frozen columns keep nothing
        self.snap = snap_init(self.pattern, self.batch, self.w)

    def _advance(self, x):
        s, cache = self.cell.step(self.theta, self.s, x, self.t - 1)
        self.snap = snap_update(self.cell, self.theta, cache, self.snap, self.pattern)
        self._check_carried(f"the sparse sensitivity M̃_{self.t}", *self.snap)
        return s

    def _gradient(self, ds):
        self.grad[:self.n_theta] = snap_gradient(self.snap, ds, self.pattern)


class RFLOLearner(OnlineLearner):
    """Online RFLO (Murray 2019): trace E_t = (1 − α) E_{t−1} + D_t ⊗ ĥ_t, gradient δ_t ⊙ E_t.

    For the leaky RNN (:class:`refnet.cells.LeakyRNN`).  δ_t is ∂ℓ_t/∂s_t
    (the readout's transpose, ``feedback=None``) or B e_t with a fixed
    feedback matrix B (n_out, O) and the output error e_t
    (:mod:`refnet.algorithms.rflo`).  The head learns by its exact gradient.

    Parameters
    ----------
    cell : refnet cell
        The recurrent cell (:mod:`refnet.cells`), state (B, n_state).
    head : refnet.heads.Head or MLPHead
        The readout on ``cell.output(s)``, with ``head.n_in == cell.n_out``.
    theta : dict
        The cell's params ``{name: array}`` (``cell.param_shapes()``); copied into the learner.
    beta : dict
        The head's params; copied.
    optimiser : refnet.optim.SGD, Adagrad or Adam
        Or anything with ``init(params)`` and ``update(params, grads, state)``; one update of θ and β
        per step (FPP: per update), at the optimiser's own learning rate.
    feedback : (n_out, O) array or None
        A fixed random feedback matrix B, in the learner's dtype; None: the readout's transpose
        (δ_t = ∂ℓ_t/∂s_t).
    s0 : (B, n_state) array or None
        Initial state; None for zeros of batch ``batch``.
    batch : int
        B, the number of parallel streams when ``s0`` is None, >= 1.
    trainable : collection of str or None
        θ's parameter names to learn (None: all); the others are held fixed and carry no
        sensitivity (:class:`OnlineLearner`).
    check_every : int or None
        Steps between two reads of the finiteness flags, >= 1 (module docstring); None: 1 on NumPy,
        :data:`~refnet.algorithms.checks.CHECK_EVERY` on a device.

    Raises
    ------
    TypeError
        A cell, head or optimiser that is not one; θ/β not dicts of floating arrays; ``trainable`` a
        str or not a collection; ``batch`` or ``check_every`` not an int;
        a cell without a Kronecker-factored J_θ and a ``leak`` (RFLO needs :class:`refnet.cells.LeakyRNN`
        or the Elman RNN); ``feedback`` not a floating array or of another dtype than θ.
    ValueError
        Missing/extra parameters or wrong shapes, ``head.n_in != cell.n_out``, ``batch`` < 1,
        ``s0`` not (B, n_state) with B >= 1, NaN/Inf in θ, β or s0, ``trainable`` naming a parameter
        the cell lacks, ``check_every`` < 1, ``feedback`` not (cell.n_out, head.n_out) or with
        NaN/Inf, or an empty ``trainable``.
    """

    def __init__(self, cell, head, theta, beta, optimiser, *, feedback=None, s0=None, batch=1, trainable=None,
                 check_every=None):
        super().__init__(cell, head, theta, beta, optimiser, s0=s0, batch=batch, trainable=trainable,
                         check_every=check_every)
        self.feedback = check_feedback(None if feedback is None else as_array("feedback", feedback), cell, head,
                                       self.w)
        self.rflo = rflo_init(cell, self.batch, self.w, self.trainable)      # trace: trainable columns only
        self._E_next = xp_of(self.w).empty_like(self.rflo.E)   # E_t is written here, then the two swap
        self._shapes = cell.param_shapes()
        self._y = None

    def _advance(self, x):
        s, cache = self.cell.step(self.theta, self.s, x, self.t - 1)
        # into the spare buffer, not E_{t−1}: a step that fails later must leave E_{t−1} as it was
        E = self.rflo.E
        self.rflo = rflo_update(self.cell, self.theta, cache, self.rflo, out=self._E_next)
        self._E_next = E
        self._check_carried(f"the trace E_{self.t}", self.rflo.E)
        return s

    def _learn(self, y):
        self._y = y         # validated by learn/step; the random-feedback signal needs the output error
        return super()._learn(y)

    def _gradient(self, ds):
        if self.feedback is not None:
            h_out = self.cell.output(self.s)
            ds = rflo_delta(self.cell, self.head, self.beta, h_out, self._y, self._mean, None, self.feedback)
        for k, v in rflo_gradient(self.rflo, ds, self._shapes).items():
            self.dtheta[k][...] = v
