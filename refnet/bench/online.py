"""Case ``online``: seconds per online step at batch 1, refnet against PyTorch eager.

One online step is what an online learner does per observation: observe
x_t, advance the state, predict, take the loss on y_t, form the gradient
and apply one Adagrad step (lr 0.1) to the cell and the head.  The task is
6-CycleWorld (1 input, 1 output, sigmoid + binary cross-entropy), float64,
an Elman tanh cell with n hidden units, all at batch 1:

- ``tbptt6`` (n = 4): TBPTT(1, 6), the last 6 steps re-run under the current
  weights and back-propagated (:class:`refnet.online.TBPTTLearner`);
  PyTorch: ``nn.RNNCell`` + ``nn.Linear`` over the kept inputs, ``backward``,
  ``torch.optim.Adagrad`` — the usual way to write it.
- ``rtrl`` (n = 4 and 32): M_t = J_s M_{t−1} + J_θ and ∂ℓ_t/∂s_t M_t
  (:class:`refnet.online.RTRLLearner`); PyTorch twice: ``torch.func.jacrev``
  for J_s and J_θ every step, and the closed form J_s = diag(D) W_hh,
  J_θ = diag(D) [I ⊗ xᵀ, I ⊗ hᵀ, I, I] written in torch ops; the head's
  gradient by autograd in both.

RTRL's approximations (issue 17) on a leaky tanh cell (α = ``APPROX_ALPHA``)
with n = 32 and 128 hidden units, same task and optimiser, refnet only:
exact RTRL, UORO, SnAp-1, SnAp-2 (:class:`refnet.online.SnApLearner`) and
RFLO (:class:`refnet.online.RFLOLearner`): µs per online step (SnAp-1 and
RFLO also with ``REFNET_NUMBA=0``, their trace kernel off), the bytes each
carries from step to step (its sensitivity or trace) and the peak of one
step's allocations (tracemalloc), and — θ fixed over a trajectory of
``COSINE_STEPS`` CycleWorld steps — the cosine similarity of each
algorithm's gradient to the exact one (RTRL's): UORO's is one random
estimate, RFLO's with the readout's transpose and with a random feedback
matrix B ~ N(0, 1/n).

JAX (when importable): the whole step — window forward or sensitivity
update, head, loss, gradient and Adagrad — as one ``jax.jit`` call on a
carried state (``jax_jit``; float64 through ``jax_enable_x64``, XLA held to
one thread as :func:`refnet.bench.bptt.import_jax` says), compiled before
timing and checked like PyTorch's learners.

refnet runs with its numba kernels (``REFNET_NUMBA=1``) and without
(``REFNET_NUMBA=0``).  Before anything is timed, each PyTorch learner and
refnet's are run side by side from the same weights on the same stream and
their weights compared (:data:`AGREEMENT_RTOL`); a disagreement raises
:class:`~refnet.bench.report.BenchmarkError`.  Both libraries run on one
thread (NumPy's BLAS through threadpoolctl where importable,
``torch.set_num_threads(1)``): batch-1 products are too small to split, and
on a busy 2-core machine spinning BLAS workers slow them many times over.

The kernels' first call is reported apart: ``first_step_s`` is the first
refnet step in this process (numba's import and its on-disk cache),
``cold_compile_s`` the first TBPTT and RTRL steps in a fresh process with an
empty numba cache directory (compilation itself), and
``warm_cache_first_step_s`` the same in a second fresh process on the cache
the first wrote — what a user sees after ``python -m refnet.kernels``.  Ratios are PyTorch's time over
refnet's (numba on): > 1 means refnet is faster.
"""
import contextlib
import os
import subprocess
import sys
import tempfile
import time

import numpy

from .._validate import check_int
from ..algorithms.rflo import rflo
from ..algorithms.rtrl import rtrl
from ..algorithms.snap import snap
from ..algorithms.uoro import uoro
from ..backend import rng
from ..cells import ElmanRNN, LeakyRNN
from ..heads import Head, sigmoid_bce
from ..online import RFLOLearner, RTRLLearner, SnApLearner, TBPTTLearner, UOROLearner
from ..optim import Adagrad
from ..tasks.cycleworld import cycleworld
from .report import BenchmarkError, Report, format_table
from .bptt import import_jax
from .timing import numpy_blas, peak_bytes, time_each

