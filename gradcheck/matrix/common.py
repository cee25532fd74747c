"""Shared pieces of the matrix: rows, checks, the random problem, float64 helpers."""
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

import refnet
from refnet import heads
from refnet.backend import asarray, get_dtype, rng, to_numpy

from ..check import check_grads
from ..tolerances import tolerances_for
from ..verdict import FAIL, INCONCLUSIVE, InconclusiveError, Verdict, as_verdict, recording

__all__ = ["CELLS", "Check", "Row", "Problem", "run_check", "check_fd", "exact_tol", "f64", "worst",
           "T", "B", "I", "H", "O"]

T, B, I, H, O = 5, 3, 3, 4, 3

CELLS = {
    "elman_tanh": lambda: refnet.ElmanRNN(I, H, "tanh"),
    "elman_relu": lambda: refnet.ElmanRNN(I, H, "relu"),
    "irnn": lambda: refnet.IRNN(I, H, input_std=0.5),
    "lstm": lambda: refnet.LSTM(I, H),
    "gru": lambda: refnet.GRU(I, H),
}


@dataclass(frozen=True)
class Row:
    """One printed row: the check's measure, its tolerance and its verdict (pass / fail / inconclusive).

    Attributes
    ----------
    cell : str
        The row's cell (or family: ``'head'``, ``'optim'``, ``'gradcheck'``).
    algorithm : str
        The algorithm or entry point checked (``'bptt'``, ``'tbptt(2,3)'``, ...).
    relation : str
        The relation claimed, in words (``'= FD of L (every step, CE)'``).
    max_rel_error : float or None
        The measured error (dimensionless); None where the measure is not an
        error (a Taylor order) or the check raised.
    tolerance : float
        The bound the error was held to (for a Taylor row, the minimum order);
        NaN when the check raised.
    verdict : Verdict
        PASS, FAIL or INCONCLUSIVE, with its reason.
    seconds : float
        Wall-clock time of the check, in seconds.
    detail : str
        What the check adds (the worst entry, an order...) and the verdict's reason.
    """

    cell: str
    algorithm: str
    relation: str
    max_rel_error: Optional[float]   # None where the measure is not an error (Taylor order)
    tolerance: float
    verdict: Verdict
    seconds: float
    detail: str = ""

    @property
    def passed(self):
        """True only for a PASS verdict: an inconclusive row is not a passed one."""
        return self.verdict.passed


@dataclass(frozen=True)
class Check:
    """A named check; ``run() -> (max_rel_error or None, tolerance, outcome, detail)``.

    ``outcome`` is a bool (True = pass), a :class:`gradcheck.Verdict`, or a
    report with ``.verdict`` (:func:`run_check` reads all three).

    Attributes
    ----------
    cell : str
        The row's cell (or family).
    algorithm : str
        The algorithm or entry point checked.
    relation : str
        The relation claimed, in words.
    run : callable
        ``run() -> (max_rel_error or None, tolerance, outcome, detail)``; builds
        its own problem, so listing checks costs nothing.
    """

    cell: str
    algorithm: str
    relation: str
    run: Callable


