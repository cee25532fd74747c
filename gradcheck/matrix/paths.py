"""Paths no other family reaches: the batch-1 numba kernels and the optimisers.

=====================  ==========================================================
algorithm              relation
=====================  ==========================================================
kernel(step)           Elman ``step`` at batch 1 = its array twin (REFNET_NUMBA=0),
kernel(step_vjp)       to rounding, for ``step_vjp``, ``jacobians``, ``steps`` and
kernel(jacobians)      ``steps_vjp`` too — and the kernel really ran (watched at
kernel(steps)          ``refnet.kernels.load``, the one door from a dispatching
kernel(steps_vjp)      function to its kernel), while the twin ran none
kernel(rtrl_update)    ``rtrl_update`` below ``KERNEL_MAX_WORK`` = J_s M + J_θ
blas(rtrl_update)      above it, the BLAS path (which no matrix problem is big enough to
                       reach) = J_s M + J_θ by einsum, and no kernel ran
sgd, sgd(momentum)     K steps = the update equations of the papers, computed
adagrad, adam          here independently (below), defaults and other settings
=====================  ==========================================================

Every other row runs the cells at batch 3, where the Elman kernels never
run; online learning runs them at batch 1.  The kernels compute in the
active float dtype on NumPy whatever the backend (they are the CPU path);
the relation holds to the dtype's ``exact`` tolerance (both sides sum the same
products in different orders).

The optimiser references are written from the papers, in their own form, not
from refnet's (which follows ``torch.optim``):

- SGD (Robbins & Monro 1951): θ ← θ − α g.  With momentum μ, Sutskever,
  Martens, Dahl & Hinton (2013), Eq. 1 (classical momentum):
  v ← μ v − α g, θ ← θ + v; with a constant α this is PyTorch's
  b ← μ b + g, θ ← θ − α b (v = −α b).
- Adagrad (Duchi, Hazan & Singer 2011, diagonal form, Eq. 1 and Fig. 1):
  G ← G + g², θ ← θ − η g / (δ + √G); defaults η = 0.01, δ = 1e-10 (the paper
  gives none; these are ``torch.optim.Adagrad``'s).
- Adam (Kingma & Ba 2015, Algorithm 1): m ← β1 m + (1 − β1) g,
  v ← β2 v + (1 − β2) g², m̂ = m / (1 − β1ᵗ), v̂ = v / (1 − β2ᵗ),
  θ ← θ − α m̂ / (√v̂ + ε); defaults α = 0.001, β1 = 0.9, β2 = 0.999, ε = 1e-8
  (the paper's "good default settings").

The gradients fed to them span ten decades (|g| from 1e-10 to 1), so that ε
and δ change the steps by far more than rounding, and K = 4 steps exercise
the moments and the bias corrections.
"""
import contextlib
import os

import numpy as np

import refnet
from refnet import kernels
from refnet.algorithms.rtrl import KERNEL_MAX_WORK, rtrl_update
from refnet.backend import get_dtype
from refnet.optim import SGD, Adagrad, Adam

from ..check import compare_grads
from .common import Check, H, I, exact_tol, worst

__all__ = ["kernel_path", "checks"]

OPTIMISER_STEPS = 4