__all__ = ["CASES", "TARGETS", "AGREEMENT_RTOL", "APPROX_METHODS", "APPROX_ALPHA", "COSINE_STEPS", "run"]

# (name, learner, hidden units); the stream is 6-CycleWorld.
CASES = (("tbptt6", "tbptt", 4), ("rtrl", "rtrl", 4), ("rtrl", "rtrl", 32))
K_TBPTT, LR, P_CYCLE = 6, 0.1, 6
# Steps per timed call (the time per step is the call's time over this), and timed calls.
STEPS_PER_CALL = {"full": 200, "quick": 20}
DEFAULT_REPEATS = {"full": 15, "quick": 3}
BUDGET_S = 6.0            # wall-clock cap of each implementation's timed calls
AGREEMENT_STEPS = 30
# The same float64 arithmetic in another order over 30 Adagrad steps: rounding, ~1e-13 measured.
AGREEMENT_RTOL = 1e-9
# The targets: ratio name -> least PyTorch/refnet ratio.
TARGETS = {("tbptt6", 4, "torch_eager"): 50.0, ("rtrl", 32, "torch_jacrev"): 10.0,
           ("rtrl", 32, "torch_closed_form"): 1.0, ("tbptt6", 4, "jax_jit"): 1.0, ("rtrl", 32, "jax_jit"): 2.0}


# RTRL's approximations: (method, REFNET_NUMBA) timed at each size; the leak of the cell they share.
APPROX_METHODS = (("rtrl", "1"), ("uoro", "1"), ("snap1", "1"), ("snap1", "0"), ("snap2", "1"), ("rflo", "1"),
                  ("rflo", "0"))
APPROX_ALPHA = 0.2
APPROX_SIZES = {"full": (32, 128), "quick": (8,)}
# Fewer steps per timed call than the Elman cases: RTRL and SnAp-2 at n = 128 take tens of ms a step.
APPROX_STEPS_PER_CALL = {"full": 10, "quick": 3}
COSINE_STEPS = {"full": 100, "quick": 10}


def _problem(n, steps):
    """Elman (1 → n) and a BCE head with PyTorch's init (seed 0), and a CycleWorld stream."""
    r = numpy.random.default_rng(0)
    cell, head = ElmanRNN(1, n), Head(n, 1, sigmoid_bce)
    bound = n ** -0.5
    theta = {k: r.uniform(-bound, bound, shape) for k, shape in cell.param_shapes().items()}
    beta = {k: r.uniform(-bound, bound, shape) for k, shape in head.param_shapes().items()}
    x, y = cycleworld(P_CYCLE, steps, dtype=numpy.float64)
    return cell, head, theta, beta, numpy.asarray(x), numpy.asarray(y)


def _approx_problem(n, steps):
    """The leaky tanh cell (1 → n, α = APPROX_ALPHA) and BCE head of the approximations, seed 0."""
    _, head, theta, beta, x, y = _problem(n, steps)
    return LeakyRNN(1, n, alpha=APPROX_ALPHA), head, theta, beta, x, y


def _approx_learner(method, cell, head, theta, beta):
    if method == "rtrl":
        return RTRLLearner(cell, head, theta, beta, Adagrad(LR))
    if method == "uoro":
        return UOROLearner(cell, head, theta, beta, Adagrad(LR), rng=rng(0))
    if method.startswith("snap"):
        return SnApLearner(cell, head, theta, beta, Adagrad(LR), n=int(method[4:]))
    return RFLOLearner(cell, head, theta, beta, Adagrad(LR))


def _carried_bytes(method, learner):
    """Bytes of what the learner carries from step to step for its gradient (θ and β aside)."""
    if method == "rtrl":
        return learner.M.nbytes + learner._M_next.nbytes      # M_t and the buffer M_{t+1} is written into
    if method == "uoro":
        return learner.uoro.s_tilde.nbytes + learner.uoro.theta_tilde.nbytes
    if method.startswith("snap"):
        return learner.snap.V.nbytes
    return learner.rflo.E.nbytes


