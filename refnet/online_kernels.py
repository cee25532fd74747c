"""Whole online learner steps in one numba kernel at batch 1: the dispatch for :mod:`refnet.online`.

``TBPTTLearner.step`` and ``RTRLLearner.step`` ask :func:`tbptt_step` and
:func:`rtrl_step` first; each returns the learner's ``Step`` after making the
whole step in one call of :mod:`refnet.kernels.online` (window forward or
sensitivity update, head, loss, gradient, optimiser update), or None when
the kernel does not apply — then the learner takes its own path, which is
the kernel's plain twin.  It applies to exactly those learners (not
subclasses) at batch 1 on NumPy with ``REFNET_NUMBA=1``, an Elman RNN or iRNN
cell, a :class:`refnet.heads.Head` with one of its three losses, SGD,
Adagrad or Adam, and x_t, y_t NumPy arrays of the learner's shapes and
dtype; anything else (a bad shape included, which the learner's path then
names) goes the learner's way.  The learner's attributes (``s``, ``t``,
``w``, the optimiser state, TBPTT's kept inputs and anchor, RTRL's M) are
kept exactly as its own path keeps them, so the two paths may alternate.

A kernel step keeps the learner's all-or-nothing contract: the kernel
writes the weights and the optimiser state only when the loss, the gradient,
the new state (and RTRL's M_t) and the optimiser's new values are all finite
(:mod:`refnet.kernels.online`), and the learner's own attributes (``s``,
``t``, the window, the anchor, M, the optimiser state and ``grad``) are
committed here only after it says so; otherwise the step raises
:class:`refnet.NumericalError` as the learner's own path does and the
learner is exactly as before it.

The kernels compile at first use (``cache=True``: on disk for the next
process); the learner's API is unchanged.
"""
import math

import numpy

from . import kernels
from .cells.elman import IRNN, ElmanRNN
from ._validate import first_nonfinite
from .errors import NumericalError
from .heads import Head
from .optim import SGD, Adagrad, Adam, AdamState

__all__ = ["tbptt_step", "rtrl_step"]

_LOSS_CODES = {"softmax_cross_entropy": 0, "mse": 1, "sigmoid_bce": 2}   # refnet.kernels.online.LOSS_CODES
_N_INTS = 10                                                             # its ints layout
_I_COUNT, _I_LABEL, _I_STATUS = 4, 8, 9
_INPUTS, _GRADIENT, _OPTIMISER, _STATE = 1, 2, 3, 4                      # its status codes


class _Plan:
    """What one learner's kernel calls share: codes, hyper-parameters, scratch, TBPTT's input window."""

    def __init__(self, learner, kind, step_type):
        self.step_type = step_type
        cell, head, opt = learner.cell, learner.head, learner.optimiser
        n, I, O = cell.hidden_size, cell.input_size, head.n_out
        dtype = learner.w.dtype
        self.kind, self.dtype, self.n, self.O, self.label = kind, dtype, n, O, head.loss.label_target
        self.x_shape, self.y_shape = learner._x_shape, learner._y_shape
        self.k = getattr(learner, "k", 1)
        if type(opt) is SGD:
            code = 1 if opt.momentum else 0
        else:
            code = 2 if type(opt) is Adagrad else 3
        self.code = code
        self.adam = code == 3
        self.ints = numpy.array([I, n, O, self.k, 0, cell.nonlinearity == "relu", _LOSS_CODES[head.loss.name],
                                 code, 0, 0], dtype=numpy.int64)
        assert self.ints.size == _N_INTS
        self.floats = numpy.array([opt.lr, getattr(opt, "eps", 0.0), getattr(opt, "momentum", 0.0), 0.0, 1.0,
                                   getattr(opt, "beta1", 0.0), getattr(opt, "beta2", 0.0)], dtype=dtype)
        # 1-D buffers: numba dispatches a 2-D argument ten times slower than a 1-D one
        self.scratch = numpy.zeros(4 * max(n, O), dtype=dtype)
        self.hs = numpy.empty((self.k + 1) * n, dtype=dtype)
        self.xs = numpy.zeros(self.k * I, dtype=dtype)
        self.yv = numpy.zeros(O, dtype=dtype)
        self.t = None          # learner.t after the last kernel step (None: the window must be rebuilt)
        self.kernel = getattr(kernels.load("online"), f"_{kind}_step")


def _plan(learner, kind, cls, step_type):
    """A :class:`_Plan` if the kernel can make this learner's steps, else False (decided once per learner;
    ``REFNET_NUMBA`` is read at every step instead).  ``cls`` is the learner class the kernel
    implements (subclasses may change the step) and ``step_type`` its ``Step``, both passed in by
    :mod:`refnet.online` so that this module does not import it back."""
    w = learner.w
    ok = (type(learner) is cls and learner.batch == 1 and type(learner.cell) in (ElmanRNN, IRNN)
          and type(learner.head) is Head and learner.head.loss.name in _LOSS_CODES
          and type(learner.optimiser) in (SGD, Adagrad, Adam) and type(w) is numpy.ndarray
          and w.dtype in (numpy.float64, numpy.float32)
          and not learner._frozen.size)      # trainable= freezes entries: the learner's own path zeroes them
    return _Plan(learner, kind, step_type) if ok else False