class Problem:
    """A seeded random problem for one cell: θ, β, x, s_0, targets and weights.

    Sizes are the module's T = 5 steps, B = 3 examples, I = 3 inputs and
    O = 3 outputs; arrays are made on the active backend and dtype
    (``REFNET_BACKEND``, ``REFNET_DTYPE``).  Attributes: ``cell``, ``theta``,
    ``head``, ``beta``, ``x`` (T, B, I), ``s0`` (B, n_state) ~ N(0, 0.5²),
    ``y`` ((T, B) labels or (T, B, O) targets in [0, 1)), ``weights`` (T, B),
    and float64 copies ``x64``, ``y64``, ``w64`` for the objective.

    Parameters
    ----------
    cell : str or callable
        A name in :data:`CELLS`, or a zero-argument factory returning a cell
        with input width I.
    loss : refnet.heads loss, optional
        The head's loss (``heads.softmax_cross_entropy``, ``heads.sigmoid_bce``,
        ``heads.mse``, ...); its ``label_target`` decides the kind of ``y``.
    weights : {'every', 'last', 'mask'}, optional
        Loss weights (T, B): every step, the last step only, or a random mask
        (any other value gives the mask).
    seed : int, optional
        Seed (>= 0) of every draw.

    Raises
    ------
    KeyError
        If ``cell`` is a str that is not in :data:`CELLS`.
    TypeError
        If ``cell`` is neither a str nor callable, or ``seed`` is not an int.
    ValueError
        If ``seed`` is negative, or ``REFNET_BACKEND``/``REFNET_DTYPE`` hold an unknown value.
    """

    def __init__(self, cell, loss=heads.softmax_cross_entropy, weights="every", seed=0):
        """Draw θ, β, x, s_0, y and the weights (class docstring)."""
        r = rng(seed)
        self.cell = CELLS[cell]() if isinstance(cell, str) else cell()
        self.theta = self.cell.init(r)
        self.head = refnet.Head(self.cell.n_out, O, loss)
        self.beta = self.head.init(r)
        self.x = r.normal((T, B, I))
        self.s0 = r.normal((B, self.cell.n_state), 0.5)
        if loss.label_target:
            self.y = r.integers(0, O, (T, B))
        else:
            self.y = r.uniform((T, B, O))
        if weights == "every":
            self.weights = heads.every_step(T, B)
        elif weights == "last":
            self.weights = heads.last_step(T, B)
        else:
            self.weights = heads.masked(r.uniform((T, B)) > 0.4)

        self.x64, self.y64, self.w64 = f64(self.x), f64(self.y), f64(self.weights)

    def pack(self, theta, beta, s0):
        """One NumPy dict for gradcheck: theta/…, beta/…, s0.

        Parameters
        ----------
        theta : dict {name: array}
            Cell parameters (or their gradients), keys as ``self.theta``.
        beta : dict {name: array}
            Head parameters (or their gradients), keys as ``self.beta``.
        s0 : (B, n_state) array
            The initial state (or ∂L/∂s_0).

        Returns
        -------
        dict {str: ndarray}
            ``'theta/<k>'``, ``'beta/<k>'`` and ``'s0'``, host copies in their
            own dtype (gradcheck makes the float64 copies).

        Raises
        ------
        AttributeError
            If ``theta`` or ``beta`` is not a dict.
        """
        out = {f"theta/{k}": to_numpy(v) for k, v in theta.items()}
        out.update({f"beta/{k}": to_numpy(v) for k, v in beta.items()})
        out["s0"] = to_numpy(s0)
        return out

    def unpack(self, flat):
        """float64 θ, β, s_0 on the active backend, from a gradcheck dict.

        Parameters
        ----------
        flat : dict {str: array}
            A dict as :meth:`pack` makes (gradcheck's perturbed point).

        Returns
        -------
        theta : dict {name: array}
            Cell parameters, float64.
        beta : dict {name: array}
            Head parameters, float64.
        s0 : (B, n_state) array
            Initial state, float64.

        Raises
        ------
        KeyError
            If ``flat`` lacks a ``theta/…``, ``beta/…`` or ``s0`` key of this problem.
        """
        theta = {k: f64(flat[f"theta/{k}"]) for k in self.theta}
        beta = {k: f64(flat[f"beta/{k}"]) for k in self.beta}
        return theta, beta, f64(flat["s0"])

    def loss(self, flat):
        """L in float64 at the point ``flat``: the objective finite differences are taken of.

        Parameters
        ----------
        flat : dict {str: array}
            A dict as :meth:`pack` makes.

        Returns
        -------
        float
            L = Σ_t Σ_b w_tb ℓ(head(s_t), y_tb), through ``refnet.loss``.

        Raises
        ------
        KeyError
            As :meth:`unpack`.
        ValueError
            If a perturbed array holds NaN or Inf (``refnet.loss`` refuses it).
        refnet.NumericalError
            If the forward pass or the loss is not finite at ``flat``.
        """
        theta, beta, s0 = self.unpack(flat)
        return refnet.loss(self.cell, theta, self.x64, s0, self.head, beta, self.y64, self.w64)


def f64(a):
    """``a`` on the active backend in float64 (integer labels stay integers).

    Parameters
    ----------
    a : array
        Any array (NumPy, CuPy, or refnet's device double), any shape.

    Returns
    -------
    array
        ``a`` in float64 on the active backend (signed or unsigned integer
        arrays keep their dtype).

    Raises
    ------
    ValueError
        If ``REFNET_BACKEND`` names no backend.
    RuntimeError
        If ``REFNET_BACKEND='cupy'`` and CuPy is unusable.
    """
    a_np = to_numpy(a)
    return asarray(a_np, dtype=a_np.dtype if a_np.dtype.kind in "iu" else np.float64)