def _cosines(n, size):
    """Cosine of each algorithm's gradient to RTRL's over COSINE_STEPS steps with θ fixed."""
    cell, head, theta, beta, x, y = _approx_problem(n, COSINE_STEPS[size])
    exact = cell.flat_params(rtrl(cell, theta, x, None, head, beta, y).dtheta)
    feedback = rng(1).normal((n, 1), n ** -0.5)
    estimates = {
        "uoro": uoro(cell, theta, x, None, head, beta, y, rng=rng(0)),
        "snap1": snap(cell, theta, x, None, head, beta, y, n=1),
        "snap2": snap(cell, theta, x, None, head, beta, y, n=2),
        "rflo": rflo(cell, theta, x, None, head, beta, y),
        "rflo_random_B": rflo(cell, theta, x, None, head, beta, y, feedback=feedback),
    }
    out = {}
    for method, result in estimates.items():
        g = cell.flat_params(result.dtheta)
        out[method] = float(g @ exact) / max(float(numpy.linalg.norm(g) * numpy.linalg.norm(exact)), 1e-300)
    return out


def _measure_approx(n, size, repeats):
    """Per-step timings, carried and peak bytes, cosines of the approximations at n hidden units."""
    per_call = APPROX_STEPS_PER_CALL[size]
    cell, head, theta, beta, x, y = _approx_problem(n, 600)
    runs, memory = {}, {}
    for method, flag in APPROX_METHODS:
        with _numba(flag):
            learner = _approx_learner(method, cell, head, theta, beta)
            stepper = _refnet_stepper(learner, x, y)
            stepper()
            if flag == "1":
                memory[method] = (_carried_bytes(method, learner), peak_bytes(stepper))
        runs[(method, flag)] = _steps(stepper, per_call, flag)
    timings = time_each(runs, repeats=repeats, max_seconds=BUDGET_S)
    return {key: (t, per_call) for key, t in timings.items()}, memory, _cosines(n, size)


def _refnet_learner(kind, cell, head, theta, beta):
    if kind == "tbptt":
        return TBPTTLearner(cell, head, theta, beta, Adagrad(LR), k=K_TBPTT)
    return RTRLLearner(cell, head, theta, beta, Adagrad(LR))


class _Torch:
    """PyTorch's online learners on the same problem; ``step(t)`` takes stream step t."""

    def __init__(self, torch, kind, cell, head, theta, beta, x, y):
        self.torch, self.kind = torch, kind
        f64 = torch.float64
        self.rnn = torch.nn.RNNCell(cell.input_size, cell.hidden_size, dtype=f64)
        self.lin = torch.nn.Linear(cell.hidden_size, 1, dtype=f64)
        with torch.no_grad():
            for name, value in theta.items():
                getattr(self.rnn, name).copy_(torch.from_numpy(value))
            self.lin.weight.copy_(torch.from_numpy(beta["weight"]))
            self.lin.bias.copy_(torch.from_numpy(beta["bias"]))
        self.params = [self.rnn.weight_ih, self.rnn.weight_hh, self.rnn.bias_ih, self.rnn.bias_hh]
        self.opt = torch.optim.Adagrad([*self.params, *self.lin.parameters()], lr=LR)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        n = cell.hidden_size
        self.h = torch.zeros(1, n, dtype=f64)
        self.inputs, self.second = [], None
        self.M = torch.zeros(n, sum(p.numel() for p in self.params), dtype=f64)
        self.eye = torch.eye(n, dtype=f64)

    def weights(self):
        return {name: getattr(self.rnn, name).detach().numpy().copy()
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}

    def _head_step(self, h, dtheta_of):
        """Loss on the head, its gradient by autograd, the cell's from ``dtheta_of(∂ℓ/∂h)``, Adagrad."""
        torch = self.torch
        h = h.detach().requires_grad_()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.lin(h), self.y[self.t], reduction="sum")
        self.opt.zero_grad()
        loss.backward()
        flat = dtheta_of(h.grad[0])
        start = 0
        for p in self.params:
            p.grad = flat[start:start + p.numel()].reshape(p.shape)
            start += p.numel()
        self.opt.step()

    def tbptt(self):
        torch = self.torch
        if len(self.inputs) == K_TBPTT:
            self.h = self.second
            self.inputs.pop(0)
        self.inputs.append(self.x[self.t])
        h = self.h
        for j, x_j in enumerate(self.inputs):
            h = self.rnn(x_j, h)
            if j == 0:
                self.second = h.detach()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.lin(h), self.y[self.t], reduction="sum")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def _cell(self, params, h, x):
        W_ih, W_hh, b_ih, b_hh = params
        return self.torch.tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)

    def jacrev(self):
        torch = self.torch
        params = tuple(p.detach() for p in self.params)
        h_prev, x = self.h, self.x[self.t]
        J_theta, J_s = torch.func.jacrev(self._cell, argnums=(0, 1))(params, h_prev, x)
        n = h_prev.shape[1]
        J_theta = torch.cat([J.reshape(n, -1) for J in J_theta], dim=1)
        self.M = J_s.reshape(n, n) @ self.M + J_theta
        with torch.no_grad():
            self.h = self._cell(params, h_prev, x)
        self._head_step(self.h, lambda dh: dh @ self.M)

    def closed_form(self):
        torch = self.torch
        with torch.no_grad():
            W_ih, W_hh, b_ih, b_hh = self.params
            h_prev, x = self.h, self.x[self.t]
            h = torch.tanh(x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh)
            D = (1.0 - h * h)[0]
            diag = D[:, None] * self.eye
            J_theta = torch.cat([(diag[:, :, None] * x[0]).reshape(len(D), -1),
                                 (diag[:, :, None] * h_prev[0]).reshape(len(D), -1), diag, diag], dim=1)
            self.M = D[:, None] * (W_hh @ self.M) + J_theta
            self.h = h
        self._head_step(h, lambda dh: dh @ self.M)

    def stepper(self, method):
        """A zero-argument step over the stream with ``method`` ('tbptt', 'jacrev', 'closed_form')."""
        do = getattr(self, method)
        self.t = -1

        def step():
            self.t = (self.t + 1) % len(self.x)
            do()
        return step


