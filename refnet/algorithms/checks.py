"""Checks shared by every sequence algorithm (BPTT, TBPTT, RTRL, UORO, KF-RTRL, FPP, ...).

Inputs are validated once at entry (:func:`check_sequence`, :func:`check_objective`:
names, shapes, finiteness, one dtype).  Results are checked for NaN/Inf by one
helper, :func:`first_nonfinite`, wherever they are made (README, "Errors"):

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
    """Check that ``cell`` follows the cell contract of :class:`refnet.cells.Cell`; returns it.

    The contract read here is the methods every sequence algorithm calls
    (``param_shapes``, ``check_params``, ``step``, ``step_vjp``, ``step_jvp``,
    ``output``, ``output_vjp``) and the attributes ``n_state`` and ``input_size``.

    Parameters
    ----------
    cell : object
        The candidate cell.
    name : str
        The argument's name in the message (``cells[2]`` for a layer of a stack).

    Returns
    -------
    refnet.cells.Cell
        ``cell`` itself, unchanged.

    Raises
    ------
    TypeError
        ``cell`` lacks one of those methods or attributes; the message names ``name``, the
        type that came and the methods it lacks.
    """
    missing = [m for m in _CELL_METHODS if not callable(getattr(cell, m, None))]
    if missing or not hasattr(cell, "n_state") or not hasattr(cell, "input_size"):
        raise TypeError(f"{name} must be a refnet cell (a refnet.cells.Cell with "
                        f"{', '.join(_CELL_METHODS)}), got {type(cell).__name__} {cell!r:.80}"
                        + (f", which lacks {', '.join(missing)}" if missing else ""))
    return cell


def check_head(head, cell=None, name="head"):
    """Check that ``head`` is a readout (:class:`refnet.heads.Head` or ``MLPHead``) that fits ``cell``; returns it.

    Parameters
    ----------
    head : object
        The candidate head: needs ``param_shapes``, ``check_params``, ``check_targets``,
        ``forward``, ``loss_and_grad``, ``loss_value`` and ``n_in``.
    cell : refnet.cells.Cell or None
        The cell whose ``output`` the head reads; None skips the width check.
    name : str
        The argument's name in the messages.

    Returns
    -------
    refnet.heads.Head
        ``head`` itself, unchanged.

    Raises
    ------
    TypeError
        ``head`` lacks one of those methods or ``n_in``.
    ValueError
        ``head.n_in != cell.n_out``.
    """
    missing = [m for m in _HEAD_METHODS if not callable(getattr(head, m, None))]
    if missing or not hasattr(head, "n_in"):
        raise TypeError(f"{name} must be a refnet.heads.Head (or MLPHead), got {type(head).__name__} "
                        f"{head!r:.80}")
    if cell is not None and head.n_in != cell.n_out:
        raise ValueError(f"{name}.n_in must equal cell.n_out = {cell.n_out}, got {head.n_in} "
                         "(the head reads the cell's output)")
    return head


def check_sequence(cell, theta, x, s0):
    """Validate a (cell, θ, x, s0) run once at entry; returns ``(x, s0)`` as arrays.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The recurrent cell (checked by :func:`check_cell`).
    theta : dict {name: array}
        The cell's parameters: exactly the names of ``cell.param_shapes()``, those shapes, one
        floating dtype, finite.
    x : (T, B, I) array-like
        Inputs with I = ``cell.input_size``, T >= 1, B >= 1, floating, finite, of θ's dtype; an
        array-like (nested list, CPU torch tensor, JAX array) is made a NumPy array.
    s0 : (B, n_state) array-like or None
        Initial state; None for zeros in x's dtype and backend.

    Returns
    -------
    x : (T, B, I) array
        ``x`` as an array.
    s0 : (B, n_state) array
        ``s0`` as an array (zeros if it was None).

    Raises
    ------
    TypeError
        ``cell`` lacks the contract; ``theta`` is not a dict or holds a non-floating or
        non-array value; ``x`` or ``s0`` is not an array or array-like (None for ``x``, a dict, a
        string, a tensor on a GPU); an integer ``x``; mixed dtypes or backends.
    ValueError
        A missing or extra parameter name, a wrong shape, T = 0, B = 0, a ragged nested list,
        or a NaN/Inf in ``theta``, ``x`` or ``s0``.
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
    """:func:`check_sequence` for callers that already hold an array ``x``; returns s0 only.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The recurrent cell.
    theta : dict {name: array}
        The cell's parameters.
    x : (T, B, I) array
        Inputs, T >= 1, B >= 1.
    s0 : (B, n_state) array-like or None
        Initial state; None for zeros.

    Returns
    -------
    (B, n_state) array
        ``s0`` as an array (zeros if it was None).

    Raises
    ------
    TypeError
        As :func:`check_sequence`.
    ValueError
        As :func:`check_sequence`.
    """
    return check_sequence(cell, theta, x, s0)[1]


