"""Checks shared by every sequence algorithm (BPTT, TBPTT, RTRL, UORO, KF-RTRL, FPP, ...).

Inputs are validated once at entry (:func:`check_sequence`, :func:`check_objective`:
names, shapes, finiteness, one dtype).  Results are checked for NaN/Inf by one
helper, :func:`first_nonfinite`, wherever they are made (DESIGN.md §5):

- a forward pass is watched as it runs (:class:`FiniteWatch`): every
  ``CHECK_EVERY`` steps one ``isfinite`` reduction per step is stacked on the
  device and read back once, so a diverging run is reported at most
  ``CHECK_EVERY`` steps after it diverged, before any backward pass or TBPTT
  window is spent on it, with no host round-trip per step;
- per-step losses, adjoints and gradients are checked once, when complete;
- only on failure is the first bad step (and entry) searched for, and the
  :class:`refnet.NumericalError` names the function, the quantity, the step
  and the entry: ``forward: state s_37 became non-finite at step t=37
  (batch 0, unit 2: inf)``.
"""
from ..backend import xp_of
from .._validate import as_array, check_array, check_same_dtype, first_nonfinite
from ..errors import NumericalError
from ..heads import every_step

__all__ = ["CHECK_EVERY", "check_cell", "check_head", "check_sequence", "check_run", "check_objective",
           "first_nonfinite", "nonfinite_error", "FiniteWatch", "StepWatch", "check_finite_steps", "check_finite_tree",
           "check_finite_result"]

# Steps between two finiteness checks of a running forward pass: one host read-back per block, and a
# diverging run stops at most this many steps late (a few hundred microseconds of a small cell).
CHECK_EVERY = 64

_CELL_METHODS = ("param_shapes", "check_params", "step", "step_vjp", "step_jvp", "output", "output_vjp")
_HEAD_METHODS = ("param_shapes", "check_params", "check_targets", "forward", "loss_and_grad", "loss_value")


def check_cell(cell, name="cell"):
    """TypeError unless ``cell`` follows the cell contract (DESIGN.md §3), naming what it lacks."""
    missing = [m for m in _CELL_METHODS if not callable(getattr(cell, m, None))]
    if missing or not hasattr(cell, "n_state") or not hasattr(cell, "input_size"):
        raise TypeError(f"{name} must be a refnet cell (a refnet.cells.Cell with "
                        f"{', '.join(_CELL_METHODS)}), got {type(cell).__name__} {cell!r:.80}"
                        + (f", which lacks {', '.join(missing)}" if missing else ""))
    return cell


def check_head(head, cell=None, name="head"):
    """TypeError unless ``head`` is a readout (refnet.heads.Head); ValueError if it does not fit ``cell``."""
    missing = [m for m in _HEAD_METHODS if not callable(getattr(head, m, None))]
    if missing or not hasattr(head, "n_in"):
        raise TypeError(f"{name} must be a refnet.heads.Head (or MLPHead), got {type(head).__name__} "
                        f"{head!r:.80}")
    if cell is not None and head.n_in != cell.n_out:
        raise ValueError(f"{name}.n_in must equal cell.n_out = {cell.n_out}, got {head.n_in} "
                         "(the head reads the cell's output)")
    return head


def check_sequence(cell, theta, x, s0):
    """Validate a (cell, θ, x, s0) run once at entry; returns ``(x, s0)`` (s0 zeros if None).

    ``x`` may be any array-like (a nested list is made a NumPy array); it must be
    (T, B, input_size) with T >= 1 and B >= 1, floating, finite and of θ's dtype.
    """
    check_cell(cell)
    cell.check_params(theta, "theta")
    x = as_array("x", x)
    check_array("x", x, shape=(None, None, cell.input_size))
    if x.shape[0] < 1:
        raise ValueError(f"x must hold at least one time step (T >= 1), got T = 0 (shape {tuple(x.shape)})")
    if x.shape[1] < 1:
        raise ValueError(f"x must hold at least one sequence (B >= 1), got B = 0 (shape {tuple(x.shape)})")
    B = x.shape[1]
    if s0 is None:
        s0 = xp_of(x).zeros((B, cell.n_state), dtype=x.dtype)
    s0 = as_array("s0", s0)
    check_array("s0", s0, shape=(B, cell.n_state))
    first = next(iter(cell.param_shapes()))   # check_params made every θ array one dtype
    check_same_dtype({"x": x, "s0": s0, f"theta[{first!r}]": theta[first]})
    return x, s0


def check_run(cell, theta, x, s0):
    """:func:`check_sequence` for callers that already hold an array ``x``; returns s0 only."""
    return check_sequence(cell, theta, x, s0)[1]