class _Jax:
    """The same online learners as one ``jax.jit`` step each on a carried state; ``stepper()`` as :class:`_Torch`.

    The flat weight vector w = [θ (cell.param_shapes order); β] and Adagrad's
    sum of squares are carried, as refnet's learners carry them.  TBPTT(1, k)
    keeps the last k inputs right-aligned in a (k, 1, I) buffer with a count
    and re-runs the valid ones from the anchor state; RTRL carries M (n, P)
    and forms J_s, J_θ with ``jax.jacfwd``.
    """

    def __init__(self, jax, kind, cell, head, theta, beta, x, y):
        self.jax, jnp = jax, jax.numpy
        shapes = {**cell.param_shapes(), **{f"head_{k}": v for k, v in head.param_shapes().items()}}
        sizes = [int(numpy.prod(v)) for v in shapes.values()]
        offsets = numpy.cumsum([0] + sizes)
        names = list(shapes)
        self.n_theta = int(sum(sizes[:len(cell.param_shapes())]))
        self.cell_names = list(cell.param_shapes())
        n = cell.hidden_size

        def unpack(w):
            return {k: w[offsets[i]:offsets[i + 1]].reshape(shapes[k]) for i, k in enumerate(names)}
        self.unpack = unpack

        def cell_step(p, h, x_t):
            return jnp.tanh(x_t @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])

        def loss_of(p, h, y_t):      # BCE on one logit, summed as refnet's batch mean at B = 1
            z = h @ p["head_weight"].T + p["head_bias"]
            return jnp.sum(jnp.maximum(z, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(z))) - y_t * z), z

        def adagrad(w, G, g):
            G = G + g * g
            return w - LR * g / (jnp.sqrt(G) + 1e-10), G

        def tbptt_step(carry, x_t, y_t):
            w, G, xs, count, anchor, second = carry
            anchor = jnp.where(count == K_TBPTT, second, anchor)
            xs = jnp.concatenate([xs[1:], x_t[None]], axis=0)
            count = jnp.minimum(count + 1, K_TBPTT)

            def objective(w):
                p = unpack(w)
                h, second = jax.lax.stop_gradient(anchor), anchor
                for j in range(K_TBPTT):
                    valid = j >= K_TBPTT - count
                    h_new = jnp.where(valid, cell_step(p, h, xs[j]), h)
                    second = jnp.where(j == K_TBPTT - count, h_new, second)
                    h = h_new
                L, z = loss_of(p, h, y_t)
                return L, (z, h, second)
            (L, (z, h, second)), g = jax.value_and_grad(objective, has_aux=True)(w)
            w, G = adagrad(w, G, g)
            return (w, G, xs, count, anchor, jax.lax.stop_gradient(second)), z, L

        def rtrl_step(carry, x_t, y_t):
            w, G, h, M = carry
            p = unpack(w)
            theta_flat = w[:self.n_theta]

            def f(h_prev, th):
                return cell_step({**p, **unpack(jnp.concatenate([th, w[self.n_theta:]]))}, h_prev, x_t)[0]
            h_new = f(h, theta_flat)[None]
            J_s, J_theta = jax.jacfwd(f, argnums=(0, 1))(h, theta_flat)
            M = J_s.reshape(n, n) @ M + J_theta
            (L, z), (dh, dw_head) = jax.value_and_grad(lambda hh, ww: loss_of(unpack(ww), hh, y_t), argnums=(0, 1),
                                                       has_aux=True)(h_new, w)
            g = dw_head.at[:self.n_theta].set(dh[0] @ M)
            w, G = adagrad(w, G, g)
            return (w, G, h_new, M), z, L

        w = numpy.concatenate([numpy.ravel(theta[k]) for k in cell.param_shapes()]
                              + [numpy.ravel(beta[k]) for k in head.param_shapes()])
        if kind == "tbptt":
            self.carry = (w, numpy.zeros_like(w), numpy.zeros((K_TBPTT, 1, cell.input_size)), numpy.int64(0),
                          numpy.zeros((1, n)), numpy.zeros((1, n)))
            self.step_fn = jax.jit(tbptt_step)
        else:
            self.carry = (w, numpy.zeros_like(w), numpy.zeros((1, n)), numpy.zeros((n, self.n_theta)))
            self.step_fn = jax.jit(rtrl_step)
        self.carry = jax.device_put(self.carry)
        self.x, self.y = jax.device_put(x), jax.device_put(y)

    def weights(self):
        p = self.unpack(numpy.asarray(self.carry[0]))
        return {k: numpy.asarray(p[k]) for k in self.cell_names}

    def stepper(self, method=None):
        """A zero-argument step over the stream (compiled by its first call here)."""
        t = [-1]

        def step():
            t[0] = (t[0] + 1) % len(self.x)
            self.carry, z, L = self.step_fn(self.carry, self.x[t[0]], self.y[t[0]])
            return z
        self.jax.block_until_ready(self.step_fn(self.carry, self.x[0], self.y[0]))   # compile, result dropped
        return step