def check_objective(head, beta, x, y, weights, cell=None):
    """Validate the head's parameters, the targets and the loss weights of a run; returns ``(y, weights)``.

    Parameters
    ----------
    head : refnet.heads.Head or refnet.heads.MLPHead
        The readout and its loss (checked by :func:`check_head`).
    beta : dict {name: array}
        The head's parameters: exactly the names and shapes of ``head.param_shapes()``, finite.
    x : (T, B, I) array
        The validated inputs (from :func:`check_sequence`); only T, B, dtype and backend are read.
    y : (T, B) int array-like or (T, B, O) float array-like
        Class labels in [0, O) for a label loss (cross-entropy), else targets of width
        O = ``head.n_out``, finite and of x's dtype.
    weights : (T, B) array-like or None
        Loss weights w[t − 1, b]; None for ``refnet.heads.every_step`` (1/(T·B) each).
    cell : refnet.cells.Cell or None
        The cell the head reads, for the ``head.n_in == cell.n_out`` check; None skips it.

    Returns
    -------
    y : (T, B) or (T, B, O) array
        ``y`` as an array.
    weights : (T, B) array
        ``weights`` as an array (the mean weights if it was None).

    Raises
    ------
    TypeError
        ``head`` lacks the head contract; ``beta`` not a dict of floating arrays; ``y`` or
        ``weights`` not an array; labels that are not integers for a label loss; mixed dtypes
        or backends.
    ValueError
        ``head.n_in != cell.n_out``; a missing or extra β name; a wrong shape; labels outside
        [0, O); a NaN/Inf in ``beta``, float targets or ``weights``.
    """
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
    """Build (not raise) the :class:`refnet.NumericalError` for ``symbol_step``, a ``quantity`` found non-finite.

    The message reads ``"<function>: <quantity> <symbol>_<step> became non-finite at
    step t=<step> (batch b, unit i: <value>)<hint>"``; ``where``, ``step`` and
    ``index`` are set on the error for callers that branch on them.

    Parameters
    ----------
    function : str
        The public function that found it (``"bptt"``, ``"stacked_forward (layer 1)"``).
    quantity : str
        What it is, in words (``"state"``, ``"loss term"``, ``"adjoint"``).
    symbol : str
        Its symbol (``"s"``, ``"L"``, ``"ds"``).
    step : int
        The time step t it belongs to (1-based, as s_t).
    index : tuple of int
        The first non-finite entry: (batch, unit) for a (B, n) array, () for a scalar.
    value : float
        The value found there (nan, inf or -inf).
    hint : str
        Appended to the message, e.g. ``" (the forward pass overflowed)"``.

    Returns
    -------
    refnet.NumericalError
        The error, for the caller to raise.

    Raises
    ------
    TypeError
        ``index`` has no length (it is read with ``len``).
    """
    name = f"{symbol}_{step}"
    return NumericalError(f"{function}: {quantity} {name} became non-finite at step t={step} "
                          f"({_entry_words(index)}: {value}){hint}",
                          where=f"{function}: {name}", step=step, index=index)


