"""Sequential digits (the FPP paper's Fig. 2, on scikit-learn's 8×8 digits): FPP against TBPTT and full BPTT.

An LSTM of 128 units reads an image one pixel per step (64 steps; MNIST:
784) and a linear softmax head classifies it from the last state; Adam
(lr 1e-3), minibatches of ``--batch`` sequences.  The methods:

The paper's setting (Nath, Jafferjee & White, §3, Fig. 2): MNIST pixel by
pixel, LSTM 128, Adam 1e-3; FPP n = 10 reaches ≈ 80% where 10-BPTT reaches
≈ 60%, and 15-BPTT matches FPP.  FPP's loss per sampled transition
(Algorithm 1): L = MSE(f_W(s_T, o_{T+1}), s_{T+1}) + CE(g_β(s_T), y_T).

- ``bptt``: the exact gradient of the last step's cross-entropy (:func:`refnet.bptt`);
- ``tbptt10``, ``tbptt15``: the gradient through the last k steps only — the
  state k steps before the end is held fixed (the paper's k-BPTT);
- ``fpp10``, ``fpp15``: FPP (Algorithm 1, :mod:`refnet.algorithms.fpp`) with n = 10 or 15
  updates per time step.  While a minibatch is read, its states s_0..s_t are
  stored; the buffer keeps the trajectories of the last ``--fpp-sequences``
  minibatches (``K`` × 64 transitions, one ring of preallocated arrays), and
  each update samples one transition (k, T) uniformly.  Transition T < 64 has
  the state loss only (its o_{T+1} and s_{T+1} exist, it has no target);
  T = 64 has the target loss only (no next step).  After each update
  s_{T+1} ← f_W(f_W(s_{T−1}, o_T), o_{T+1}) is written back.  n = 10 costs
  ten two-step updates per pixel, about twenty times a BPTT step: FPP runs
  ``--fpp-epochs`` epochs (fewer than the others, to fit the time) and the
  table gives every method's accuracy at that epoch and at its own last one.

Matched compute (``--budget VJPS``): every method trains until it has spent
the same number of cell-step VJPs (one back-propagation through one LSTM step
for a minibatch): a BPTT minibatch costs T of them (64), TBPTT(k) k, one FPP
update 2 (it back-propagates through s_T and f_W(s_T, o_{T+1})); the run stops
before the minibatch or update that would exceed the budget.  80 BPTT epochs
of the 8×8 digits (21 minibatches of 64) are 80 · 21 · 64 = 107 520 VJPs.
Forward steps are not counted: TBPTT(k) still runs the first T − k steps
forward, and FPP's n updates each re-run two steps, so the table gives the
CPU seconds each run took as well.

Test accuracy after every epoch, ``--seeds`` seeds (a seed fixes the split,
the weights, the order and FPP's draws).  The runs go through
:func:`refnet.sweep.run_sweep` (joblib, ``--jobs``); one JSON line per run in
``--out``, written into a temporary file that replaces the old results only
when every run has finished (a failed run leaves its finished rows in
``OUT.partial``).  Then the table, then the figure (``--png``: test accuracy
per epoch).  BLAS is held to one thread so a rerun prints the same numbers.

    python examples/sequential_digits.py --jobs 2
    python examples/sequential_digits.py --methods bptt tbptt10 tbptt15 fpp10 --budget 107520 --jobs 2
    python examples/sequential_digits.py --mnist DIR   # MNIST from IDX files in DIR (784 steps)
    python examples/sequential_digits.py --quick --json  # rows as 8 steps of 8 pixels, seconds
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import refnet
from refnet import heads
from refnet.algorithms.fpp import fpp_grad, fpp_refresh
from refnet.optim import Adam
from refnet.sweep import grid, read_results, run_sweep

sys.path.insert(0, str(Path(__file__).resolve().parent))   # examples/_cli.py, however this file is started
import _cli  # noqa: E402

METHODS = ("bptt", "tbptt10", "tbptt15", "fpp10", "fpp15")
HIDDEN, LR = 128, 1e-3
FPP_VJPS = 2   # one FPP update back-propagates through two cell steps (s_T, then f_W(s_T, o_{T+1}))
FULL = {"epochs": 10, "fpp_epochs": 1, "seeds": 3, "batch": 64, "train": None, "rows": False}
QUICK = {"epochs": 2, "fpp_epochs": 1, "seeds": 1, "batch": 16, "train": 32, "rows": True}
PUBLISHED = [
    "FPP paper, Fig. 2 (sequential MNIST, 784 steps, LSTM 128, Adam 1e-3, 5 runs): FPP n = 10 ~ 80% vs "
    "10-BPTT ~ 60%; n = 15 slightly faster, no gain; 15-BPTT matches FPP; full BPTT near optimal.",
]


def _data(seed, rows, mnist_dir, train):
    if mnist_dir:
        from refnet.tasks.mnist import mnist
        split = mnist(mnist_dir, rows=rows)
    else:
        from refnet.tasks.digits import digits
        split = digits(rows=rows, seed=seed)
    if train:
        split = split._replace(x_train=split.x_train[:, :train], y_train=split.y_train[:train])
    return split


def accuracy(cell, theta, head, beta, x, labels, chunk=1000):
    """Test accuracy: argmax of the head on the last state, in chunks of sequences."""
    right = 0
    for first in range(0, x.shape[1], chunk):
        s = refnet.forward(cell, theta, x[:, first:first + chunk]).s[-1]
        right += int((head.forward(beta, cell.output(s)).argmax(axis=1) == labels[first:first + chunk]).sum())
    return right / x.shape[1]


def _truncated_grad(cell, theta, head, beta, x, labels, k):
    """Gradient of the last step's loss through the last k steps; the state before them held fixed."""
    T, B = x.shape[0], x.shape[1]
    k = min(k, T)
    s = refnet.forward(cell, theta, x[:T - k]).s[-1] if k < T else None
    y = np.broadcast_to(labels, (k, B))
    return refnet.bptt(cell, theta, x[T - k:], s, head, beta, y, heads.last_step(k, B, like=x))