@contextlib.contextmanager
def kernel_path(flag):
    """Run the body under ``REFNET_NUMBA=flag``; yields the list of kernels called through ``kernels.load``.

    Both the variable and ``kernels.load`` are restored on exit, whatever the body raised.
    A context manager: ``with kernel_path("1") as calls: ...``.  The list is
    the evidence a kernel row needs: a twin that silently ran instead of its
    kernel leaves it empty.

    Parameters
    ----------
    flag : {'0', '1'}
        The value of ``REFNET_NUMBA`` inside the block.

    Yields
    ------
    list of str
        The names of the kernel functions called inside the block, in call order.

    Raises
    ------
    TypeError
        If ``flag`` is not a str (``os.environ`` takes only strings).
    """
    calls, load = [], kernels.load

    class Watched:
        def __init__(self, module):
            self._module = module

        def __getattr__(self, name):
            kernel = getattr(self._module, name)

            def call(*args, **kwargs):
                calls.append(name)
                return kernel(*args, **kwargs)
            return call

    before = os.environ.get("REFNET_NUMBA")
    os.environ["REFNET_NUMBA"] = flag
    kernels.load = lambda name: Watched(load(name))
    try:
        yield calls
    finally:
        kernels.load = load
        if before is None:
            del os.environ["REFNET_NUMBA"]
        else:
            os.environ["REFNET_NUMBA"] = before


def _np(r, shape, dtype, scale=1.0):
    return (r.standard_normal(shape) * scale).astype(dtype)


def _elman_point(nonlinearity, seed=0):
    """An Elman cell, θ, one step's x, h_prev and a cotangent, all NumPy at batch 1 in the active dtype."""
    r, dtype = np.random.default_rng(seed), get_dtype()
    cell = refnet.ElmanRNN(I, H, nonlinearity)
    bound = 1.0 / np.sqrt(H)
    theta = {k: r.uniform(-bound, bound, shape).astype(dtype) for k, shape in cell.param_shapes().items()}
    xs = [_np(r, (1, I), dtype) for _ in range(3)]
    return cell, theta, xs, _np(r, (1, H), dtype, 0.5), _np(r, (1, H), dtype)


def _as_arrays(result, prefix="out"):
    """Every array in a nested result (tuples, lists, NamedTuples, dicts), as a flat dict of NumPy arrays."""
    if isinstance(result, dict):
        out = {}
        for k, v in result.items():
            out.update(_as_arrays(v, f"{prefix}/{k}"))
        return out
    if isinstance(result, (tuple, list)):
        out = {}
        for j, v in enumerate(result):
            out.update(_as_arrays(v, f"{prefix}[{j}]"))
        return out
    if isinstance(result, np.ndarray) and result.dtype.kind == "f":
        return {prefix: result}
    return {}


def _twin(on, off, kernel_names):
    """``on()`` with the kernels on against ``off()`` with REFNET_NUMBA=0, and the path each took.

    Returns (max rel error, tol, passed, detail); passing needs the kernels ``kernel_names`` (in
    that order) to have run on the one side and none on the other, so the row can never compare
    the array code with itself.
    """
    with kernel_path("1") as on_calls:
        ours = _as_arrays(on())
    with kernel_path("0") as off_calls:
        theirs = _as_arrays(off())
    report = compare_grads(ours, theirs, rtol=exact_tol(), reference_name="twin", raise_on_failure=False)
    took = on_calls == list(kernel_names) and off_calls == []
    detail = worst(report) if took else (f"kernel path not taken: REFNET_NUMBA=1 ran {on_calls or 'no kernel'}, "
                                         f"REFNET_NUMBA=0 ran {off_calls or 'no kernel'}")
    return report.max_rel_error, report.rtol, report.passed and took, detail


def _elman_kernel(nonlinearity, method):
    def run():
        cell, theta, xs, h, dh = _elman_point(nonlinearity)
        with kernel_path("0"):                       # the caches both sides start from, by the array code
            _, cache = cell.step(theta, h, xs[0])
            trace = cell.steps(theta, h, xs)[1]
        step = lambda: cell.step(theta, h, xs[0])                              # noqa: E731
        step_vjp = lambda: cell.step_vjp(theta, cache, dh)                     # noqa: E731
        jacobians = lambda: cell.jacobians(theta, cache)                       # noqa: E731
        steps = lambda: np.stack(list(cell.steps(theta, h, xs)[0]))           # noqa: E731
        cases = {
            "step": (step, step, ["_elman_step"]),
            "step_vjp": (step_vjp, step_vjp, ["_elman_step_vjp"]),
            "jacobians": (jacobians, jacobians, ["_elman_jacobians"]),
            "steps": (steps, steps, ["_elman_steps"]),
            # the kernel path of steps_vjp runs on the trace the kernel path of steps makes
            "steps_vjp": (lambda: cell.steps_vjp(theta, cell.steps(theta, h, xs)[1], dh),
                          lambda: cell.steps_vjp(theta, trace, dh), ["_elman_steps", "_elman_steps_vjp"]),
        }
        return _twin(*cases[method])
    return run


