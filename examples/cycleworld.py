"""p-CycleWorld (Tanner & Sutton 2005; the FPP paper's Fig. 1): online TBPTT(1, T), RTRL, UORO, KF-RTRL.

An Elman RNN (4 tanh units) reads the CycleWorld bit stream one step at a
time and predicts the next bit through a linear head; every step it learns
with Adagrad (lr 0.1) from one of these gradients (:mod:`refnet.online`):

- ``tbptt1`` … ``tbptt8``: TBPTT(1, T), the last T steps re-run and back-propagated;
- ``rtrl``: exact RTRL; ``uoro`` and ``kfrtrl``: its unbiased approximations.

Four settings (``--settings``), 5 seeds each; a seed fixes the initial
weights, the phase of the cycle and the approximations' random signs, and
all methods of a seed start from the same weights on the same stream:

- ``p6``: 6-CycleWorld, sigmoid + binary cross-entropy, PyTorch's init — the FPP paper's setting;
- ``p6-mse``: 6-CycleWorld, linear output + squared error, every weight U(−0.1, 0.1)
  (where a quick PyTorch trial saw truncation stall, REFERENCE.md);
- ``p10``, ``p15``: longer cycles, BCE, PyTorch's init: T ≤ 8 no longer spans a cycle.

A prediction is right when the sigmoid's output (BCE) or the linear output
(MSE) is on the target's side of ½.  The accuracy is a moving mean over
``--window`` steps; "steps to 95%" is the step from which it stays at or
above 95% to the end of the run (none if it ends below; always predicting 0
scores (p − 1)/p, 83% for p = 6, 93% for p = 15); the final accuracy is the
mean over the last ``--window`` steps.  The FPP paper ran 300 000 steps; the default here is
fewer per setting (``--steps``) so that the whole grid fits in about ten
minutes on two cores — the table says how many were run.

    python examples/cycleworld.py --jobs 2          # the grid: 4 settings × 11 methods × 5 seeds
    python examples/cycleworld.py --quick --json    # seconds, for CI

NumPy's BLAS is held to one thread (threadpoolctl, where importable): the
products are 4 × 4.  With ``--json`` one line per (setting, method).
"""
import argparse
import contextlib
import json
import multiprocessing
import sys
import time

import matplotlib
import numpy as np
from tqdm import tqdm

import refnet
from refnet.online import KFRTRLLearner, RTRLLearner, TBPTTLearner, UOROLearner
from refnet.optim import Adagrad
from refnet.tasks.cycleworld import always_zero_accuracy, cycleworld

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

SETTINGS = {
    "p6": {"p": 6, "loss": "bce", "init": None},
    "p6-mse": {"p": 6, "loss": "mse", "init": 0.1},
    "p10": {"p": 10, "loss": "bce", "init": None},
    "p15": {"p": 15, "loss": "bce", "init": None},
}
TRUNCATIONS = tuple(range(1, 9))
METHODS = tuple(f"tbptt{T}" for T in TRUNCATIONS) + ("rtrl", "uoro", "kfrtrl")
HIDDEN, LR = 4, 0.1
FULL = {"steps": {"p6": 20_000, "p6-mse": 20_000, "p10": 30_000, "p15": 30_000}, "seeds": 5, "window": 1000}
QUICK = {"steps": {name: 150 for name in SETTINGS}, "seeds": 1, "window": 30}
# What the FPP paper (Fig. 1) and a quick PyTorch trial (REFERENCE.md) report for 6-CycleWorld.
PUBLISHED = [
    "FPP paper, Fig. 1 (6-CycleWorld, 4 tanh units, Adagrad 0.1, 300k steps, 5 runs): T-BPTT with "
    "T < 6 suffers, near the 83% of always predicting 0; FPP and T >= 6 learn.",
    "REFERENCE.md trial (PyTorch, BCE): T >= 6 reaches >= 99.9% in 2-3k steps in every seed; "
    "T = 2-5 reach 100% in 2-20k steps, T = 1 reaches 97-100% in 5-63k; stalls at 83.3% / 91.7% "
    "mainly with MSE and small init.",
]


def _learner(method, cell, head, theta, beta, seed):
    opt = Adagrad(LR)
    if method.startswith("tbptt"):
        return TBPTTLearner(cell, head, theta, beta, opt, k=int(method[5:]))
    if method == "rtrl":
        return RTRLLearner(cell, head, theta, beta, opt)
    if method == "uoro":
        return UOROLearner(cell, head, theta, beta, opt, rng=refnet.rng(1000 + seed))
    return KFRTRLLearner(cell, head, theta, beta, opt, rng=refnet.rng(1000 + seed))


