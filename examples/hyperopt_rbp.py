"""Hyper-parameter optimisation through training: log learning rates by Neumann-RBP(50) vs BPTT (Liao et al. 2018).

Liao et al.'s third experiment treats the training run itself as the
recurrent dynamics: the state is s_t = [w_t, v_t] (weights and momentum of a
classifier), one step of SGD with momentum is the transition, and the
hyper-parameters θ are its "weights".  The meta-loss L(w_T) is differentiated
with respect to θ either by BPTT through all T = 100 steps or by Neumann-RBP
with truncation K = 50 at the last step (their slides: BPTT ÷ Neumann-RBP
run time ×2.87, memory ×4.25 at truncation 50).

Here, small: a 64–32–10 tanh MLP on scikit-learn's 8×8 digits (1200
training, 597 validation images), mini-batches of 100, and SGD with momentum
in Maclaurin et al.'s form (Liao et al.'s code):

    v_t = β v_{t−1} − (1 − β) ∇ℓ_t(w_{t−1}),     w_t = w_{t−1} + α_l v_t,     α_l = exp(θ_l)

with β = 0.9 and one log learning rate θ_l per layer.  :class:`TrainingStep`
is that transition written as a refnet cell (state (1, 2P), params
``{"log_lr": (2,)}``, the mini-batch schedule indexed by the step t), with a
hand-written VJP and JVP: the only second-order piece is the Hessian-vector
product of the mini-batch loss, by Pearlmutter's R-operator (1994) on the
MLP's forward and backward pass.

- BPTT: ``refnet.forward`` keeps all 100 states and caches, then the cotangent
  is pulled back through every ``step_vjp`` (min-char-rnn's backward loop);
- Neumann-RBP(50): 100 steps keeping only the last two states, then
  ``refnet.algorithms.rbp.neumann_rbp`` linearised at the last transition
  s_{T−1} → s_T (as Liao et al.'s code: J = ∂s_T/∂s_{T−1}).  Training has not
  converged, so this is Neumann-RBP's approximation, not an exact gradient.

The meta-loss is the validation cross-entropy at w_T; the meta-optimiser is
Adam (lr 0.05) on θ from θ = (−3, −3) (α ≈ 0.05).  Reported: the meta-loss
reached by each method, its hyper-gradient's agreement with BPTT's at the
start, and the cost of one hyper-gradient against the truncation K
(``--cost-K``, default 10, 50, 100 as Liao et al.'s table): the time (median
of repeats) and peak memory (``tracemalloc``, NumPy's allocations) of
TBPTT(K) — back-propagation through the last K training steps, w_{T−K} held
fixed, K caches kept — and of Neumann-RBP(K), which keeps two states
whatever K is, and of full BPTT through all T steps.  The ratio beside the
paper's is TBPTT(K) ÷ Neumann-RBP(K) (both truncated at K; the reading under
which the paper's ratios depend on K); BPTT ÷ Neumann-RBP(K) is printed too.

Results are written first (``--out``, JSON lines, replaced atomically), then
printed, then drawn (``--png``: meta-loss, learned rates, time and memory
against K); BLAS is held to one thread so a rerun prints the same numbers.

    python examples/hyperopt_rbp.py
    python examples/hyperopt_rbp.py --quick --json
"""
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

import refnet
from refnet.algorithms.rbp import neumann_rbp
from refnet.bench.timing import peak_bytes
from refnet.cells.base import Cell
from refnet.optim import Adam

sys.path.insert(0, str(Path(__file__).resolve().parent))   # examples/_cli.py, however this file is started
import _cli  # noqa: E402

# Liao et al., slides: BPTT ÷ Neumann-RBP at truncation 10 / 50 / 100.
PAPER = {"time": {10: 3.02, 50: 2.87, 100: 2.68}, "memory": {10: 4.35, 50: 4.25, 100: 4.11}}
FULL = {"steps": 100, "K": 50, "hidden": 32, "batch": 100, "meta_steps": 30, "repeats": 5, "cost_K": [10, 50, 100]}
QUICK = {"steps": 6, "K": 3, "hidden": 8, "batch": 20, "meta_steps": 2, "repeats": 1, "cost_K": [2, 3, 6]}
BETA = 0.9
META_LR = 0.05
THETA0 = -3.0


