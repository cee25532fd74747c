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
    """One printed row: the check's measure, its tolerance and its verdict (pass / fail / inconclusive)."""

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
    """

    cell: str
    algorithm: str
    relation: str
    run: Callable


class Problem:
    """A seeded random problem for one cell: θ, β, x, s_0, targets and weights."""

    def __init__(self, cell, loss=heads.softmax_cross_entropy, weights="every", seed=0):
        """``cell``: a name in :data:`CELLS`, or a zero-argument factory returning a cell."""
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
        """One float64 NumPy dict for gradcheck: theta/…, beta/…, s0."""
        out = {f"theta/{k}": to_numpy(v) for k, v in theta.items()}
        out.update({f"beta/{k}": to_numpy(v) for k, v in beta.items()})
        out["s0"] = to_numpy(s0)
        return out

    def unpack(self, flat):
        """float64 θ, β, s_0 on the active backend, from a gradcheck dict."""
        theta = {k: f64(flat[f"theta/{k}"]) for k in self.theta}
        beta = {k: f64(flat[f"beta/{k}"]) for k in self.beta}
        return theta, beta, f64(flat["s0"])

    def loss(self, flat):
        """L in float64 at the point ``flat``."""
        theta, beta, s0 = self.unpack(flat)
        return refnet.loss(self.cell, theta, self.x64, s0, self.head, beta, self.y64, self.w64)


def f64(a):
    """``a`` on the active backend in float64 (integer labels stay integers)."""
    a_np = to_numpy(a)
    return asarray(a_np, dtype=a_np.dtype if a_np.dtype.kind in "iu" else np.float64)


def check_fd(f, point, grads):
    """check_grads with a float64 step and the tolerances of the analytic dtype."""
    row = tolerances_for(get_dtype())
    return check_grads(f, point, grads, eps=tolerances_for(np.float64)["eps"], rtol=row["rtol"],
                       atol=row["atol"], raise_on_failure=False)


def exact_tol():
    return tolerances_for(get_dtype())["exact"]


def worst(report):
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
