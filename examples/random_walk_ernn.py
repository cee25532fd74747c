"""2-D random walks (the ERNN paper, §1, Figs. 3–4): RNN, FastRNN, FastGRNN, ERNN (K = 1, 2), exact ERNN.

Each walk (Zhang et al. 2019, §1; :mod:`refnet.tasks.random_walks`)

    X_0 = 0,   X_t ~ N(X_{t−1}, σ_i I),   t = 1..T (100),   σ_0 = 0.1 (class 0),   σ_1 = 1 (class 1)

is read position by position by a network of 10 hidden units whose last
state is classified by a linear readout (softmax cross-entropy at the last
step, mean over the batch).  Gradients by BPTT (``refnet.bptt``), updates by
Adam (``refnet.optim.Adam``, learning rate 1e-2 as the paper's initial one,
batches of 128).  The models:

- RNN: ``refnet.ElmanRNN`` (tanh), the paper's Eq. 1;
- FastRNN, FastGRNN: :mod:`refnet.cells.fastrnn`, :mod:`refnet.cells.fastgrnn`
  (EdgeML's parametrisation and init);
- ERNN(K=1), ERNN(K=2): :class:`refnet.cells.ernn.ERNN`, ReLU, a per-step
  η of shape (T, K) initialised to 1e-2 (the paper's §4 settings);
- exact ERNN: :class:`refnet.cells.ernn_exact.ExactERNN`, tanh, every step's
  equilibrium h = tanh(U h + V h_{t−1} + W x + b) solved to 1e-10 and
  differentiated implicitly.  Its solver here
  (:func:`refnet.cells.ernn_exact.fixed_point_then_hybr`) is the plain
  fixed-point iteration on the batch, much faster than the per-example Newton
  default, and that Newton method (``hybr``) for the examples the iteration
  has not solved in 300 iterations (training can bring the map's contraction
  factor near 1).  A step where both fail raises ``refnet.ConvergenceError``;
  the run stops there and its row says so.

The paper's σ reads two ways (``--readings``): as a variance (step standard
deviations √0.1 and 1) or as a standard deviation (0.1 and 1).  Beside the
networks the table prints the trivial baseline that thresholds each walk's
mean squared step (fitted on the training split).

The figure (``--png``) shows the claim first: the test accuracy of every
model, per seed and reading, beside the paper's 86.6% (RNN) and 99.7% (ERNN)
and the threshold baseline; then, as the paper's Figs. 3(a) and 4, the
distance of the parameters (cell and readout) after each epoch from those
after the last epoch (the paper's stability measure) and the mean training
loss per epoch, averaged over seeds, one column per reading.  The runs are
written first (``--out``, JSON lines, replaced atomically), then the table,
then the figure; BLAS is held to one thread so a rerun prints the same numbers.

    python examples/random_walk_ernn.py            # the sized run (see FULL), ≈ 15 min on 2 cores
    python examples/random_walk_ernn.py --quick --json
    python examples/random_walk_ernn.py --n-per-class 10000 --epochs 30   # the paper's data size
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import refnet
from refnet.cells.ernn import ERNN
from refnet.cells.ernn_exact import ExactERNN, fixed_point_then_hybr
from refnet.cells.fastgrnn import FastGRNN
from refnet.cells.fastrnn import FastRNN
from refnet.optim import Adam
from refnet.params import flatten
from refnet.tasks.random_walks import READINGS, random_walk_task, step_variance_baseline

sys.path.insert(0, str(Path(__file__).resolve().parent))   # examples/_cli.py, however this file is started
import _cli  # noqa: E402


HIDDEN, INPUT, CLASSES = 10, 2, 2
MODELS = {
    "RNN": lambda T: refnet.ElmanRNN(INPUT, HIDDEN, "tanh"),
    "FastRNN": lambda T: FastRNN(INPUT, HIDDEN),
    "FastGRNN": lambda T: FastGRNN(INPUT, HIDDEN),
    "ERNN(K=1)": lambda T: ERNN(INPUT, HIDDEN, K=1, sequence_length=T),
    "ERNN(K=2)": lambda T: ERNN(INPUT, HIDDEN, K=2, sequence_length=T),
    "exact ERNN": lambda T: ExactERNN(INPUT, HIDDEN, solver=fixed_point_then_hybr, maxiter=300),
}
# The ERNN paper, §1: test accuracy (%) on 2-D random walks (one reading of σ, not said which).
PAPER = {"RNN": 86.6, "ERNN(K=1)": 99.7}
FULL = {"n_per_class": 2000, "T": 100, "epochs": 10, "seeds": 3, "batch": 128}
QUICK = {"n_per_class": 48, "T": 12, "epochs": 2, "seeds": 1, "batch": 32}


def accuracy(cell, theta, head, beta, x, y, chunk=2000):
    """Fraction of walks whose last state's logits pick the right class."""
    correct = 0
    for start in range(0, x.shape[1], chunk):
        s_T = refnet.forward(cell, theta, x[:, start:start + chunk]).s[-1]
        predicted = head.forward(beta, cell.output(s_T)).argmax(axis=1)
        correct += int((predicted == y[start:start + chunk]).sum())
    return correct / x.shape[1]