class MLP(NamedTuple):
    """Sizes of the classifier 64 → hidden (tanh) → 10 (softmax); w packs W1, b1, W2, b2."""

    n_in: int
    hidden: int
    n_out: int

    def shapes(self):
        return [(self.hidden, self.n_in), (self.hidden,), (self.n_out, self.hidden), (self.n_out,)]

    @property
    def size(self):
        return sum(int(np.prod(s)) for s in self.shapes())

    def unpack(self, w):
        out, start = [], 0
        for shape in self.shapes():
            n = int(np.prod(shape))
            out.append(w[start:start + n].reshape(shape))
            start += n
        return out

    def layer_of_each_weight(self):
        """0 for W1, b1 (layer 1), 1 for W2, b2 (layer 2): which learning rate each weight takes."""
        W1, b1, W2, b2 = (int(np.prod(s)) for s in self.shapes())
        return np.repeat([0, 1], [W1 + b1, W2 + b2])


class GradCache(NamedTuple):
    X: object    # (m, n_in) the mini-batch
    h: object    # (m, hidden) tanh activations
    p: object    # (m, n_out) softmax
    dz: object   # (m, n_out) ∂ℓ/∂logits
    dh: object   # (m, hidden) ∂ℓ/∂h


def loss_and_grad(mlp, w, X, Y):
    """Mean cross-entropy ℓ(w) on (X, Y one-hot) and ∇ℓ (P,), with what the Hessian product needs."""
    W1, b1, W2, b2 = mlp.unpack(w)
    h = np.tanh(X @ W1.T + b1)
    z = h @ W2.T + b2
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-(Y * np.log(p)).sum() / len(X))
    dz = (p - Y) / len(X)
    dh = dz @ W2
    da = dh * (1.0 - h * h)
    grad = np.concatenate([(da.T @ X).ravel(), da.sum(0), (dz.T @ h).ravel(), dz.sum(0)])
    return loss, grad, GradCache(X, h, p, dz, dh)


def hessian_vector(mlp, w, cache, u):
    """H u, H = ∇²ℓ(w): the R-operator (Pearlmutter 1994) of :func:`loss_and_grad` along u."""
    W1, b1, W2, b2 = mlp.unpack(w)
    U1, c1, U2, c2 = mlp.unpack(u)
    X, h, p, dz, dh = cache
    Rh = (1.0 - h * h) * (X @ U1.T + c1)                         # R{a} through tanh
    Rz = Rh @ W2.T + h @ U2.T + c2
    Rdz = p * (Rz - (p * Rz).sum(axis=1, keepdims=True)) / len(X)  # R{softmax}, scaled as dz
    Rdh = Rdz @ W2 + dz @ U2
    Rda = Rdh * (1.0 - h * h) - 2.0 * h * Rh * dh                # R{dh ⊙ (1 − h²)}
    return np.concatenate([(Rda.T @ X).ravel(), Rda.sum(0), (Rdz.T @ h + dz.T @ Rh).ravel(), Rdz.sum(0)])


class StepCache(NamedTuple):
    x: object        # (1, 1) the unused input
    w_prev: object   # (P,) weights before the step
    v: object        # (P,) momentum after the step
    grad: GradCache  # the mini-batch's forward and backward, for H u