def _refnet_stepper(learner, x, y):
    t = [-1]

    def step():
        t[0] = (t[0] + 1) % len(x)
        learner.step(x[t[0]], y[t[0]])
    return step


def _agreement(torch, kind, method, n, jax=None):
    """Weights of refnet's and PyTorch's (or, with ``jax``, JAX's) learner after AGREEMENT_STEPS steps.

    Returns ``(error, name)``; raises BenchmarkError beyond :data:`AGREEMENT_RTOL`.
    """
    cell, head, theta, beta, x, y = _problem(n, AGREEMENT_STEPS)
    ours = _refnet_learner(kind, cell, head, theta, beta)
    theirs = (_Torch(torch, kind, cell, head, theta, beta, x, y) if jax is None
              else _Jax(jax, kind, cell, head, theta, beta, x, y))
    step_ours, step_theirs = _refnet_stepper(ours, x, y), theirs.stepper(method)
    for _ in range(AGREEMENT_STEPS):
        step_ours()
        step_theirs()
    reference = theirs.weights()
    worst = (0.0, None)
    for name, b in reference.items():
        error = float(numpy.abs(ours.theta[name] - b).max()) / max(float(numpy.abs(b).max()), 1e-300)
        worst = max(worst, (error, name), key=lambda pair: pair[0])
    if worst[0] > AGREEMENT_RTOL:
        raise BenchmarkError(f"refnet and torch ({method}, n = {n}) disagree on {worst[1]} after "
                             f"{AGREEMENT_STEPS} online steps: normwise relative error {worst[0]:.2e} > "
                             f"{AGREEMENT_RTOL:.0e}; a benchmark of a wrong computation is worthless")
    return worst