def _rtrl_update_kernel():
    def run():
        r, dtype = np.random.default_rng(1), get_dtype()
        B, n, P = 2, H, 3 * H                              # n²P = 192 <= KERNEL_MAX_WORK: the kernel's size
        assert n * n * P <= KERNEL_MAX_WORK
        J_s, J_theta, M = _np(r, (B, n, n), dtype), _np(r, (B, n, P), dtype), _np(r, (B, n, P), dtype)
        update = lambda: rtrl_update(J_s, J_theta, M)                         # noqa: E731
        return _twin(update, update, ["_rtrl_update"])
    return run


def _rtrl_update_blas():
    def run():
        r, dtype = np.random.default_rng(2), get_dtype()
        B, n = 2, 8
        P = KERNEL_MAX_WORK // (n * n) + 1                 # one column past the kernel's size: BLAS
        J_s, J_theta, M = _np(r, (B, n, n), dtype), _np(r, (B, n, P), dtype), _np(r, (B, n, P), dtype)
        with kernel_path("1") as calls:
            ours = rtrl_update(J_s, J_theta, M)
        reference = np.einsum("bij,bjp->bip", J_s.astype(np.float64), M.astype(np.float64)) + J_theta
        report = compare_grads({"M": ours}, {"M": reference}, rtol=exact_tol(), reference_name="einsum",
                               raise_on_failure=False)
        detail = worst(report) if not calls else f"a kernel ran above KERNEL_MAX_WORK: {calls}"
        return report.max_rel_error, report.rtol, report.passed and not calls, detail
    return run


# ---- optimisers against their papers ------------------------------------------------------------

def _problem(seed=3):
    """θ (a matrix and a vector) and K gradients whose entries span ten decades, float64 NumPy."""
    r = np.random.default_rng(seed)
    theta = {"W": r.standard_normal((3, 4)), "b": r.standard_normal(4)}
    grads = [{k: r.standard_normal(v.shape) * 10.0 ** r.uniform(-10, 0, v.shape) for k, v in theta.items()}
             for _ in range(OPTIMISER_STEPS)]
    return theta, grads


def _sgd_paper(theta, grads, lr, momentum):
    theta = {k: v.copy() for k, v in theta.items()}
    velocity = {k: np.zeros_like(v) for k, v in theta.items()}
    for g in grads:
        for k in theta:
            if momentum:                                 # Sutskever et al. (2013), Eq. 1
                velocity[k] = momentum * velocity[k] - lr * g[k]
                theta[k] = theta[k] + velocity[k]
            else:                                        # Robbins & Monro (1951)
                theta[k] = theta[k] - lr * g[k]
    return theta


def _adagrad_paper(theta, grads, lr=0.01, delta=1e-10):
    theta = {k: v.copy() for k, v in theta.items()}
    G = {k: np.zeros_like(v) for k, v in theta.items()}
    for g in grads:                                      # Duchi et al. (2011), diagonal
        for k in theta:
            G[k] = G[k] + g[k] ** 2
            theta[k] = theta[k] - lr * g[k] / (delta + np.sqrt(G[k]))
    return theta