class _TrajectoryBuffer:
    """FPP's buffer for sequence classification: the states, inputs and labels of the last K minibatches."""

    def __init__(self, K, T, B, n_state, n_in, dtype):
        self.S = np.zeros((K, T + 1, B, n_state), dtype=dtype)   # S[k, t] = s_t of stored sequence k
        self.X = np.zeros((K, T, B, n_in), dtype=dtype)
        self.Y = np.zeros((K, B), dtype=np.int64)
        self.K, self.T, self.held, self.current = K, T, 0, -1

    def start(self, x, labels):
        """A new minibatch takes the oldest slot; s_0 = 0."""
        self.current = (self.current + 1) % self.K
        self.held = min(self.held + 1, self.K)
        self.X[self.current], self.Y[self.current], self.S[self.current, 0] = x, labels, 0.0
        return self.current

    def sample(self, u, t):
        """Transition (k, T) at quantile u: all T of the finished sequences, T < t of the current one."""
        finished = (self.held - 1) * self.T
        j = min(int(u * (finished + t - 1)), finished + t - 2)
        if j >= finished:
            return self.current, j - finished + 1
        k = j // self.T
        return (self.current + 1 + k) % self.K if self.held == self.K else k, j % self.T + 1


def _fpp_epoch(cell, theta, head, beta, opt, states, split, order, batch, n, buffer, uniforms, budget=None):
    """One epoch of FPP with n updates per time step; returns the cell-step VJPs spent (2 per update).

    With ``budget`` (cell-step VJPs left), the epoch stops before the update that would exceed it.
    """
    T = split.x_train.shape[0]
    w_target = np.full(batch, 1.0 / batch)
    zero = np.zeros(batch)
    spent = 0
    for first in range(0, len(order) - batch + 1, batch):
        idx = order[first:first + batch]
        k_now = buffer.start(split.x_train[:, idx], split.y_train[idx])
        for t in range(1, T + 1):
            buffer.S[k_now, t] = cell.step(theta, buffer.S[k_now, t - 1], buffer.X[k_now, t - 1], t - 1)[0]
            if buffer.held == 1 and t == 1:     # no transition held yet
                continue
            for _ in range(n):
                if budget is not None and spent + FPP_VJPS > budget:
                    return spent
                k, Tk = buffer.sample(next(uniforms), t)
                last = Tk == T
                x_next = buffer.X[k, Tk - 1] if last else buffer.X[k, Tk]
                # The state loss's target is the stored s_{T+1} (S[k, T + 1]); at the last pixel there is
                # none, the state loss has weight 0 and S[k, T] only fills the argument.
                s_next = buffer.S[k, Tk] if last else buffer.S[k, Tk + 1]
                g = fpp_grad(cell, theta, head, beta, buffer.S[k, Tk - 1], buffer.X[k, Tk - 1], x_next,
                             s_next, buffer.Y[k], w_target if last else zero,
                             v=zero if last else w_target, t=Tk - 1)
                spent += FPP_VJPS
                states[0] = opt.update(theta, g.dtheta, states[0])
                states[1] = opt.update(beta, g.dbeta, states[1])
                if not last:
                    buffer.S[k, Tk + 1] = fpp_refresh(cell, theta, buffer.S[k, Tk - 1], buffer.X[k, Tk - 1],
                                                      x_next, t=Tk - 1)[1]
    return spent