def check_fd(f, point, grads):
    """check_grads with a float64 step and the tolerances of the analytic dtype.

    The step is float64's ε = 1e-6 whatever ``REFNET_DTYPE`` is (the objective
    is evaluated in float64), while rtol and atol are the active dtype's row,
    so a float32 run measures the float32 gradient's own error.

    Parameters
    ----------
    f : callable
        The objective, dict {name: float64 array} -> real scalar.
    point : dict {name: array}
        The point θ.
    grads : dict {name: array}
        The analytic gradient, with point's keys and shapes.

    Returns
    -------
    GradReport
        The report (never raised: ``raise_on_failure=False``).

    Raises
    ------
    TypeError
        As :func:`gradcheck.check_grads` (a non-callable ``f``, non-real arrays...).
    ValueError
        As :func:`gradcheck.check_grads` (key or shape mismatch, non-finite
        grads), and for an unknown ``REFNET_DTYPE``.
    """
    row = tolerances_for(get_dtype())
    return check_grads(f, point, grads, eps=tolerances_for(np.float64)["eps"], rtol=row["rtol"],
                       atol=row["atol"], raise_on_failure=False)


def exact_tol():
    """The active dtype's tolerance for relations that hold to rounding (RTRL = BPTT ...).

    Returns
    -------
    float
        ``TOLERANCES[REFNET_DTYPE]['exact']``: 1e-12 in float64, 1e-5 in float32.

    Raises
    ------
    ValueError
        If ``REFNET_DTYPE`` is neither float64 nor float32.
    """
    return tolerances_for(get_dtype())["exact"]


def worst(report):
    """The worst entry of a report in words, for a row's detail: ``'worst theta/weight_hh[2, 0]'``.

    Parameters
    ----------
    report : GradReport
        Any report with ``params`` (ParamError, worst first).

    Returns
    -------
    str
        ``'worst <name><index>'``, or ``''`` when the report has no rows.

    Raises
    ------
    AttributeError
        If ``report`` has no ``params``.
    """
    if not report.params:
        return ""
    p = report.params[0]
    return f"worst {p.name}{list(p.index)}"


def _row_verdict(outcome, seen, err):
    """The row's verdict from what ``run()`` returned and the verdicts of the reports made meanwhile.

    A bool False from a row written before verdicts existed (``report.passed``)
    is INCONCLUSIVE when the reports behind it were inconclusive and none
    failed; a non-finite error is never a pass.
    """
    if isinstance(outcome, bool) or type(outcome).__name__ == "bool_":
        if bool(outcome):
            verdict = Verdict.pass_()
        else:
            undecided = [v for v in seen if v.status == INCONCLUSIVE]
            if undecided and not any(v.status == FAIL for v in seen):
                verdict = undecided[0]
            else:
                failed = [v for v in seen if v.status == FAIL]
                verdict = failed[0] if failed else Verdict.fail("the check's relation does not hold")
    else:
        verdict = as_verdict(outcome)
    if err is not None and not np.isfinite(err) and verdict.passed:
        verdict = Verdict.fail(f"the measured error is {err}")
    return verdict


def run_check(check):
    """Run one check and time it: a Row with its verdict.

    An exception becomes a FAIL row carrying its message (an
    :class:`gradcheck.InconclusiveError`, an INCONCLUSIVE row), not a dead CLI.
    A bool False is INCONCLUSIVE when the reports made meanwhile were
    inconclusive and none failed; a non-finite error is never a pass.

    Parameters
    ----------
    check : Check
        The row to run.

    Returns
    -------
    Row
        The measure, tolerance, verdict, time in seconds and detail.

    Raises
    ------
    AttributeError
        If ``check`` has no ``run``, ``cell``, ``algorithm`` or ``relation``.
        Whatever ``check.run`` raises (an Exception) is reported in the row,
        not raised; KeyboardInterrupt and SystemExit propagate.
    """
    start = time.perf_counter()
    with recording() as seen:
        try:
            err, tol, outcome, detail = check.run()
            if err is not None:
                err = float(err)
            verdict = _row_verdict(outcome, seen, err)
        except InconclusiveError as exc:
            err, tol, detail = None, float("nan"), str(exc).splitlines()[0]
            verdict = exc.verdict if exc.verdict is not None else Verdict.inconclusive(detail)
        except Exception as exc:  # a crash is a failed check, reported, not a dead CLI
            err, tol, detail = None, float("nan"), f"{type(exc).__name__}: {exc}"
            verdict = Verdict.fail(detail)
    seconds = time.perf_counter() - start
    if not verdict.passed and verdict.reason and verdict.reason not in detail:
        detail = f"{detail}; {verdict.reason}" if detail else verdict.reason
    return Row(check.cell, check.algorithm, check.relation, err, float(tol), verdict, seconds, detail)
