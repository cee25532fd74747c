"""Associative retrieval (Ba et al. 2016, §4.1 and Table 1): fast weights against an iRNN and an LSTM.

Each model reads a sequence such as ``c9k8j3f1??c`` one symbol at a time
(37-symbol one-hot, :mod:`refnet.tasks.associative_retrieval`) and answers
the digit stored under the query key from its last state through 100 ReLU
units and a 10-way softmax (:class:`refnet.heads_mlp.MLPHead`).  The
gradient is BPTT (``refnet.bptt``, cross-entropy at the last step, mean over
the batch) and the update is :class:`refnet.optim.Adam` (Kingma & Ba 2015,
learning rate 1e-3, batches of 128).  The models:

- fast weights: :class:`refnet.cells.fast_weights.FastWeightsAttention`
  (``--form attention``, the default: the faster form at these lengths) or
  :class:`~refnet.cells.fast_weights.FastWeights` (``--form explicit``);
  both compute the same numbers.  S = 1, λ = 0.95, η = 0.5, W = 0.05·I.
- iRNN: ``refnet.IRNN`` (W_hh = I, zero biases); LSTM: ``refnet.LSTM``.

The fast-weights transition (Ba et al. 2016, Eqs. 1–2, layer norm of §3.1):

    A(t) = λ A(t−1) + η h(t) h(t)ᵀ,    A(0) = 0                          (Eq. 1)
    h_{s+1}(t+1) = f(LN[W h(t) + C x(t) + A(t) h_s(t+1)]),  s = 0..S−1     (Eq. 2)

with f = ReLU.  Table 1 (K = 4 pairs, test error %, R = 20 / 50 / 100):
iRNN 62.11 / 60.23 / 0.34, LSTM 60.81 / 1.85 / 0, fast weights 1.81 / 0 / 0.

The validation error (on the first ``--n-eval`` validation sequences) is
measured every ``--eval-every`` steps and drawn as learning curves; the test
error is measured once, at the end, on the whole test split.  The table puts
it beside Ba et al.'s Table 1, which is for K = 4 pairs and training to
convergence: with other settings (fewer pairs, fewer steps) the comparison is
qualitative, and the table says which settings were run.

    python examples/associative_retrieval.py                   # K = 2, 8 000 steps, R = 20 and 50
    python examples/associative_retrieval.py --pairs 4 --steps 100000   # the paper's task
    python examples/associative_retrieval.py --quick --json    # seconds, for CI

``--stop-at ERROR`` ends a model at the first evaluation whose validation
error is at most ERROR; running the other models with ``--steps`` set to the
steps it took gives them the same budget.

A model whose forward pass overflows stops there (``refnet.NumericalError``)
and its row says so.  NumPy's BLAS is held to one thread (threadpoolctl):
the same command and seed then print the same numbers on any number of
cores, and on a busy 2-core machine OpenBLAS's spinning workers had slowed
training steps tens of times.  Each model's row goes to ``--out`` (JSON
lines) as soon as it has finished — into a temporary file that replaces the
old one only when the whole run has succeeded (a failed run leaves its
finished rows in ``OUT.partial``) — and with ``--json`` to stdout too; the
table is printed, and the figure drawn, after the last model.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import refnet
from refnet.cells.fast_weights import FastWeights, FastWeightsAttention
from refnet.heads_mlp import MLPHead
from refnet.optim import Adam
from refnet.tasks.associative_retrieval import N_SYMBOLS, associative_retrieval, one_hot, overlap

sys.path.insert(0, str(Path(__file__).resolve().parent))   # examples/_cli.py, however this file is started
import _cli  # noqa: E402

MODELS = ("irnn", "lstm", "fast_weights")
# Ba et al. (2016), Table 1: test error (%) on K = 4 pairs.
PAPER = {("irnn", 20): 62.11, ("lstm", 20): 60.81, ("fast_weights", 20): 1.81,
         ("irnn", 50): 60.23, ("lstm", 50): 1.85, ("fast_weights", 50): 0.0,
         ("irnn", 100): 0.34, ("lstm", 100): 0.0, ("fast_weights", 100): 0.0}
CLASSES, READOUT_HIDDEN = 10, 100
FULL = {"pairs": 2, "steps": 8_000, "sizes": [20, 50], "n_train": 100_000, "n_valid": 10_000,
        "n_test": 20_000, "n_eval": 2_000, "eval_every": 500}
QUICK = {"pairs": 2, "steps": 40, "sizes": [20], "n_train": 2_000, "n_valid": 500, "n_test": 500,
         "n_eval": 200, "eval_every": 20}


def make_cell(model, R, T, form):
    """The recurrent cell of ``model`` with R hidden units for sequences of length T."""
    if model == "irnn":
        return refnet.IRNN(N_SYMBOLS, R)
    if model == "lstm":
        return refnet.LSTM(N_SYMBOLS, R)
    if form == "explicit":
        return FastWeights(N_SYMBOLS, R)
    return FastWeightsAttention(N_SYMBOLS, R, capacity=T)


def predict(cell, theta, head, beta, codes, chunk=1000):
    """Predicted digits (N,) for codes (N, T), stepping the cell without keeping the trajectory."""
    out = []
    for start in range(0, len(codes), chunk):
        x = one_hot(codes[start:start + chunk])
        s = cell.init_state(x.shape[1])
        for t in range(x.shape[0]):
            s, _ = cell.step(theta, s, x[t], t)
        out.append(refnet.to_numpy(head.forward(beta, cell.output(s)).argmax(axis=1)))
    return np.concatenate(out)


def error_rate(cell, theta, head, beta, split, n=None):
    """Fraction of the first ``n`` sequences of ``split`` (all if None) answered wrongly."""
    n = len(split) if n is None else min(n, len(split))
    return float((predict(cell, theta, head, beta, split.codes[:n]) != split.targets[:n]).mean())


def train(model, R, data, args, bar):
    """Train one model; returns its result dict (learning curve, test error, time)."""
    T = data.train.codes.shape[1]
    cell = make_cell(model, R, T, args.form)
    head = MLPHead(cell.n_out, CLASSES, n_hidden=READOUT_HIDDEN)
    r = refnet.rng(args.seed)
    theta, beta = cell.init(r), head.init(r)
    params = {**{f"theta/{k}": v for k, v in theta.items()}, **{f"beta/{k}": v for k, v in beta.items()}}
    adam = Adam(lr=args.lr)
    adam_state = adam.init(params)
    batches = np.random.default_rng(args.seed + 1)          # the same batches for every model
    order, at = batches.permutation(len(data.train)), 0
    curve = [(0, error_rate(cell, theta, head, beta, data.valid, args.n_eval))]
    losses, diverged, started = [], None, time.perf_counter()
    for step in range(1, args.steps + 1):
        if at + args.batch > len(order):
            order, at = batches.permutation(len(data.train)), 0
        idx, at = order[at:at + args.batch], at + args.batch
        x = one_hot(data.train.codes[idx])
        xp = refnet.xp_of(x)
        y = xp.zeros((T, len(idx)), dtype=np.int64)
        y[-1] = xp.asarray(data.train.targets[idx])
        try:
            res = refnet.bptt(cell, theta, x, None, head, beta, y, refnet.last_step(T, len(idx), like=x))
        except refnet.NumericalError as exc:
            diverged = f"step {step}: {exc}"
            bar.update(args.steps - step + 1)
            break
        grads = {**{f"theta/{k}": v for k, v in res.dtheta.items()},
                 **{f"beta/{k}": v for k, v in res.dbeta.items()}}
        adam_state = adam.update(params, grads, adam_state)
        losses.append(res.loss)
        if step % args.eval_every == 0 or step == args.steps:
            curve.append((step, error_rate(cell, theta, head, beta, data.valid, args.n_eval)))
            bar.set_postfix_str(f"{model} R={R} valid error {curve[-1][1]:.1%}")
        bar.update(1)
        if args.stop_at is not None and curve[-1][0] == step and curve[-1][1] <= args.stop_at:
            bar.update(args.steps - step)     # reached the target: the steps not taken leave the bar
            break
    seconds = time.perf_counter() - started
    steps_done = len(losses)
    return {"model": model, "R": R, "pairs": data.pairs, "steps": steps_done,
            "form": args.form if model == "fast_weights" else None,
            "ms_per_step": 1e3 * seconds / max(steps_done, 1), "seconds": seconds,
            "train_loss_last_100": float(np.mean(losses[-100:])) if losses else None,
            "valid_error": curve[-1][1],
            "test_error": None if diverged else error_rate(cell, theta, head, beta, data.test),
            "paper_test_error_k4": None if (model, R) not in PAPER else PAPER[(model, R)] / 100,
            "diverged": diverged, "curve": curve}


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}%"


def table(results, args, test_in_train):
    """The results beside Ba et al.'s Table 1."""
    lines = [f"associative retrieval: K = {args.pairs} pairs (length {2 * args.pairs + 3}), batch {args.batch}, "
             f"Adam {args.lr:g}, up to {args.steps} steps"
             f"{'' if args.stop_at is None else f' (a model stops at validation error <= {args.stop_at:.1%})'}, "
             f"fast-weights form '{args.form}', "
             f"{args.n_train}/{args.n_valid}/{args.n_test} sequences ({test_in_train:.1%} of the test "
             f"sequences also occur in the training split), seed {args.seed}; {_cli.blas_threads_note()}",
             f"{'model':<13} {'R':>4} {'steps':>6} {'ms/step':>8} {'valid err':>10} {'test err':>9} "
             f"{'Ba et al. (K=4)':>16}"]
    for res in results:
        lines.append(f"{res['model']:<13} {res['R']:>4} {res['steps']:>6} {res['ms_per_step']:>8.1f} "
                     f"{_pct(res['valid_error']):>10} {_pct(res['test_error']):>9} "
                     f"{_pct(res['paper_test_error_k4']):>16}"
                     + (f"  diverged at {res['diverged']}" if res["diverged"] else ""))
    if args.pairs != 4:
        lines.append(f"note: Ba et al.'s numbers are for K = 4 trained to convergence; this run used "
                     f"K = {args.pairs} and {args.steps} steps, so compare the pattern, not the digits")
    return "\n".join(lines)