@dataclass(frozen=True, eq=False)
class TrainingStep(Cell):
    """One SGD-with-momentum step on an MLP as a cell: s = [w, v] (1, 2P), θ = {"log_lr": (2,)}.

    ``batches[t]`` are the example indices of step t (0-based, as refnet passes
    t to ``step``); x is an unused (1, 1) input (the data live in the cell).
    """

    mlp: MLP
    X: np.ndarray = field(repr=False)
    Y: np.ndarray = field(repr=False)
    batches: np.ndarray = field(repr=False)
    beta: float = BETA
    input_size: int = 1
    hidden_size: int = 0

    def __post_init__(self):
        object.__setattr__(self, "hidden_size", 2 * self.mlp.size)
        super().__post_init__()

    def param_shapes(self):
        return {"log_lr": (2,)}

    def split(self, s):
        P = self.mlp.size
        return s[0, :P], s[0, P:]

    def alpha(self, params):
        """exp(θ_l) for the layer of every weight, (P,)."""
        return np.exp(params["log_lr"])[self.mlp.layer_of_each_weight()]

    def step(self, params, s_prev, x, t=None):
        """v_t = β v − (1 − β) ∇ℓ_t(w);  w_t = w + α v_t."""
        w, v = self.split(s_prev)
        idx = self.batches[t]
        _, grad, cache = loss_and_grad(self.mlp, w, self.X[idx], self.Y[idx])
        v_new = self.beta * v - (1.0 - self.beta) * grad
        w_new = w + self.alpha(params) * v_new
        return np.concatenate([w_new, v_new])[None], StepCache(x, w, v_new, cache)

    def step_vjp(self, params, cache, ds):
        """Back through w_t = w + α v_t, then v_t = β v − (1 − β) ∇ℓ(w): the Hessian term."""
        dw_new, dv_new = self.split(ds)
        alpha = self.alpha(params)
        dv = dv_new + alpha * dw_new                                  # cotangent of v_t
        dw = dw_new - (1.0 - self.beta) * hessian_vector(self.mlp, cache.w_prev, cache.grad, dv)
        dlog_lr = np.bincount(self.mlp.layer_of_each_weight(), weights=dw_new * alpha * cache.v, minlength=2)
        return np.concatenate([dw, self.beta * dv])[None], {"log_lr": dlog_lr}, np.zeros_like(cache.x)

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """dv_t = β dv − (1 − β) H dw;  dw_t = dw + α dv_t + α ⊙ dθ_layer ⊙ v_t."""
        P = self.mlp.size
        dw, dv = (np.zeros(P), np.zeros(P)) if ds_prev is None else self.split(ds_prev)
        alpha = self.alpha(params)
        dv_new = self.beta * dv - (1.0 - self.beta) * hessian_vector(self.mlp, cache.w_prev, cache.grad, dw)
        dw_new = dw + alpha * dv_new
        if dparams is not None:
            dw_new = dw_new + alpha * dparams["log_lr"][self.mlp.layer_of_each_weight()] * cache.v
        return np.concatenate([dw_new, dv_new])[None]


@dataclass(frozen=True)
class Task:
    cell: TrainingStep
    s0: np.ndarray       # (1, 2P): w_0 ~ e^{−3} N(0, 1) (Liao et al.), v_0 = 0
    X_val: np.ndarray
    Y_val: np.ndarray