@contextlib.contextmanager
def _numba(flag):
    """REFNET_NUMBA=flag while the block runs."""
    previous = os.environ.get("REFNET_NUMBA")
    os.environ["REFNET_NUMBA"] = flag
    try:
        yield
    finally:
        if previous is None:
            del os.environ["REFNET_NUMBA"]
        else:
            os.environ["REFNET_NUMBA"] = previous


def _one_thread(torch):
    """NumPy's BLAS (threadpoolctl, where importable) and PyTorch on one thread."""
    stack = contextlib.ExitStack()
    try:
        from threadpoolctl import threadpool_limits
        stack.enter_context(threadpool_limits(1, user_api="blas"))
    except ImportError:
        pass
    if torch is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        stack.callback(torch.set_num_threads, previous)
    return stack


_COLD = """
import time
start = time.perf_counter()
import numpy
from refnet.bench.online import _problem, _refnet_learner
for kind in ("tbptt", "rtrl"):
    cell, head, theta, beta, x, y = _problem(4, 2)
    _refnet_learner(kind, cell, head, theta, beta).step(x[0], y[0])
print(time.perf_counter() - start)
"""


def _cold_compile_seconds():
    """The first TBPTT and RTRL steps in a fresh process whose numba cache starts empty (compilation), and
    again in a second fresh process on the cache the first wrote (imports and cache loads only)."""
    with tempfile.TemporaryDirectory() as cache:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, REFNET_NUMBA="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        seconds = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", _COLD], env=env, capture_output=True, text=True,
                                  timeout=300)
            if done.returncode != 0:
                raise BenchmarkError(f"the cold-compile probe failed: {done.stderr.strip()[-500:]}")
            seconds.append(float(done.stdout.strip().splitlines()[-1]))
    return seconds


def _measure(torch, name, kind, n, size, repeats, jax=None):
    """Timings (per step) of every implementation of one case, agreement, first-step time."""
    per_call = STEPS_PER_CALL[size]
    cell, head, theta, beta, x, y = _problem(n, 600)
    runs, first_step = {}, None
    for flag, impl in (("1", "refnet_numba"), ("0", "refnet_plain")):
        with _numba(flag):
            learner = _refnet_learner(kind, cell, head, theta, beta)
            stepper = _refnet_stepper(learner, x, y)
            if flag == "1":
                start = time.perf_counter()
                stepper()
                first_step = time.perf_counter() - start
            runs[impl] = _steps(stepper, per_call, flag)
    agreement = {}
    if torch is not None:
        methods = ("tbptt",) if kind == "tbptt" else ("jacrev", "closed_form")
        for method in methods:
            agreement[method] = _agreement(torch, kind, method, n)
            runs[f"torch_{'eager' if method == 'tbptt' else method}"] = _steps(
                _Torch(torch, kind, cell, head, theta, beta, x, y).stepper(method), per_call, None)
    if jax is not None:
        agreement["jax_jit"] = _agreement(torch, kind, "jax_jit", n, jax=jax)
        runs["jax_jit"] = _steps(_Jax(jax, kind, cell, head, theta, beta, x, y).stepper(), per_call, None)
    timings = time_each(runs, repeats=repeats, max_seconds=BUDGET_S)
    return {impl: (t, per_call) for impl, t in timings.items()}, agreement, first_step


def _steps(stepper, count, numba_flag):
    """A zero-argument call making ``count`` steps (under REFNET_NUMBA=numba_flag if given)."""
    def call():
        if numba_flag is None:
            for _ in range(count):
                stepper()
        else:
            with _numba(numba_flag):
                for _ in range(count):
                    stepper()
    return call


def _load_1min():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _fmt_load(value):
    return "unknown" if value is None else f"{value:.2f}"