class FiniteWatch:
    """Watches per-step arrays as a loop makes them; raises at the first NaN/Inf block.

    ``watch(t, a)`` records ``a`` made at step t; every ``every`` records the
    block is checked by :func:`first_nonfinite` (one host read-back for the whole
    block on a device), and :meth:`flush` checks what is left.  The raised error
    names ``function``, ``quantity`` and ``symbol_t`` at the first bad step, so a
    diverging run is reported at most ``every`` steps after it diverged.

    Parameters
    ----------
    function : str
        The public function named in the error.
    quantity : str
        What is watched, in words (default ``"state"``).
    symbol : str
        Its symbol (default ``"s"``).
    every : int
        Records per check (default ``CHECK_EVERY`` = 64); a larger block means fewer read-backs
        and a later report.
    hint : str
        Appended to the error's message.

    Raises
    ------
    refnet.NumericalError
        Not on construction (nothing is checked then): a call that completes a block, or
        :meth:`flush`, raises it when a recorded array holds NaN/Inf (:func:`nonfinite_error`).
    """

    def __init__(self, function, quantity="state", symbol="s", *, every=CHECK_EVERY, hint=""):
        self.function, self.quantity, self.symbol, self.hint = function, quantity, symbol, hint
        self.every = every
        self.pending = []

    def __call__(self, t, a):
        """Record ``a``, made at step t; check the block once ``every`` records are pending.

        Parameters
        ----------
        t : int
            The step (1-based) that made ``a``.
        a : array
            The step's quantity (any shape); None is skipped by the check.

        Raises
        ------
        refnet.NumericalError
            If the checked block holds a NaN/Inf: names the function, the quantity and the
            first bad step.
        """
        self.pending.append((t, a))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self):
        """Check every array recorded since the last check, then forget them.

        Raises
        ------
        refnet.NumericalError
            A recorded array holds NaN/Inf: names ``symbol_t`` at the first such step and its
            first bad entry.  The records are kept in that case.
        """
        found = first_nonfinite([a for _, a in self.pending])
        if found is not None:
            k, index, value = found
            raise nonfinite_error(self.function, self.quantity, self.symbol, self.pending[k][0], index, value,
                                  self.hint)
        self.pending.clear()


class StepWatch:
    """The watches of an algorithm that carries its gradient forward (RTRL, UORO, KF-RTRL, SnAp, RFLO).

    ``watch(t, s_t, L_t, g_t)`` records the state, the loss term and the step's
    gradient term (what is added to dθ, made from the carried sensitivity);
    the blocks are checked in that order, so a diverging state is named before
    what it poisoned.  :meth:`flush` at the end of the run.

    Parameters
    ----------
    function : str
        The public function named in the errors.
    every : int
        Steps per check (default ``CHECK_EVERY`` = 64).

    Raises
    ------
    refnet.NumericalError
        Not on construction: a call that completes a block, or :meth:`flush`, raises it for
        the first non-finite state s_t, else loss term L_t, else gradient term dtheta_t.
    """

    def __init__(self, function, *, every=CHECK_EVERY):
        self.watches = (FiniteWatch(function, "state", "s", every=every, hint=" (the forward pass overflowed)"),
                        FiniteWatch(function, "loss term", "L", every=every),
                        FiniteWatch(function, "gradient term", "dtheta", every=every,
                                    hint=" (the carried sensitivity overflowed)"))

    def __call__(self, t, s_t, L_t, g_t):
        """Record step t's state, loss term and gradient term; check the blocks every ``every`` steps.

        Parameters
        ----------
        t : int
            The step (1-based).
        s_t : (B, n_state) array
            The state the step made.
        L_t : scalar array or None
            The step's loss term (None where the step has no loss).
        g_t : array or None
            The step's gradient term (what is added to dθ), any shape.

        Raises
        ------
        refnet.NumericalError
            If a checked block holds a NaN/Inf: the state is named before the loss term and the
            gradient term it poisoned.
        """
        for watch, a in zip(self.watches, (s_t, L_t, g_t)):
            watch.pending.append((t, a))
        if len(self.watches[0].pending) >= self.watches[0].every:
            self.flush()

    def flush(self):
        """Check everything recorded since the last check: states, then losses, then gradient terms.

        Raises
        ------
        refnet.NumericalError
            The first non-finite state s_t, else loss term L_t, else gradient term dtheta_t.
        """
        for watch in self.watches:
            watch.flush()