def check_objective(head, beta, x, y, weights, cell=None):
    """Validate head parameters, targets and weights; returns ``(y, weights)`` (mean over all steps if None)."""
    T, B = x.shape[:2]
    check_head(head, cell)
    head.check_params(beta, "beta")
    y = as_array("y", y)
    head.check_targets(y, (T, B), "y")
    if weights is None:
        weights = every_step(T, B, like=x)
    weights = as_array("weights", weights)
    check_array("weights", weights, shape=(T, B))
    first = next(iter(head.param_shapes()))
    arrays = {"x": x, "weights": weights, f"beta[{first!r}]": beta[first]}
    if y.dtype.kind == "f":
        arrays["y"] = y
    check_same_dtype(arrays)
    return y, weights


def _entry_words(index):
    if len(index) == 2:
        return f"batch {index[0]}, unit {index[1]}"
    if len(index) == 1:
        return f"entry {index[0]}"
    return f"index {index}" if index else "the value"


def nonfinite_error(function, quantity, symbol, step, index, value, hint=""):
    """The :class:`NumericalError` for ``symbol_step`` (a ``quantity``) found non-finite in ``function``."""
    name = f"{symbol}_{step}"
    return NumericalError(f"{function}: {quantity} {name} became non-finite at step t={step} "
                          f"({_entry_words(index)}: {value}){hint}",
                          where=f"{function}: {name}", step=step, index=index)


class FiniteWatch:
    """Watches per-step arrays as a loop makes them; raises at the first NaN/Inf block.

    ``watch(t, a)`` records ``a`` made at step t; every ``every`` records the
    block is checked by :func:`first_nonfinite` (one host read-back), and
    :meth:`flush` checks what is left.  The raised error names ``function``,
    ``quantity`` and ``symbol_t`` at the first bad step.
    """

    def __init__(self, function, quantity="state", symbol="s", *, every=CHECK_EVERY, hint=""):
        self.function, self.quantity, self.symbol, self.hint = function, quantity, symbol, hint
        self.every = every
        self.pending = []

    def __call__(self, t, a):
        self.pending.append((t, a))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self):
        """Check every array recorded since the last check."""
        found = first_nonfinite([a for _, a in self.pending])
        if found is not None:
            k, index, value = found
            raise nonfinite_error(self.function, self.quantity, self.symbol, self.pending[k][0], index, value,
                                  self.hint)
        self.pending.clear()


class StepWatch:
    """The watches of an algorithm that carries its gradient forward (RTRL, UORO, KF-RTRL).

    ``watch(t, s_t, L_t, g_t)`` records the state, the loss term and the step's
    gradient term (what is added to dθ, made from the carried sensitivity);
    the blocks are checked in that order, so a diverging state is named before
    what it poisoned.  :meth:`flush` at the end of the run.
    """

    def __init__(self, function, *, every=CHECK_EVERY):
        self.watches = (FiniteWatch(function, "state", "s", every=every, hint=" (the forward pass overflowed)"),
                        FiniteWatch(function, "loss term", "L", every=every),
                        FiniteWatch(function, "gradient term", "dtheta", every=every,
                                    hint=" (the carried sensitivity overflowed)"))

    def __call__(self, t, s_t, L_t, g_t):
        for watch, a in zip(self.watches, (s_t, L_t, g_t)):
            watch.pending.append((t, a))
        if len(self.watches[0].pending) >= self.watches[0].every:
            self.flush()

    def flush(self):
        """Check everything recorded since the last check: states, then losses, then gradient terms."""
        for watch in self.watches:
            watch.flush()


def check_finite_steps(function, quantity, symbol, values, *, first=1, steps=None, hint=""):
    """Raise :class:`NumericalError` naming the first non-finite ``values[k]``.

    Its step is ``steps[k]`` if ``steps`` is given, else ``first + k``.
    """
    values = list(values)
    found = first_nonfinite(values)
    if found is not None:
        k, index, value = found
        raise nonfinite_error(function, quantity, symbol, first + k if steps is None else steps[k], index,
                              value, hint)


def check_finite_tree(function, quantity, tree, hint=""):
    """Raise :class:`NumericalError` naming the first non-finite array of a params dict ``tree``."""
    keys = list(tree)
    found = first_nonfinite([tree[k] for k in keys])
    if found is not None:
        k, index, value = found
        name = f"{quantity}[{keys[k]!r}]"
        raise NumericalError(f"{function}: {name} is non-finite at index {index} ({value}){hint}",
                             where=f"{function}: {name}", index=index)


def check_finite_result(name, loss_value, grads, s):
    """Raise NumericalError if the loss or a gradient is NaN/Inf, naming the first bad state.

    Kept for callers that check at exit only; the algorithms of this package
    watch their forward passes with :class:`FiniteWatch` instead.
    """
    check_finite_steps(name, "state", "s", s[1:])
    check_finite_steps(name, "loss", "L", [xp_of(s[-1]).asarray(loss_value)], first=len(s) - 1)
    check_finite_tree(name, "gradient", grads)