def plot(results, batch, path):
    """Validation error against training step, one panel per R, one legend below the panels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({res["R"] for res in results})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
    for ax, R in zip(axes[0], sizes):
        for res in (r for r in results if r["R"] == R):
            steps, errors = zip(*res["curve"])
            ax.plot(steps, 100 * np.asarray(errors), color=f"C{MODELS.index(res['model'])}", label=res["model"])
            paper = res["paper_test_error_k4"]
            if paper is not None and results[0]["pairs"] == 4:
                ax.axhline(100 * paper, color=f"C{MODELS.index(res['model'])}", ls=":", lw=1)
        ax.set_title(f"R = {R}, K = {results[0]['pairs']} pairs")
        ax.set_xlabel(f"training step (batch {batch})")
        ax.set_ylabel("validation error (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)


def _parser():
    parser = _cli.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: K = 2, R = 20, 40 steps, small splits")
    parser.add_argument("--json", action="store_true", help="one JSON line per model instead of the table")
    parser.add_argument("--pairs", type=_cli.positive_int, help=f"K (default {FULL['pairs']}; the paper's is 4)")
    parser.add_argument("--steps", type=_cli.positive_int,
                        help=f"training steps per model (default {FULL['steps']})")
    parser.add_argument("--sizes", type=_cli.positive_int, nargs="+",
                        help=f"hidden sizes R (default {FULL['sizes']})")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--form", choices=("attention", "explicit"), default="attention",
                        help="memory form of the fast-weights cell")
    parser.add_argument("--batch", type=_cli.positive_int, default=128, help="sequences per step (default 128)")
    parser.add_argument("--lr", type=_cli.positive_float, default=1e-3, help="Adam's learning rate (default 0.001)")
    parser.add_argument("--n-train", type=_cli.positive_int, help=f"default {FULL['n_train']}")
    parser.add_argument("--n-valid", type=_cli.positive_int, help=f"default {FULL['n_valid']}")
    parser.add_argument("--n-test", type=_cli.positive_int, help=f"default {FULL['n_test']}")
    parser.add_argument("--n-eval", type=_cli.positive_int,
                        help=f"validation sequences per learning-curve point (default {FULL['n_eval']})")
    parser.add_argument("--eval-every", type=_cli.positive_int, help=f"default {FULL['eval_every']}")
    parser.add_argument("--stop-at", type=_cli.probability, metavar="ERROR",
                        help="stop a model at the first evaluation whose validation error is <= ERROR "
                             "(then give the other models --steps equal to the steps it took: the same budget)")
    parser.add_argument("--seed", type=_cli.seed, default=0, help="data, weights and batches (default 0)")
    parser.add_argument("--out", default="associative_retrieval_results.jsonl", help="one JSON line per model")
    parser.add_argument("--png", default="associative_retrieval.png", help="learning-curve figure")
    return parser


def parse_args(argv=None):
    """The command line with the defaults of --quick or the full run filled in; usage errors exit with status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sizes = _cli.check_grid(parser, "--sizes", args.sizes)
    args.models = _cli.check_grid(parser, "--models", args.models)
    if args.pairs > 26:
        parser.error(f"argument --pairs: expected at most 26 (the keys are distinct letters a–z), got {args.pairs}")
    return args


def main(argv=None):
    args = parse_args(argv)
    data = associative_retrieval(args.pairs, args.n_train, args.n_valid, args.n_test, seed=args.seed)
    test_in_train = overlap(data.train, data.test)
    results = []
    with _cli.pinned_blas(), _cli.atomic_path(args.out, keep_partial=True) as tmp, open(tmp, "w") as out, \
            tqdm(total=len(args.sizes) * len(args.models) * args.steps, file=sys.stderr, unit="step") as bar:
        for R in args.sizes:
            for model in args.models:
                results.append({**train(model, R, data, args, bar), "test_in_train": test_in_train})
                out.write(json.dumps(results[-1]) + "\n")
                out.flush()
                if args.json:
                    print(json.dumps(results[-1]), flush=True)
    if not args.json:
        print(table(results, args, test_in_train))
        print(f"results: {args.out}")
    if not _cli.save_figure(plot, args.png, results, args.batch):
        return 1
    if not args.json:
        print(f"learning curves: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
