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
start, and for one hyper-gradient the time (median of repeats) and peak
memory (``tracemalloc``, NumPy's allocations) ratios BPTT ÷ Neumann-RBP.

    python examples/hyperopt_rbp.py
    python examples/hyperopt_rbp.py --quick --json
"""
import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import matplotlib
import numpy as np
from tqdm import tqdm

import refnet
from refnet.algorithms.rbp import neumann_rbp
from refnet.bench.timing import peak_bytes
from refnet.cells.base import Cell
from refnet.optim import Adam

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

# Liao et al., slides: BPTT ÷ Neumann-RBP at truncation 10 / 50 / 100.
PAPER = {"time": {10: 3.02, 50: 2.87, 100: 2.68}, "memory": {10: 4.35, 50: 4.25, 100: 4.11}}
FULL = {"steps": 100, "K": 50, "hidden": 32, "batch": 100, "meta_steps": 30, "repeats": 5}
QUICK = {"steps": 6, "K": 3, "hidden": 8, "batch": 20, "meta_steps": 2, "repeats": 1}
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


def plot(curves, args, path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for method, (losses, thetas) in curves.items():
        a.plot(range(len(losses)), losses, label=method)
        for layer in (0, 1):
            b.plot(range(len(thetas)), np.exp(thetas[:, layer]), label=f"{method}, layer {layer + 1}",
                   linestyle="-" if layer == 0 else "--")
    a.set(xlabel="meta step", ylabel="validation cross-entropy at w_T", title="meta-loss")
    b.set(xlabel="meta step", ylabel="learning rate exp(θ_l)", yscale="log", title="learned learning rates")
    a.legend()
    b.legend(fontsize=8)
    fig.suptitle(f"{args.steps} steps of SGD-momentum on digits; Neumann-RBP K = {args.K} vs BPTT", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: 6 steps, K = 3, 2 meta steps")
    parser.add_argument("--json", action="store_true", help="one JSON line per result")
    for key, value in FULL.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, help=f"default {value}")
    parser.add_argument("--png", default="hyperopt_rbp.png", help="figure: meta-loss and learning rates")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    task = make_task(args.steps, args.hidden, args.batch)
    theta0 = {"log_lr": np.full(2, THETA0)}
    _, g_bptt = bptt_hypergradient(task, theta0, args.steps)
    _, g_neumann = neumann_hypergradient(task, theta0, args.steps, args.K)
    cosine = float(g_bptt @ g_neumann / (np.linalg.norm(g_bptt) * np.linalg.norm(g_neumann)))
    costs = {}
    for method, fn in (("BPTT", lambda: bptt_hypergradient(task, theta0, args.steps)),
                       ("Neumann-RBP", lambda: neumann_hypergradient(task, theta0, args.steps, args.K))):
        costs[method] = {"seconds": _median_seconds(fn, args.repeats), "peak_bytes": peak_bytes(fn)}
    curves = {}
    with tqdm(total=2 * args.meta_steps, file=sys.stderr, unit="meta step") as bar:
        for method in ("BPTT", "Neumann-RBP"):
            bar.set_description(method)
            curves[method] = meta_train(task, method, args, bar)
    plot(curves, args, args.png)
    time_ratio = costs["BPTT"]["seconds"] / costs["Neumann-RBP"]["seconds"]
    memory_ratio = costs["BPTT"]["peak_bytes"] / costs["Neumann-RBP"]["peak_bytes"]
    config = {k: getattr(args, k) for k in FULL}
    results = [{"result": "hypergradient at theta0", "bptt": g_bptt.tolist(), "neumann_rbp": g_neumann.tolist(),
                "cosine": cosine, "config": config}]
    results += [{"result": "meta-training", "method": m, "initial_meta_loss": losses[0],
                 "final_meta_loss": losses[-1], "meta_losses": losses,
                 "final_learning_rates": np.exp(thetas[-1]).tolist(), "config": config}
                for m, (losses, thetas) in curves.items()]
    results.append({"result": "cost of one hypergradient", "bptt_seconds": costs["BPTT"]["seconds"],
                    "neumann_seconds": costs["Neumann-RBP"]["seconds"],
                    "bptt_peak_bytes": costs["BPTT"]["peak_bytes"],
                    "neumann_peak_bytes": costs["Neumann-RBP"]["peak_bytes"],
                    "time_ratio": time_ratio, "memory_ratio": memory_ratio,
                    "paper_time_ratio": PAPER["time"].get(args.K), "paper_memory_ratio": PAPER["memory"].get(args.K),
                    "config": config})
    if args.json:
        for row in results:
            print(json.dumps(row))
        return 0
    print(f"hyper-parameter optimisation: {args.steps} steps of SGD-momentum (β = {BETA}) on a 64–{args.hidden}–10 "
          f"MLP, batch {args.batch}; per-layer log learning rates from θ = {THETA0}; Adam {META_LR} for "
          f"{args.meta_steps} meta steps")
    print(f"hypergradient at θ0: BPTT {np.round(g_bptt, 6).tolist()}  Neumann-RBP(K={args.K}) "
          f"{np.round(g_neumann, 6).tolist()}  cosine {cosine:.4f}")
    print(f"{'method':<14}{'meta-loss start':>16}{'meta-loss end':>15}{'learning rates end':>24}")
    for method, (losses, thetas) in curves.items():
        rates = ", ".join(f"{r:.3f}" for r in np.exp(thetas[-1]))
        print(f"{method:<14}{losses[0]:>16.4f}{losses[-1]:>15.4f}{rates:>24}")
    paper_t, paper_m = PAPER["time"].get(args.K), PAPER["memory"].get(args.K)
    print(f"one hypergradient: BPTT {1e3 * costs['BPTT']['seconds']:.1f} ms, "
          f"{costs['BPTT']['peak_bytes'] / 1e6:.2f} MB; Neumann-RBP {1e3 * costs['Neumann-RBP']['seconds']:.1f} ms, "
          f"{costs['Neumann-RBP']['peak_bytes'] / 1e6:.2f} MB (median of {args.repeats}; peak by tracemalloc)")
    print(f"BPTT ÷ Neumann-RBP: time ×{time_ratio:.2f} (paper ×{paper_t if paper_t else '-'}), "
          f"memory ×{memory_ratio:.2f} (paper ×{paper_m if paper_m else '-'})")
    print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