def _uniforms(seed):
    generator = np.random.default_rng(seed)
    while True:
        yield from generator.random(4096).tolist()


def vjps_per_minibatch(method, T):
    """Cell-step VJPs one BPTT/TBPTT minibatch costs: T for BPTT, k for TBPTT(k) (at most T).

    Parameters
    ----------
    method : str
        ``"bptt"`` or ``"tbpttK"``.
    T : int
        Steps per sequence.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``method`` is neither BPTT nor a TBPTT(k).
    """
    if method == "bptt":
        return T
    if not (method.startswith("tbptt") and method[5:].isdigit()):
        raise ValueError(f"method: expected 'bptt' or 'tbpttK', got {method!r}")
    return min(int(method[5:]), T)


def run(method, seed, epochs, batch, rows, train, mnist_dir, fpp_sequences, budget=None):
    """One (method, seed) run: test accuracy after every epoch, seconds per epoch.

    With ``budget`` (cell-step VJPs, each over a minibatch of ``batch``
    sequences) the run trains until the next minibatch (BPTT, TBPTT) or
    update (FPP) would exceed it, measuring the test accuracy after every
    epoch and where the budget ends; ``epochs`` is then ignored.
    """
    with _cli.pinned_blas():
        split = _data(seed, rows, mnist_dir, train)
        T, n_in = split.x_train.shape[0], split.x_train.shape[2]
        r = refnet.rng(seed)
        cell, head = refnet.LSTM(n_in, HIDDEN), refnet.Head(HIDDEN, 10, heads.softmax_cross_entropy)
        theta, beta = cell.init(r), head.init(r)
        opt = Adam(LR)
        states = [opt.init(theta), opt.init(beta)]
        order_rng = np.random.default_rng(seed + 1)
        uniforms = _uniforms(seed + 2)
        buffer = (_TrajectoryBuffer(fpp_sequences, T, batch, cell.n_state, n_in, split.x_train.dtype)
                  if method.startswith("fpp") else None)
        curve, seconds, spent, evals = [], [], 0, []
        cpu_start = time.process_time()
        while (spent < budget) if budget is not None else (len(curve) < epochs):
            start = time.perf_counter()
            order = order_rng.permutation(split.x_train.shape[1])
            left = None if budget is None else budget - spent
            if buffer is not None:
                used = _fpp_epoch(cell, theta, head, beta, opt, states, split, order, batch, int(method[3:]),
                                  buffer, uniforms, left)
            else:
                k, used = vjps_per_minibatch(method, T), 0
                for first in range(0, len(order) - batch + 1, batch):
                    if left is not None and used + k > left:
                        break
                    idx = order[first:first + batch]
                    res = _truncated_grad(cell, theta, head, beta, split.x_train[:, idx], split.y_train[idx], k)
                    states[0] = opt.update(theta, res.dtheta, states[0])
                    states[1] = opt.update(beta, res.dbeta, states[1])
                    used += k
            if used == 0:            # the budget left is less than one minibatch or update
                break
            spent += used
            seconds.append(time.perf_counter() - start)
            curve.append(accuracy(cell, theta, head, beta, split.x_test, split.y_test))
            evals.append(spent)
        cpu = time.process_time() - cpu_start
    return {"test_accuracy": curve, "vjps": evals, "seconds_per_epoch": float(np.median(seconds)),
            "cpu_seconds": cpu, "T": T}