def _get_plan(learner, kind, cls, step_type):
    plan = learner.__dict__.get("_kernel_plan")
    if plan is None and kernels.enabled():
        plan = learner.__dict__["_kernel_plan"] = _plan(learner, kind, cls, step_type)
    return plan


def _targets(plan, x, y):
    """x_t (I,) and the target's kernel form, or None if x, y are not what the kernel takes.

    The checks are identity tests where they can be (``dtype is``): a miss only
    sends the step down the learner's own path, which checks fully.
    """
    if x.__class__ is not numpy.ndarray or x.dtype is not plan.dtype or x.shape != plan.x_shape:
        return None
    if y.__class__ is not numpy.ndarray or y.shape != plan.y_shape:
        return None
    if plan.label:
        if y.dtype.kind not in "iu":
            return None
        label = int(y[0])
        if not 0 <= label < plan.O:
            return None
        plan.ints[_I_LABEL] = label
        return x[0], plan.yv
    if y.dtype is not plan.dtype:
        return None
    return x[0], y[0]


def _optimiser_arrays(plan, learner):
    """The optimiser's state arrays the kernel updates (read at every step, as the optimiser's own
    ``update`` reads the state it is given); unused slots get a 1-element placeholder."""
    state, spare = learner.opt_state, learner.w[:1]
    if plan.code == 0:
        return spare, spare
    if plan.code == 1:
        return state.momentum["w"], spare
    if plan.code == 2:
        return state.sum_squares["w"], spare
    return state.m["w"], state.v["w"]


def _adam_floats(plan, learner):
    """Adam's bias corrections of the coming step into ``plan.floats`` (refnet.optim.Adam's formulas)."""
    opt = learner.optimiser
    t = learner.opt_state.t + 1
    plan.floats[3] = opt.lr / (1.0 - opt.beta1 ** t)
    plan.floats[4] = math.sqrt(1.0 - opt.beta2 ** t)
    learner.opt_state = AdamState(t, learner.opt_state.m, learner.opt_state.v)


def _failure(learner, plan, loss, opt_state, s, carried):
    """The NumericalError for a kernel step that made nothing (the learner's own path's messages), or None.

    ``s`` is the step's new state and ``carried`` (name, array) the new carried quantity the kernel
    checked; the learner's attributes are still those before the step (its ``t`` included).
    """
    status, t = plan.ints[_I_STATUS], learner.t + 1
    if status == _STATE:
        found = first_nonfinite([s])
        if found is not None:
            return learner._fail(f"state s_{t}", found, step=t)
        name, array = carried
        return learner._fail(name.format(t=t), first_nonfinite([array]) or (0, (), float("nan")), step=t)
    if not math.isfinite(loss):
        return NumericalError(f"{type(learner).__name__}: the loss at step {t} is {float(loss)}; "
                              "the state or the parameters have overflowed; the learner is as before this step",
                              where=f"step {t}: loss", step=t)
    if status == _GRADIENT:
        return learner._fail("the gradient", first_nonfinite([learner.grad]), step=t)
    if status == _OPTIMISER:
        # refnet.optim names the quantity and index: ask it, on copies (nothing of the learner's is touched)
        try:
            learner.optimiser.update({"w": learner.w.copy()}, {"w": learner.grad.copy()},
                                     _copy_state(opt_state))
        except NumericalError as exc:
            return NumericalError(f"{type(learner).__name__} at step t={t}: {exc}; the learner is as before "
                                  "this step", where=f"step {t}: {exc.where}", step=t, index=exc.index)
        return NumericalError(f"{type(learner).__name__} at step t={t}: the optimiser's update of w would be "
                              "non-finite; the learner is as before this step", where=f"step {t}: optimiser",
                              step=t)
    return None


def _copy_state(state):
    """A copy of an optimiser state (NamedTuple of dicts of arrays and ints)."""
    return type(state)(*({k: v.copy() for k, v in f.items()} if isinstance(f, dict) else f for f in state))


def _prepare(learner, kind, cls, step_type, x, y):
    """What both kernel steps need before the call, or None when the kernel does not apply.

    Returns ``(plan, xy, s, pred, opt_state, grad, o1, o2)``: the plan, the kernel form of
    x_t and y_t, output buffers for s_t and the prediction, the optimiser state and a copy of
    the gradient buffer (both put back if the step fails), and the optimiser's arrays (with
    Adam's bias corrections of the coming step already in the plan).
    """
    plan = _get_plan(learner, kind, cls, step_type)
    if not plan or not kernels.enabled():
        return None
    xy = _targets(plan, x, y)
    if xy is None:
        return None
    s = numpy.empty((1, plan.n), dtype=plan.dtype)
    pred = numpy.empty((1, plan.O), dtype=plan.dtype)
    opt_state, grad = learner.opt_state, learner.grad.copy()
    if plan.adam:
        _adam_floats(plan, learner)
    o1, o2 = _optimiser_arrays(plan, learner)
    return plan, xy, s, pred, opt_state, grad, o1, o2