def _approx_rows(env, approx):
    rows = []
    for n, (timings, memory, cosines) in approx.items():
        P = n * (1 + n + 2)           # the leaky cell with 1 input: W_ih, W_hh, b_ih, b_hh
        for (method, flag), (timing, per_call) in timings.items():
            carried, peak = memory.get(method, (None, None)) if flag == "1" else (None, None)
            rows.append({**env, "row": "approx_timing", "method": method, "n": n, "P": P,
                         "numba": flag == "1", "median_s": timing.median / per_call, "min_s": timing.min / per_call,
                         "max_s": timing.max / per_call, "repeats": timing.repeats, "steps_per_call": per_call,
                         "carried_bytes": carried, "step_peak_bytes": peak, "alpha": APPROX_ALPHA})
        for method, cosine in cosines.items():
            rows.append({**env, "row": "approx_cosine", "method": method, "n": n, "P": P, "cosine_to_rtrl": cosine,
                         "steps": COSINE_STEPS[env["size"]]})
    return rows


def _rows(env, measured):
    rows = []
    for (name, kind, n), (timings, agreement, first_step) in measured.items():
        base = timings["refnet_numba"][0].median / timings["refnet_numba"][1]
        for impl, (timing, per_call) in timings.items():
            rows.append({**env, "row": "timing", "name": name, "n": n, "impl": impl,
                         "median_s": timing.median / per_call, "min_s": timing.min / per_call,
                         "max_s": timing.max / per_call, "repeats": timing.repeats, "steps_per_call": per_call})
        for impl, (timing, per_call) in timings.items():
            if impl.startswith(("torch", "jax")):
                ratio = (timing.median / per_call) / base
                target = TARGETS.get((name, n, impl))
                rows.append({**env, "row": "ratio", "name": name, "n": n, "peer": impl,
                             "peer_over_refnet_numba": ratio, "target": target,
                             "met": None if target is None else bool(ratio >= target)})
        rows.append({**env, "row": "first_step", "name": name, "n": n, "first_step_s": first_step})
        for method, (error, worst) in agreement.items():
            rows.append({**env, "row": "agreement", "name": name, "n": n, "peer": method,
                         "weights_max_rel_err": error, "worst": worst, "rtol": AGREEMENT_RTOL,
                         "steps": AGREEMENT_STEPS})
    return rows


def _table(rows, env, torch_missing):
    peer = (f"torch {env['torch_version']} (1 thread)" if env["torch_version"]
            else f"torch not importable ({torch_missing}): peers skipped")
    head = "\n".join([
        "online: seconds per online step at batch 1 (observe, predict, loss, gradient, Adagrad step), "
        "Elman tanh on 6-CycleWorld, float64",
        f"numpy {env['numpy_version']} (BLAS {env['numpy_blas']}, held to 1 thread); {peer}; "
        f"{env['cpu_count']} CPUs; 1-min load {_fmt_load(env['load_1min_start'])} at start, "
        f"{_fmt_load(env['load_1min_end'])} at end",
        ("numba kernels: cold compile not measured (--quick)" if env["cold_compile_s"] is None else
         f"numba kernels: first steps {env['cold_compile_s']:.2f} s in a fresh process with an empty cache, "
         f"{env['warm_cache_first_step_s']:.2f} s with the cache warm (python -m refnet.kernels)")
        + "; first step in this process below",
    ])
    timing = format_table(
        ("case", "n", "impl", "median us/step", "min", "max", "calls"),
        [(r["name"], str(r["n"]), r["impl"], f"{1e6 * r['median_s']:.1f}", f"{1e6 * r['min_s']:.1f}",
          f"{1e6 * r['max_s']:.1f}", str(r["repeats"])) for r in rows if r["row"] == "timing"], text_columns=3)
    ratio = format_table(
        ("case", "n", "peer / refnet (numba)", "ratio", "target", "met"),
        [(r["name"], str(r["n"]), r["peer"], f"{r['peer_over_refnet_numba']:.1f}x",
          "-" if r["target"] is None else f">= {r['target']:g}x",
          "-" if r["met"] is None else ("yes" if r["met"] else "NO")) for r in rows if r["row"] == "ratio"],
        text_columns=3)
    first = format_table(
        ("case", "n", "first refnet step (s)"),
        [(r["name"], str(r["n"]), f"{r['first_step_s']:.4f}") for r in rows if r["row"] == "first_step"],
        text_columns=2)
    agree = format_table(
        ("case", "n", "peer", "weights max rel err", "worst", "tolerance"),
        [(r["name"], str(r["n"]), r["peer"], f"{r['weights_max_rel_err']:.1e}", r["worst"], f"{r['rtol']:.0e}")
         for r in rows if r["row"] == "agreement"], text_columns=3)
    approx_timing = format_table(
        ("method", "n", "P", "numba", "median us/step", "min", "max", "calls", "carried kB", "step peak kB"),
        [(r["method"], str(r["n"]), str(r["P"]), "on" if r["numba"] else "off", f"{1e6 * r['median_s']:.1f}",
          f"{1e6 * r['min_s']:.1f}", f"{1e6 * r['max_s']:.1f}", str(r["repeats"]),
          "-" if r["carried_bytes"] is None else f"{r['carried_bytes'] / 1024:.1f}",
          "-" if r["step_peak_bytes"] is None else f"{r['step_peak_bytes'] / 1024:.1f}")
         for r in rows if r["row"] == "approx_timing"], text_columns=4)
    cosine = format_table(
        ("method", "n", "cosine to exact gradient", "steps"),
        [(r["method"], str(r["n"]), f"{r['cosine_to_rtrl']:.4f}", str(r["steps"]))
         for r in rows if r["row"] == "approx_cosine"], text_columns=2)
    approx_head = (f"RTRL's approximations: leaky tanh cell (alpha = {APPROX_ALPHA}), same task and optimiser, "
                   "refnet at batch 1; carried = sensitivity/trace kept between steps, step peak = tracemalloc "
                   "peak of one step; cosine with theta fixed over the stated steps (uoro: one estimate; "
                   "rflo_random_B: feedback B ~ N(0, 1/n))")
    return "\n\n".join(part for part in (head, timing, ratio, first, agree if torch_missing is None else "",
                                          approx_head, approx_timing, cosine) if part)