def train(model, reading, seed, data, args, bar):
    """Train one model on one split; returns its result row (``failed`` set if the solve gave up)."""
    T = data.x_train.shape[0]
    cell = MODELS[model](T)
    r = refnet.rng(seed)
    theta = cell.init(r)
    head = refnet.Head(HIDDEN, CLASSES)
    beta = head.init(r)
    opt = Adam(lr=args.lr)
    states = opt.init(theta), opt.init(beta)
    order_rng = np.random.default_rng(seed)
    n = data.x_train.shape[1]
    losses, snapshots, failed = [], [], None
    started = time.perf_counter()
    for epoch in range(args.epochs):
        total, batches = 0.0, 0
        try:
            for idx in np.array_split(order_rng.permutation(n), max(1, n // args.batch)):
                x = data.x_train[:, idx]
                y = np.broadcast_to(data.y_train[idx], (T, idx.size))   # only the last step is weighted
                res = refnet.bptt(cell, theta, x, None, head, beta, y, refnet.last_step(T, idx.size))
                states = opt.update(theta, res.dtheta, states[0]), opt.update(beta, res.dbeta, states[1])
                total, batches = total + res.loss, batches + 1
        except refnet.NumericalError as exc:    # ConvergenceError included: reported, never hidden
            failed = f"epoch {epoch + 1}: {type(exc).__name__}: {exc}"
            bar.update(args.epochs - epoch)
            break
        losses.append(total / batches)
        snapshots.append(np.concatenate([flatten(theta), flatten(beta)]))
        bar.update(1)
    seconds = time.perf_counter() - started
    test_acc = None
    if not failed:
        try:
            test_acc = accuracy(cell, theta, head, beta, data.x_test, data.y_test)
        except refnet.NumericalError as exc:
            failed = f"test evaluation: {type(exc).__name__}: {exc}"
    change = [float(np.linalg.norm(p - snapshots[-1])) for p in snapshots] if snapshots else []
    return {"model": model, "reading": reading, "seed": seed, "test_accuracy": test_acc,
            "paper_test_accuracy": PAPER.get(model), "train_loss": losses, "param_change": change,
            "epochs": len(losses), "seconds": seconds, "failed": failed, "n_train": n, "T": T}


def _pct(values):
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def table(rows, baselines, args):
    """Mean ± std of the test accuracy over seeds, per reading and model, beside the paper's."""
    lines = [f"2-D random walks: {rows[0]['n_train']} training walks, T = {rows[0]['T']}, "
             f"{args.epochs} epochs, batch {args.batch}, Adam lr {args.lr:g}, {HIDDEN} hidden units, "
             f"seeds {list(range(args.seeds))}; {_cli.blas_threads_note()}; test accuracy (%) mean ± std over the "
             f"runs that finished",
             f"{'reading':<9} {'model':<24} {'runs':>4} {'test acc (%)':>14} {'min–max':>12} "
             f"{'paper (%)':>9} {'s/run':>7}"]
    failures = []
    for reading in args.readings:
        for model in args.models:
            runs = [r for r in rows if r["reading"] == reading and r["model"] == model]
            acc = [r["test_accuracy"] for r in runs if r["test_accuracy"] is not None]
            spread = f"{100 * min(acc):.1f}–{100 * max(acc):.1f}" if acc else "-"
            paper = PAPER.get(model)
            failures += [f"{reading} {model} seed {r['seed']}: {r['failed']}" for r in runs if r["failed"]]
            lines.append(f"{reading:<9} {model:<24} {f'{len(acc)}/{len(runs)}':>4} {_pct(acc):>14} "
                         f"{spread:>12} {'-' if paper is None else f'{paper:.1f}':>9} "
                         f"{np.mean([r['seconds'] for r in runs]):7.1f}")
        base = [b["test_accuracy"] for b in baselines if b["reading"] == reading]
        lines.append(f"{reading:<9} {'step-variance threshold':<24} {f'{len(base)}/{len(base)}':>4} "
                     f"{_pct(base):>14} {f'{100 * min(base):.1f}–{100 * max(base):.1f}':>12} {'-':>9} "
                     f"{'-':>7}")
    lines.append("paper: RNN 86.6%, ERNN 99.7% (one reading of σ, not said which; 10^4 walks per class)")
    lines += ["runs stopped by a failed solve:"] + failures if failures else []
    return "\n".join(lines)


def plot(rows, baselines, args, path):
    """Test accuracy per model and reading (top); per-epoch parameter change and training loss (below)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(args.readings)
    fig = plt.figure(figsize=(12, 12))
    grid = fig.add_gridspec(3, cols, height_ratios=(1.1, 1, 1))
    top = fig.add_subplot(grid[0, :])
    colours = {m: f"C{i}" for i, m in enumerate(MODELS)}
    width = 0.8 / max(cols, 1)
    for j, reading in enumerate(args.readings):
        for i, model in enumerate(args.models):
            acc = [100 * r["test_accuracy"] for r in rows if r["reading"] == reading and r["model"] == model
                   and r["test_accuracy"] is not None]
            x = i + (j - (cols - 1) / 2) * width
            if acc:
                top.bar(x, np.mean(acc), width * 0.9, bottom=0, color=colours[model], alpha=0.35 if j else 0.8,
                        hatch="//" if j else None, edgecolor=colours[model])
                top.scatter([x] * len(acc), acc, color="k", s=10, zorder=3)
        base = [100 * b["test_accuracy"] for b in baselines if b["reading"] == reading]
        top.axhline(np.mean(base), color="grey", ls=("--", ":")[j % 2], lw=1,
                    label=f"step-variance threshold, σ as {reading}")
    for model, value in PAPER.items():
        if model in args.models:
            top.scatter(args.models.index(model), value, marker="*", s=120, color="red", zorder=4,
                        label="paper (ERNN §1)" if model == "RNN" else None)
    top.set_xticks(range(len(args.models)), args.models)
    top.set_ylabel("test accuracy (%)")
    lowest = min([100 * r["test_accuracy"] for r in rows if r["test_accuracy"] is not None]
                 + [100 * b["test_accuracy"] for b in baselines], default=50)
    top.set_ylim(max(0, min(40, lowest - 5)), 101)
    top.set_title(f"test accuracy per model; bars: mean over seeds (solid: σ as {args.readings[0]}"
                  + (f", hatched: σ as {args.readings[1]}" if cols > 1 else "") + "); dots: seeds")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    for j, reading in enumerate(args.readings):
        change, loss = fig.add_subplot(grid[1, j]), fig.add_subplot(grid[2, j])
        for model in args.models:
            runs = [r for r in rows if r["reading"] == reading and r["model"] == model and not r["failed"]]
            if not runs:
                continue
            epochs = np.arange(1, args.epochs + 1)
            change.plot(epochs, np.mean([r["param_change"] for r in runs], axis=0), color=colours[model],
                        label=model)
            loss.plot(epochs, np.mean([r["train_loss"] for r in runs], axis=0), color=colours[model], label=model)
        change.set(title=f"σ as {reading}: ‖θ_epoch − θ_final‖ (Fig. 3a)", xlabel="epoch",
                   ylabel="distance to final parameters")
        loss.set(title=f"σ as {reading}: training loss (Fig. 4)", xlabel="epoch", ylabel="mean cross-entropy",
                 yscale="log")
        change.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _parser():
    parser = _cli.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: few short walks, 2 epochs, 1 seed")
    parser.add_argument("--json", action="store_true", help="one JSON line per run and baseline")
    parser.add_argument("--n-per-class", type=_cli.positive_int,
                        help=f"walks per class, half to train (default {FULL['n_per_class']}; the paper's 10000)")
    parser.add_argument("--T", type=_cli.positive_int, help=f"steps per walk (default {FULL['T']})")
    parser.add_argument("--epochs", type=_cli.positive_int, help=f"default {FULL['epochs']}")
    parser.add_argument("--seeds", type=_cli.positive_int, help=f"seeds 0..N-1 (default {FULL['seeds']})")
    parser.add_argument("--batch", type=_cli.positive_int, help=f"default {FULL['batch']}")
    parser.add_argument("--lr", type=_cli.positive_float, default=1e-2, help="Adam's learning rate (default 0.01)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--readings", nargs="+", choices=READINGS, default=list(READINGS))
    parser.add_argument("--out", default="random_walk_ernn_results.jsonl", help="the runs and baselines, JSON lines")
    parser.add_argument("--png", default="random_walk_ernn.png",
                        help="figure: test accuracy, per-epoch parameter change and training loss")
    return parser


def parse_args(argv=None):
    """The command line with the defaults of --quick or the full run filled in; usage errors exit with status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.models = _cli.check_grid(parser, "--models", args.models)
    args.readings = _cli.check_grid(parser, "--readings", args.readings)
    if args.n_per_class < 2:
        parser.error(f"argument --n-per-class: expected at least 2 (one walk per class to train, one to test), "
                     f"got {args.n_per_class}")
    return args


def main(argv=None):
    args = parse_args(argv)
    rows, baselines = [], []
    runs = len(args.readings) * args.seeds * len(args.models)
    with _cli.pinned_blas(), tqdm(total=runs * args.epochs, file=sys.stderr, unit="epoch") as bar:
        for reading in args.readings:
            for seed in range(args.seeds):
                data = random_walk_task(args.n_per_class, T=args.T, reading=reading, seed=seed)
                acc, threshold = step_variance_baseline(data.x_train, data.y_train, data.x_test, data.y_test)
                baselines.append({"model": "step-variance threshold", "reading": reading, "seed": seed,
                                  "test_accuracy": acc, "threshold": threshold})
                for model in args.models:
                    bar.set_description(f"{reading} seed {seed} {model}")
                    rows.append(train(model, reading, seed, data, args, bar))
    _cli.write_json_lines(args.out, rows + baselines)
    if args.json:
        for row in rows + baselines:
            print(json.dumps(row))
    else:
        print(table(rows, baselines, args))
        print(f"results: {args.out}")
    if not _cli.save_figure(plot, args.png, rows, baselines, args):
        return 1
    if not args.json:
        print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