def check_finite_steps(function, quantity, symbol, values, *, first=1, steps=None, hint=""):
    """Raise :class:`refnet.NumericalError` naming the first non-finite ``values[k]``; return None if all are finite.

    Parameters
    ----------
    function : str
        The public function named in the error.
    quantity : str
        What the values are, in words (``"loss term"``, ``"adjoint"``).
    symbol : str
        Their symbol (``"L"``, ``"ds"``).
    values : iterable of arrays or scalars
        One per step; None entries are skipped.
    first : int
        The step of ``values[0]`` when ``steps`` is None (default 1).
    steps : sequence of int or None
        The step of every value (for a sparse set, e.g. the steps that took a loss).
    hint : str
        Appended to the error's message.

    Raises
    ------
    refnet.NumericalError
        A value holds NaN/Inf: names ``symbol_t`` at its step, its first bad entry and value.
    TypeError
        A value that is not an array or number, or values on two backends.
    """
    values = list(values)
    found = first_nonfinite(values)
    if found is not None:
        k, index, value = found
        raise nonfinite_error(function, quantity, symbol, first + k if steps is None else steps[k], index,
                              value, hint)


def check_finite_tree(function, quantity, tree, hint=""):
    """Raise :class:`refnet.NumericalError` naming the first non-finite array of a params dict ``tree``.

    Parameters
    ----------
    function : str
        The public function named in the error.
    quantity : str
        The dict's name in the message (``"dtheta"``, ``"gradient"``).
    tree : dict {name: array}
        The arrays to check, in their order.
    hint : str
        Appended to the error's message.

    Raises
    ------
    refnet.NumericalError
        ``tree[k]`` holds NaN/Inf: names ``quantity[k]``, the first bad index and value.
    TypeError
        ``tree`` is not a mapping of arrays, or its arrays are on two backends.
    """
    keys = list(tree)
    found = first_nonfinite([tree[k] for k in keys])
    if found is not None:
        k, index, value = found
        name = f"{quantity}[{keys[k]!r}]"
        raise NumericalError(f"{function}: {name} is non-finite at index {index} ({value}){hint}",
                             where=f"{function}: {name}", index=index)


def check_finite_result(name, loss_value, grads, s):
    """Raise NumericalError if a state, the loss or a gradient is NaN/Inf, in that order.

    Kept for callers that check at exit only (the fused path); the per-step
    algorithms of this package watch their forward passes with
    :class:`FiniteWatch` instead.

    Parameters
    ----------
    name : str
        The public function named in the error.
    loss_value : float or 0-d array
        The loss L.
    grads : dict {name: array}
        The gradients to check (θ's and β's together).
    s : sequence of arrays (B, n_state)
        States s[0..T]; s[1..] are checked (s_0 was validated at entry).

    Raises
    ------
    refnet.NumericalError
        Names the first non-finite state s_t, else the loss, else ``gradient[k]``.
    TypeError
        ``grads`` is not a mapping of arrays, or arrays on two backends.
    """
    check_finite_steps(name, "state", "s", s[1:])
    check_finite_steps(name, "loss", "L", [xp_of(s[-1]).asarray(loss_value)], first=len(s) - 1)
    check_finite_tree(name, "gradient", grads)