def _adam_paper(theta, grads, alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
    theta = {k: v.copy() for k, v in theta.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(w) for k, w in theta.items()}
    for t, g in enumerate(grads, start=1):               # Kingma & Ba (2015), Algorithm 1
        for k in theta:
            m[k] = beta1 * m[k] + (1 - beta1) * g[k]
            v[k] = beta2 * v[k] + (1 - beta2) * g[k] ** 2
            m_hat = m[k] / (1 - beta1 ** t)
            v_hat = v[k] / (1 - beta2 ** t)
            theta[k] = theta[k] - alpha * m_hat / (np.sqrt(v_hat) + eps)
    return theta


def _optimiser(make, paper):
    def run():
        theta, grads = _problem()
        params = {k: refnet.backend.asarray(v.copy(), dtype=np.float64) for k, v in theta.items()}   # updated in place
        opt = make()
        state = opt.init(params)
        for g in grads:
            state = opt.update(params, {k: refnet.backend.asarray(v, dtype=np.float64) for k, v in g.items()},
                               state)
        expected = paper(theta, grads)
        # The change of θ, not θ itself: a wrong ε moves θ by ~1e-9 of its size, below any
        # tolerance on θ, but by a large fraction of a step.
        ours = {k: refnet.backend.to_numpy(params[k]) - theta[k] for k in theta}
        report = compare_grads(ours, {k: expected[k] - theta[k] for k in theta}, rtol=1e-12,
                               reference_name="paper", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def checks():
    """The family's checks, in display order.

    The Elman kernels (tanh and ReLU, five methods each), the RTRL update
    kernel and its BLAS route, then each optimiser against its paper's update.

    Returns
    -------
    list of Check
        The rows, each with its cell, algorithm, relation and ``run``.

    Raises
    ------
    None
        Listing builds no problem: each row's problem is built when its
        ``run`` is called, and :func:`~gradcheck.matrix.common.run_check`
        turns whatever that raises into a FAIL row.
    """
    out = []
    for nonlinearity in ("tanh", "relu"):
        for method in ("step", "step_vjp", "jacobians", "steps", "steps_vjp"):
            out.append(Check(f"elman_{nonlinearity}", f"kernel({method})",
                             "batch 1: numba kernel = array twin, kernel ran", _elman_kernel(nonlinearity, method)))
    out.append(Check("rtrl", "kernel(rtrl_update)", "numba kernel = J_s M + J_theta twin, kernel ran",
                     _rtrl_update_kernel()))
    out.append(Check("rtrl", "blas(rtrl_update)", "n^2 P > KERNEL_MAX_WORK: = einsum J_s M + J_theta, no kernel",
                     _rtrl_update_blas()))
    rows = [
        ("sgd", "= Robbins & Monro (1951), 4 steps", lambda: SGD(lr=0.3),
         lambda th, gs: _sgd_paper(th, gs, 0.3, 0.0)),
        ("sgd(momentum)", "= Sutskever et al. (2013) Eq. 1, 4 steps", lambda: SGD(lr=0.3, momentum=0.7),
         lambda th, gs: _sgd_paper(th, gs, 0.3, 0.7)),
        ("adagrad", "= Duchi et al. (2011), torch defaults, 4 steps", lambda: Adagrad(), _adagrad_paper),
        ("adagrad(lr, eps)", "= Duchi et al. (2011), 4 steps", lambda: Adagrad(lr=0.2, eps=1e-6),
         lambda th, gs: _adagrad_paper(th, gs, 0.2, 1e-6)),
        ("adam", "= Kingma & Ba (2015) Alg. 1, paper defaults, 4 steps", lambda: Adam(), _adam_paper),
        ("adam(lr, betas, eps)", "= Kingma & Ba (2015) Alg. 1, 4 steps",
         lambda: Adam(lr=0.05, beta1=0.5, beta2=0.8, eps=1e-6),
         lambda th, gs: _adam_paper(th, gs, 0.05, 0.5, 0.8, 1e-6)),
    ]
    for name, relation, make, paper in rows:
        out.append(Check("optim", name, relation, _optimiser(make, paper)))
    return out