def run(*, repeats=None, quick=False):
    """Run the ``online`` case.

    Parameters
    ----------
    repeats : int >= 1 or None
        Timed calls per implementation (each of ``STEPS_PER_CALL`` steps); None
        for the default (15, or 3 with ``quick``); fewer if :data:`BUDGET_S` runs out.
    quick : bool
        20 steps per timed call instead of 200 and no cold-compile probe, for tests.

    Returns
    -------
    Report
        Rows ``row`` = "timing" (seconds per step: median, min, max), "ratio"
        (PyTorch over refnet with numba, with the issue's target where it has
        one), "first_step" and "agreement"; "approx_timing" (RTRL, UORO, SnAp-1/2,
        RFLO: seconds per step, carried and step-peak bytes) and "approx_cosine"
        (each gradient's cosine to RTRL's); each with the environment,
        including ``cold_compile_s`` (None with ``quick``).

    Raises
    ------
    TypeError
        If ``repeats`` is not an int (or None).
    ValueError
        If ``repeats`` < 1.
    BenchmarkError
        If a PyTorch learner's weights and refnet's disagree beyond :data:`AGREEMENT_RTOL`.
    """
    size = "quick" if quick else "full"
    repeats = DEFAULT_REPEATS[size] if repeats is None else check_int("repeats", repeats, 1)
    try:
        import torch
        torch_missing = None
    except Exception as exc:  # ImportError, or a broken install failing at import
        torch, torch_missing = None, f"{type(exc).__name__}: {exc}"
    blas, _ = numpy_blas()
    jax, jax_missing = import_jax(True)
    env = {"case": "online", "numpy_version": numpy.__version__,
           "torch_version": None if torch is None else torch.__version__, "numpy_blas": blas,
           "jax_version": None if jax is None else jax.__version__, "jax_missing": jax_missing,
           "cpu_count": os.cpu_count(), "load_1min_start": _load_1min()}
    with _one_thread(torch):
        measured = {case: _measure(torch, *case, size, repeats, jax=jax) for case in CASES}
        approx = {n: _measure_approx(n, size, repeats) for n in APPROX_SIZES[size]}
    env["cold_compile_s"], env["warm_cache_first_step_s"] = (None, None) if quick else _cold_compile_seconds()
    env["load_1min_end"] = _load_1min()
    rows = _rows(env, measured) + _approx_rows({**env, "size": size}, approx)
    return Report(tuple(rows), _table(rows, env, torch_missing))