def _sweep_run(**point):
    return run(**point)


def summarise(rows):
    """One dict per method over its seeds."""
    out = []
    for method in METHODS:
        runs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["seed"])
        if not runs:
            continue
        curves = [r["test_accuracy"] for r in runs]
        length = min(len(c) for c in curves)    # equal under one budget: every seed spends it the same way
        final = [c[-1] for c in curves]
        out.append({"method": method, "T": runs[0]["T"], "epochs": length, "batch": runs[0]["batch"],
                    "budget": runs[0].get("budget"), "vjps": runs[0].get("vjps", [])[:length],
                    "seeds": [r["seed"] for r in runs], "final_accuracy": final,
                    "final_mean": float(np.mean(final)), "final_std": float(np.std(final)),
                    "curve_mean": [float(v) for v in np.mean([c[:length] for c in curves], axis=0)],
                    "seconds_per_epoch": float(np.median([r["seconds_per_epoch"] for r in runs])),
                    "cpu_seconds": [r.get("cpu_seconds") for r in runs]})
    return out


def table(results, fpp_epochs):
    """Test accuracy per method: at FPP's last epoch and at each method's own end (or, with a budget, at its end)."""
    lines = [*PUBLISHED, ""]
    first = results[0]
    lines.append(f"{first['T']}-step sequences, LSTM {HIDDEN}, Adam {LR:g}, batch {first['batch']}, "
                 f"{len(first['seeds'])} seeds; test accuracy %, mean (min-max) over seeds; {_cli.blas_threads_note()}")
    if first["budget"] is not None:
        lines.append(f"matched compute: every run spends at most {first['budget']} cell-step VJPs (each over a "
                     f"minibatch): BPTT {first['T']} per minibatch, TBPTT(k) k, FPP 2 per update")
        lines.append(f"  {'method':<8} {'epochs':>6} {'VJPs spent':>10} {'at the end: mean ± std (min-max)':>34} "
                     f"{'CPU s/run':>10} {'s/epoch':>8}")
        for r in results:
            last = 100 * np.asarray(r["final_accuracy"])
            cpu = np.median([c for c in r["cpu_seconds"] if c is not None] or [np.nan])
            text = f"{last.mean():.1f} ± {last.std():.1f} ({last.min():.1f}-{last.max():.1f})"
            lines.append(f"  {r['method']:<8} {r['epochs']:>6} {r['vjps'][-1]:>10} {text:>34} {cpu:10.0f} "
                         f"{r['seconds_per_epoch']:8.1f}")
        return "\n".join(lines)
    lines.append(f"  {'method':<8} {'epochs':>6} {f'at epoch {fpp_epochs}':>22} {'at the last epoch':>22} "
                 f"{'s/epoch':>8}")
    for r in results:
        at = 100 * np.array([r["curve_mean"][min(fpp_epochs, r["epochs"]) - 1]])
        last = 100 * np.asarray(r["final_accuracy"])
        lines.append(f"  {r['method']:<8} {r['epochs']:>6} {at[0]:22.1f} "
                     f"{f'{last.mean():.1f} ({last.min():.1f}-{last.max():.1f})':>22} {r['seconds_per_epoch']:8.1f}")
    return "\n".join(lines)