def run(job):
    """One (setting, method, seed): returns the per-step correctness and the time per step."""
    setting, method, seed, steps = job
    spec = SETTINGS[setting]
    r = refnet.rng(seed)
    cell = refnet.ElmanRNN(1, HIDDEN, "tanh")
    head = refnet.Head(HIDDEN, 1, refnet.sigmoid_bce if spec["loss"] == "bce" else refnet.mse)
    theta, beta = cell.init(r), head.init(r)
    if spec["init"] is not None:
        theta = {k: r.uniform(v.shape, -spec["init"], spec["init"]) for k, v in theta.items()}
        beta = {k: r.uniform(v.shape, -spec["init"], spec["init"]) for k, v in beta.items()}
    x, y = cycleworld(spec["p"], steps, phase=seed % spec["p"])
    threshold = 0.0 if spec["loss"] == "bce" else 0.5          # σ(z) > ½ ⇔ z > 0
    learner = _learner(method, cell, head, theta, beta, seed)
    correct = np.zeros(steps, dtype=bool)
    status = "ok"
    start = time.perf_counter()
    try:
        for t in range(steps):
            prediction = learner.step(x[t], y[t]).prediction
            correct[t] = (prediction[0, 0] > threshold) == (y[t, 0, 0] > 0.5)
    except refnet.NumericalError as exc:
        status = f"numerical error at step {learner.t}: {exc}"
    seconds = time.perf_counter() - start
    return setting, method, seed, correct, seconds / max(learner.t, 1), status


def moving_accuracy(correct, window):
    """Mean of ``correct`` over the last ``window`` steps, at steps window..len (1-based)."""
    c = np.concatenate([[0], np.cumsum(correct)])
    return (c[window:] - c[:-window]) / window


def steps_to(curve, level, window):
    """The step from which the moving accuracy stays at or above ``level`` to the end (None if it ends below)."""
    below = np.flatnonzero(curve < level)
    if below.size == 0:
        return window
    return None if below[-1] == len(curve) - 1 else int(below[-1]) + 1 + window