def tbptt_step(learner, x, y, cls, step_type):
    """One whole TBPTT(1, k) step of ``learner`` (a ``TBPTTLearner``) in one kernel call (Williams & Peng 1990).

    Parameters
    ----------
    learner : refnet.online.TBPTTLearner
        The learner whose step this is; its attributes are committed only after a finite step.
    x : (1, I) array
        The observation x_t.
    y : (1,) int array or (1, O) array
        The target y_t: a label for a label loss, a float target otherwise.
    cls : type
        ``refnet.online.TBPTTLearner``: the kernel applies to exactly that class (not subclasses).
    step_type : type
        ``refnet.online.Step``, the named tuple returned (passed in: this module does not import
        :mod:`refnet.online`, which imports it).

    Returns
    -------
    refnet.online.Step or None
        (prediction (1, O), ℓ_t), or None when the kernel does not apply (module docstring).

    Raises
    ------
    refnet.NumericalError
        If the new state, the loss, the gradient or the optimiser's update is not finite
        (the learner is left exactly as it was).  A bad x_t or y_t raises nothing here: the
        function returns None and the learner's own path names it.
    """
    ready = _prepare(learner, "tbptt", cls, step_type, x, y)
    if ready is None:
        return None
    plan, xy, s, pred, opt_state, grad, o1, o2 = ready
    if plan.t != learner.t:                                  # the learner's own path ran since: rebuild
        count = len(learner.inputs)
        if count:
            plan.xs[:count * x.shape[1]] = numpy.concatenate(list(learner.inputs)).reshape(-1)
        plan.ints[_I_COUNT] = count
    full = len(learner.inputs) == learner.k
    anchor = learner._second if full else learner.anchor
    second = numpy.empty((1, plan.n), dtype=plan.dtype)
    loss = plan.kernel(learner.w, learner.grad, o1, o2, plan.xs, xy[0], xy[1], anchor[0], second[0],
                       s[0], pred[0], plan.hs, plan.scratch, plan.ints, plan.floats)
    if plan.ints[_I_STATUS] == _INPUTS:                      # non-finite x_t or y_t: nothing touched
        learner.opt_state, plan.t = opt_state, None
        return None
    error = _failure(learner, plan, loss, opt_state, s, ("the window's state (the next anchor)", second))
    if error is not None:                                    # w and the optimiser's arrays untouched
        learner.opt_state, plan.t = opt_state, None          # the kernel shifted its window: rebuild it
        learner.grad[...] = grad
        raise error
    learner.anchor = anchor
    learner.inputs.append(x)
    learner._second, learner.s = second, s
    learner.t += 1
    plan.t = learner.t
    return plan.step_type(pred, float(loss))


def rtrl_step(learner, x, y, cls, step_type):
    """One whole RTRL step of ``learner`` (an ``RTRLLearner``) in one kernel call (Williams & Zipser 1989).

    Parameters
    ----------
    learner : refnet.online.RTRLLearner
        The learner whose step this is; its attributes are committed only after a finite step.
    x : (1, I) array
        The observation x_t.
    y : (1,) int array or (1, O) array
        The target y_t: a label for a label loss, a float target otherwise.
    cls : type
        ``refnet.online.RTRLLearner``: the kernel applies to exactly that class (not subclasses).
    step_type : type
        ``refnet.online.Step``, the named tuple returned (passed in: this module does not import
        :mod:`refnet.online`, which imports it).

    Returns
    -------
    refnet.online.Step or None
        (prediction (1, O), ℓ_t), or None when the kernel does not apply (module docstring).

    Raises
    ------
    refnet.NumericalError
        If the new state, the loss, the gradient or the optimiser's update is not finite
        (the learner is left exactly as it was).  A bad x_t or y_t raises nothing here: the
        function returns None and the learner's own path names it.
    """
    ready = _prepare(learner, "rtrl", cls, step_type, x, y)
    if ready is None:
        return None
    plan, xy, s, pred, opt_state, grad, o1, o2 = ready
    loss = plan.kernel(learner.w, learner.grad, o1, o2, learner.M.reshape(-1),
                       learner._M_next.reshape(-1), learner.s[0], xy[0], xy[1], s[0], pred[0], plan.scratch,
                       plan.ints, plan.floats)
    if plan.ints[_I_STATUS] == _INPUTS:
        learner.opt_state = opt_state
        return None
    error = _failure(learner, plan, loss, opt_state, s, ("the sensitivity M_{t}", learner._M_next))
    if error is not None:                                    # w, the optimiser's arrays and M untouched
        learner.opt_state = opt_state
        learner.grad[...] = grad
        raise error
    learner.M, learner._M_next = learner._M_next, learner.M
    learner.s = s
    learner.t += 1
    return plan.step_type(pred, float(loss))