def plot(results, path):
    """Test accuracy against epoch (with a budget: against cell-step VJPs spent), mean over seeds, one line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = results[0]["budget"] is not None
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for r in results:
        x = r["vjps"] if budget else np.arange(1, len(r["curve_mean"]) + 1)
        ax.plot(x, 100 * np.asarray(r["curve_mean"]), marker="o" if r["method"].startswith("fpp") else None,
                ms=3, label=r["method"])
    ax.set_xlabel("cell-step VJPs spent (matched budget)" if budget else "epoch")
    ax.set_ylabel(f"test accuracy % (mean of {len(results[0]['seeds'])} seeds)")
    ax.set_title(f"sequential digits, {results[0]['T']} steps, LSTM {HIDDEN}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _parser():
    parser = _cli.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: 8-step rows, 32 sequences, 2 epochs (FPP 1)")
    parser.add_argument("--json", action="store_true", help="one JSON line per method")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--epochs", type=_cli.positive_int,
                        help=f"epochs of BPTT and TBPTT (default {FULL['epochs']})")
    parser.add_argument("--fpp-epochs", type=_cli.positive_int, help=f"epochs of FPP (default {FULL['fpp_epochs']})")
    parser.add_argument("--budget", type=_cli.positive_int, metavar="VJPS",
                        help="matched compute: every run spends this many cell-step VJPs (replaces --epochs and "
                             "--fpp-epochs; 80 BPTT epochs of the 8x8 digits are 107520)")
    parser.add_argument("--fpp-sequences", type=_cli.positive_int, default=4,
                        help="minibatches of trajectories FPP keeps (4)")
    parser.add_argument("--seeds", type=_cli.positive_int, help=f"runs per method (default {FULL['seeds']})")
    parser.add_argument("--first-seed", type=_cli.seed, default=0,
                        help="the first seed (default 0): split a long run over processes, one --out each")
    parser.add_argument("--from-results", action="store_true",
                        help="only read --out (e.g. the --out files of several processes, concatenated) and "
                             "redo the table and figure")
    parser.add_argument("--batch", type=_cli.positive_int, help=f"sequences per minibatch (default {FULL['batch']})")
    parser.add_argument("--rows", action="store_true", help="one row per step instead of one pixel")
    parser.add_argument("--mnist", metavar="DIR", help="MNIST IDX files in DIR instead of the 8x8 digits")
    parser.add_argument("--jobs", type=_cli.positive_int, default=1, help="local worker processes through joblib")
    parser.add_argument("--scheduler", help="address of a Dask scheduler: run on that cluster")
    parser.add_argument("--out", default="sequential_digits_runs.jsonl", help="the runs, JSON lines")
    parser.add_argument("--png", default="sequential_digits.png", help="figure path")
    return parser


def parse_args(argv=None):
    """The command line with the defaults of --quick or the full run filled in; usage errors exit with status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    d = QUICK if args.quick else FULL
    epochs_given, fpp_given = args.epochs is not None, args.fpp_epochs is not None
    for key in ("epochs", "fpp_epochs", "seeds", "batch"):
        if getattr(args, key) is None:
            setattr(args, key, d[key])
    args.rows = args.rows or d["rows"]
    args.train = d["train"]
    args.methods = _cli.check_grid(parser, "--methods", args.methods)
    if args.budget is not None:
        given = [o for o, v in (("--epochs", epochs_given), ("--fpp-epochs", fpp_given)) if v]
        if given:
            parser.error(f"argument --budget: expected without {' and '.join(given)} (the budget sets how long "
                         f"each method trains), got both")
    return args


def main(argv=None):
    args = parse_args(argv)
    common = {"batch": [args.batch], "rows": [args.rows], "train": [args.train],
              "mnist_dir": [args.mnist], "fpp_sequences": [args.fpp_sequences], "budget": [args.budget]}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    points = (grid(method=[m for m in args.methods if m.startswith("fpp")], seed=seeds, epochs=[args.fpp_epochs],
                   **common)
              + grid(method=[m for m in args.methods if not m.startswith("fpp")], seed=seeds, epochs=[args.epochs],
                     **common))
    if not args.from_results:
        with tqdm(total=len(points), file=sys.stderr, unit="run") as bar, \
                _cli.atomic_path(args.out, keep_partial=True) as tmp:
            run_sweep(_sweep_run, points, tmp, n_jobs=args.jobs, scheduler=args.scheduler,
                      progress=lambda row: bar.update(1))
    try:
        results = summarise(read_results(args.out))
    except (OSError, ValueError, KeyError) as exc:
        print(f"sequential_digits.py: error: cannot read the results in {args.out!r}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    if args.json:
        for r in results:
            print(json.dumps(r), flush=True)
    else:
        print(table(results, args.fpp_epochs))
        print(f"results: {args.out}")
    if not _cli.save_figure(plot, args.png, results):
        return 1
    if not args.json:
        print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