def summarise(setting, method, runs, steps, window):
    """One result dict (a JSON line) for a (setting, method) over its seeds."""
    runs = sorted(runs, key=lambda r: r[2])
    curves = [moving_accuracy(r[3], window) for r in runs]
    return {
        "setting": setting, "p": SETTINGS[setting]["p"], "loss": SETTINGS[setting]["loss"],
        "init": SETTINGS[setting]["init"] or "pytorch", "method": method,
        "T": int(method[5:]) if method.startswith("tbptt") else None, "steps": steps, "window": window,
        "seeds": [r[2] for r in runs],
        "final_accuracy": [float(c[-1]) for c in curves],
        "steps_to_95": [steps_to(c, 0.95, window) for c in curves],
        "seeds_at_99": int(sum(c[-1] >= 0.99 for c in curves)),
        "us_per_step": float(np.median([r[4] for r in runs]) * 1e6),
        "status": [r[5] for r in runs],
        "always_zero": always_zero_accuracy(SETTINGS[setting]["p"]),
        "curve_mean": [float(v) for v in np.mean(curves, axis=0)[::max(1, window // 4)]],
    }


def _fmt_steps(values):
    reached = sorted(v for v in values if v is not None)
    if not reached:
        return "never"
    text = f"{int(np.median(reached)):>6}"
    if len(reached) < len(values):
        text += f" ({len(reached)}/{len(values)} seeds)"
    return text


def table(results):
    """The results under the published statements, one block per setting."""
    lines = [*PUBLISHED, ""]
    for setting in dict.fromkeys(r["setting"] for r in results):
        rows = [r for r in results if r["setting"] == setting]
        first = rows[0]
        lines.append(f"{setting}: p = {first['p']}, {first['loss'].upper()}, init {first['init']}, "
                     f"{first['steps']} steps, {len(first['seeds'])} seeds, accuracy over the last "
                     f"{first['window']} steps (always 0: {100 * first['always_zero']:.1f}%)")
        lines.append(f"  {'method':<8} {'final acc % mean':>16} {'min':>6} {'seeds >= 99%':>12} "
                     f"{'steps to stay >= 95% (median)':>30} {'us/step':>8}")
        for r in rows:
            acc = 100 * np.asarray(r["final_accuracy"])
            failed = sum(s != "ok" for s in r["status"])
            note = f"  {failed} seed(s) stopped: numerical error" if failed else ""
            lines.append(f"  {r['method']:<8} {acc.mean():16.1f} {acc.min():6.1f} "
                         f"{r['seeds_at_99']:>7}/{len(r['seeds'])}    {_fmt_steps(r['steps_to_95']):>30} "
                         f"{r['us_per_step']:8.0f}{note}")
        lines.append("")
    return "\n".join(lines)


def plot(results, path):
    """Per setting: mean moving accuracy of each method; steps to 95% against T."""
    settings = list(dict.fromkeys(r["setting"] for r in results))
    fig, axes = plt.subplots(2, len(settings), figsize=(4.2 * len(settings), 7), squeeze=False)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(TRUNCATIONS)))
    style = {"rtrl": ("k", "-"), "uoro": ("tab:red", "--"), "kfrtrl": ("tab:orange", ":")}
    for j, setting in enumerate(settings):
        rows = [r for r in results if r["setting"] == setting]
        top, bottom = axes[0, j], axes[1, j]
        for r in rows:
            stride = max(1, r["window"] // 4)
            t = r["window"] + stride * np.arange(len(r["curve_mean"]))
            colour, line = (colours[r["T"] - 1], "-") if r["T"] else style[r["method"]]
            top.plot(t, 100 * np.asarray(r["curve_mean"]), color=colour, ls=line, lw=1, label=r["method"])
        top.axhline(100 * rows[0]["always_zero"], color="grey", lw=0.8, ls="-.")
        top.set_title(f"{setting} (mean of {len(rows[0]['seeds'])} seeds)")
        top.set_xlabel("step")
        top.set_ylabel(f"accuracy over {rows[0]['window']} steps (%)")
        top.set_ylim(50, 101)
        for T in TRUNCATIONS:
            r = next((r for r in rows if r["T"] == T), None)
            if r is None:
                continue
            reached = [v for v in r["steps_to_95"] if v is not None]
            bottom.scatter([T] * len(reached), reached, color=colours[T - 1], s=12)
            missed = len(r["steps_to_95"]) - len(reached)
            if missed:
                bottom.scatter([T], [r["steps"]], marker="x", color="red", s=12 + 8 * missed)
        for r in rows:
            if r["T"] is None:
                reached = [v for v in r["steps_to_95"] if v is not None]
                if reached:
                    bottom.axhline(np.median(reached), color=style[r["method"]][0], ls=style[r["method"]][1],
                                   lw=1, label=f"{r['method']} (median)")
        bottom.set_yscale("log")
        bottom.set_xlabel("truncation T of TBPTT(1, T)")
        bottom.set_ylabel("steps to stay >= 95% (x: never, at the top)")
        bottom.set_xticks(TRUNCATIONS)
    axes[0, 0].legend(fontsize=6, ncol=2)
    axes[1, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _one_blas_thread():
    """NumPy's BLAS on one thread while the block runs, where threadpoolctl is importable."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _run_in_worker(job):
    with _one_blas_thread():
        return run(job)


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: 150 steps, 1 seed")
    parser.add_argument("--json", action="store_true", help="one JSON line per (setting, method)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--steps", type=int, help="steps per run in every setting (default: per setting, "
                                                  f"{FULL['steps']})")
    parser.add_argument("--seeds", type=int, help=f"runs per method (default {FULL['seeds']})")
    parser.add_argument("--window", type=int, help=f"steps of the moving accuracy (default {FULL['window']})")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--png", default="cycleworld.png", help="figure path")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    defaults = QUICK if args.quick else FULL
    steps = {s: args.steps or defaults["steps"][s] for s in args.settings}
    seeds = args.seeds or defaults["seeds"]
    window = args.window or defaults["window"]
    if min(steps.values()) <= window:
        raise SystemExit(f"--steps must exceed --window ({window}), got {min(steps.values())}")
    jobs = [(s, m, seed, steps[s]) for s in args.settings for m in args.methods for seed in range(seeds)]
    done = {}
    with tqdm(total=sum(job[3] for job in jobs), file=sys.stderr, unit="step", unit_scale=True) as bar:
        pool = multiprocessing.Pool(args.jobs) if args.jobs > 1 else None
        results_iter = pool.imap_unordered(_run_in_worker, jobs) if pool else map(_run_in_worker, jobs)
        try:
            for result in results_iter:
                done.setdefault(result[:2], []).append(result)
                bar.update(steps[result[0]])
        finally:
            if pool:
                pool.close()
                pool.join()
    results = [summarise(s, m, done[(s, m)], steps[s], window) for s in args.settings for m in args.methods]
    plot(results, args.png)
    if args.json:
        for r in results:
            print(json.dumps({k: v for k, v in r.items() if k != "curve_mean"}), flush=True)
    else:
        print(table(results))
        print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