def make_task(steps, hidden, batch, seed=0):
    """Digits split 1200 / 597, a fixed mini-batch schedule of ``steps`` batches, the initial state."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    generator = np.random.default_rng(seed)
    order = generator.permutation(len(digits.target))
    X, Y = digits.data[order] / 16.0, np.eye(10)[digits.target[order]]
    mlp = MLP(64, hidden, 10)
    n_train = 1200
    batches = np.stack([generator.permutation(n_train)[:batch] for _ in range(steps)])
    cell = TrainingStep(mlp, X[:n_train], Y[:n_train], batches)
    w0 = np.exp(-3.0) * generator.standard_normal(mlp.size)
    return Task(cell, np.concatenate([w0, np.zeros(mlp.size)])[None], X[n_train:], Y[n_train:])


def meta_loss(task, s_T):
    """Validation cross-entropy at w_T and its cotangent on s_T = [w_T, v_T]."""
    w, _ = task.cell.split(s_T)
    loss, grad, _ = loss_and_grad(task.cell.mlp, w, task.X_val, task.Y_val)
    return loss, np.concatenate([grad, np.zeros_like(grad)])[None]


def _inputs(steps):
    return np.zeros((steps, 1, 1))


def bptt_hypergradient(task, theta, steps):
    """BPTT through all ``steps``: keep every state and cache, pull the cotangent back through each."""
    trajectory = refnet.forward(task.cell, theta, _inputs(steps), task.s0)
    loss, ds = meta_loss(task, trajectory.s[-1])
    dtheta = np.zeros(2)
    for t in range(steps, 0, -1):
        ds, dparams, _ = task.cell.step_vjp(theta, trajectory.caches[t], ds)
        dtheta += dparams["log_lr"]
    return loss, dtheta


def tbptt_hypergradient(task, theta, steps, K):
    """TBPTT(K): back through the last K of the ``steps`` transitions, s_{T−K} held fixed; K caches kept."""
    s, x, caches = task.s0, np.zeros((1, 1)), []
    for t in range(steps):
        s, cache = task.cell.step(theta, s, x, t)
        if t >= steps - K:
            caches.append(cache)
    loss, ds = meta_loss(task, s)
    dtheta = np.zeros(2)
    for cache in reversed(caches):
        ds, dparams, _ = task.cell.step_vjp(theta, cache, ds)
        dtheta += dparams["log_lr"]
    return loss, dtheta


def neumann_hypergradient(task, theta, steps, K):
    """Neumann-RBP(K) at the last transition s_{T−1} → s_T; only two states are kept."""
    s_prev, s = None, task.s0
    x = np.zeros((1, 1))
    for t in range(steps):
        s_prev, s = s, task.cell.step(theta, s, x, t)[0]
    loss, ds = meta_loss(task, s)
    result = neumann_rbp(task.cell, theta, x, s_prev, ds, K=K, t=steps - 1, check_equilibrium=False)
    return loss, result.dtheta["log_lr"]


def _median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def meta_train(task, method, args, bar):
    """Adam on θ from THETA0 for ``meta_steps``; returns the meta-losses and the θ path."""
    theta = {"log_lr": np.full(2, THETA0)}
    opt = Adam(lr=META_LR)
    state = opt.init(theta)
    losses, path = [], [theta["log_lr"].copy()]
    for _ in range(args.meta_steps):
        if method == "BPTT":
            loss, g = bptt_hypergradient(task, theta, args.steps)
        else:
            loss, g = neumann_hypergradient(task, theta, args.steps, args.K)
        losses.append(loss)
        state = opt.update(theta, {"log_lr": g}, state)
        path.append(theta["log_lr"].copy())
        bar.update(1)
    final, _ = meta_loss(task, refnet.forward(task.cell, theta, _inputs(args.steps), task.s0).s[-1])
    losses.append(final)
    return losses, np.array(path)


def cost_against_K(task, theta, args):
    """Seconds (median of ``repeats``) and peak bytes of one hyper-gradient: BPTT, and TBPTT(K), Neumann-RBP(K) per K."""
    def cost(fn):
        return {"seconds": _median_seconds(fn, args.repeats), "peak_bytes": peak_bytes(fn)}
    rows = {"BPTT": cost(lambda: bptt_hypergradient(task, theta, args.steps))}
    for K in args.cost_K:
        rows[f"TBPTT({K})"] = cost(lambda: tbptt_hypergradient(task, theta, args.steps, K))
        rows[f"Neumann-RBP({K})"] = cost(lambda: neumann_hypergradient(task, theta, args.steps, K))
    return rows


def plot(curves, costs, args, path):
    """Meta-loss and learned rates per meta step; time and memory of one hyper-gradient against K."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((a, b), (c, d)) = plt.subplots(2, 2, figsize=(11, 8))
    for method, (losses, thetas) in curves.items():
        a.plot(range(len(losses)), losses, label=method)
        for layer in (0, 1):
            b.plot(range(len(thetas)), np.exp(thetas[:, layer]), label=f"{method}, layer {layer + 1}",
                   linestyle="-" if layer == 0 else "--")
    a.set(xlabel="meta step", ylabel="validation cross-entropy at w_T", title="meta-loss")
    b.set(xlabel="meta step", ylabel="learning rate exp(θ_l)", yscale="log", title="learned learning rates")
    a.legend()
    b.legend(fontsize=8)
    Ks = list(args.cost_K)
    for ax, key, scale, unit in ((c, "seconds", 1e3, "ms"), (d, "peak_bytes", 1e-6, "MB")):
        ax.plot(Ks, [scale * costs[f"TBPTT({K})"][key] for K in Ks], "o-", label="TBPTT(K)")
        ax.plot(Ks, [scale * costs[f"Neumann-RBP({K})"][key] for K in Ks], "s-", label="Neumann-RBP(K)")
        ax.axhline(scale * costs["BPTT"][key], color="grey", ls="--", label=f"BPTT, all {args.steps} steps")
        ax.set_xticks(Ks)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    ratios = lambda key: ", ".join(f"×{costs[f'TBPTT({K})'][key] / costs[f'Neumann-RBP({K})'][key]:.2f}"
                                   for K in Ks)  # noqa: E731
    c.set(xlabel="truncation K", ylabel="ms per hyper-gradient",
          title=f"time; TBPTT ÷ Neumann: {ratios('seconds')}")
    d.set(xlabel="truncation K", ylabel="peak MB (tracemalloc)",
          title=f"memory; TBPTT ÷ Neumann: {ratios('peak_bytes')}")
    c.title.set_fontsize(9)
    d.title.set_fontsize(9)
    fig.suptitle(f"{args.steps} steps of SGD-momentum on digits; meta-training with Neumann-RBP K = {args.K} "
                 f"vs BPTT (Liao et al. 2018, §4.3)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _parser():
    parser = _cli.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: 6 steps, K = 3, 2 meta steps")
    parser.add_argument("--json", action="store_true", help="one JSON line per result instead of the table")
    parser.add_argument("--steps", type=_cli.positive_int, help=f"training steps T (default {FULL['steps']})")
    parser.add_argument("--K", type=_cli.nonnegative_int, help=f"Neumann-RBP's K in meta-training (default {FULL['K']})")
    parser.add_argument("--hidden", type=_cli.positive_int, help=f"hidden units of the MLP (default {FULL['hidden']})")
    parser.add_argument("--batch", type=_cli.positive_int, help=f"mini-batch size (default {FULL['batch']}; <= 1200)")
    parser.add_argument("--meta-steps", type=_cli.positive_int, help=f"Adam steps on θ (default {FULL['meta_steps']})")
    parser.add_argument("--repeats", type=_cli.positive_int, help=f"timing repeats (default {FULL['repeats']})")
    parser.add_argument("--cost-K", type=_cli.positive_int, nargs="+",
                        help=f"truncations of the time and memory study (default {FULL['cost_K']}; each <= --steps)")
    parser.add_argument("--seed", type=_cli.seed, default=0, help="data split, batches and w_0 (default 0)")
    parser.add_argument("--out", default="hyperopt_rbp_results.jsonl", help="the results, JSON lines")
    parser.add_argument("--png", default="hyperopt_rbp.png", help="figure: meta-loss, rates, time and memory vs K")
    return parser


def parse_args(argv=None):
    """The command line with the defaults of --quick or the full run filled in; usage errors exit with status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.cost_K = _cli.check_grid(parser, "--cost-K", args.cost_K)
    if max(args.cost_K) > args.steps:
        parser.error(f"argument --cost-K: expected values <= --steps ({args.steps}), got {args.cost_K}")
    if args.K > args.steps:
        parser.error(f"argument --K: expected at most --steps ({args.steps}), got {args.K}")
    if args.batch > 1200:
        parser.error(f"argument --batch: expected at most the 1200 training images, got {args.batch}")
    return args


def main(argv=None):
    args = parse_args(argv)
    with _cli.pinned_blas():
        results, curves, costs = experiment(args)
    _cli.write_json_lines(args.out, results)
    if args.json:
        for row in results:
            print(json.dumps(row))
    else:
        print(table(results, curves, args))
        print(f"results: {args.out}")
    if not _cli.save_figure(plot, args.png, curves, costs, args):
        return 1
    if not args.json:
        print(f"figure: {args.png}")
    return 0


def experiment(args):
    """Hyper-gradients at θ0, their cost against K, and meta-training by each method: the result rows."""
    task = make_task(args.steps, args.hidden, args.batch, seed=args.seed)
    theta0 = {"log_lr": np.full(2, THETA0)}
    _, g_bptt = bptt_hypergradient(task, theta0, args.steps)
    _, g_neumann = neumann_hypergradient(task, theta0, args.steps, args.K)
    cosine = float(g_bptt @ g_neumann / (np.linalg.norm(g_bptt) * np.linalg.norm(g_neumann)))
    costs = cost_against_K(task, theta0, args)
    curves = {}
    with tqdm(total=2 * args.meta_steps, file=sys.stderr, unit="meta step") as bar:
        for method in ("BPTT", "Neumann-RBP"):
            bar.set_description(method)
            curves[method] = meta_train(task, method, args, bar)
    config = {k: getattr(args, k) for k in (*FULL, "seed")}
    results = [{"result": "hypergradient at theta0", "bptt": g_bptt.tolist(), "neumann_rbp": g_neumann.tolist(),
                "cosine": cosine, "config": config}]
    results += [{"result": "meta-training", "method": m, "initial_meta_loss": losses[0],
                 "final_meta_loss": losses[-1], "meta_losses": losses,
                 "final_learning_rates": np.exp(thetas[-1]).tolist(), "config": config}
                for m, (losses, thetas) in curves.items()]
    for K in args.cost_K:
        tb, nm, bp = costs[f"TBPTT({K})"], costs[f"Neumann-RBP({K})"], costs["BPTT"]
        results.append({"result": "cost of one hypergradient", "K": K,
                        "tbptt_seconds": tb["seconds"], "neumann_seconds": nm["seconds"],
                        "bptt_seconds": bp["seconds"], "tbptt_peak_bytes": tb["peak_bytes"],
                        "neumann_peak_bytes": nm["peak_bytes"], "bptt_peak_bytes": bp["peak_bytes"],
                        "time_ratio": tb["seconds"] / nm["seconds"],
                        "memory_ratio": tb["peak_bytes"] / nm["peak_bytes"],
                        "bptt_time_ratio": bp["seconds"] / nm["seconds"],
                        "bptt_memory_ratio": bp["peak_bytes"] / nm["peak_bytes"],
                        "paper_time_ratio": PAPER["time"].get(K), "paper_memory_ratio": PAPER["memory"].get(K),
                        "config": config})
    return results, curves, costs


def table(results, curves, args):
    """The meta-training table and the cost table beside Liao et al.'s ratios."""
    g = results[0]
    lines = [f"hyper-parameter optimisation: {args.steps} steps of SGD-momentum (β = {BETA}) on a 64–{args.hidden}–10 "
             f"MLP, batch {args.batch}; per-layer log learning rates from θ = {THETA0}; Adam {META_LR} for "
             f"{args.meta_steps} meta steps; seed {args.seed}; {_cli.blas_threads_note()}",
             f"hypergradient at θ0: BPTT {np.round(g['bptt'], 6).tolist()}  Neumann-RBP(K={args.K}) "
             f"{np.round(g['neumann_rbp'], 6).tolist()}  cosine {g['cosine']:.4f}",
             f"{'method':<14}{'meta-loss start':>16}{'meta-loss end':>15}{'learning rates end':>24}"]
    for method, (losses, thetas) in curves.items():
        rates = ", ".join(f"{r:.3f}" for r in np.exp(thetas[-1]))
        lines.append(f"{method:<14}{losses[0]:>16.4f}{losses[-1]:>15.4f}{rates:>24}")
    lines.append(f"one hypergradient (median of {args.repeats}; peak by tracemalloc); "
                 f"BPTT through all {args.steps} steps: {1e3 * results[-1]['bptt_seconds']:.1f} ms, "
                 f"{results[-1]['bptt_peak_bytes'] / 1e6:.2f} MB")
    lines.append(f"{'K':>5}{'TBPTT(K) ms':>13}{'MB':>7}{'Neumann(K) ms':>15}{'MB':>7}"
                 f"{'TBPTT ÷ Neumann time':>22}{'memory':>8}{'paper':>14}{'BPTT ÷ Neumann':>16}")
    for r in (r for r in results if r["result"] == "cost of one hypergradient"):
        paper = (f"×{r['paper_time_ratio']}/×{r['paper_memory_ratio']}" if r["paper_time_ratio"] else "-")
        lines.append(f"{r['K']:>5}{1e3 * r['tbptt_seconds']:>13.1f}{r['tbptt_peak_bytes'] / 1e6:>7.2f}"
                     f"{1e3 * r['neumann_seconds']:>15.1f}{r['neumann_peak_bytes'] / 1e6:>7.2f}"
                     f"{'×' + format(r['time_ratio'], '.2f'):>22}{'×' + format(r['memory_ratio'], '.2f'):>8}"
                     f"{paper:>14}{'×' + format(r['bptt_time_ratio'], '.2f') + '/×' + format(r['bptt_memory_ratio'], '.2f'):>16}")
    lines.append("paper: Liao et al. (2018), BPTT ÷ Neumann-RBP at truncation 10/50/100 (time/memory)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
