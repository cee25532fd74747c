"""p-CycleWorld (Tanner & Sutton 2005; the FPP paper's Fig. 1): FPP against online TBPTT(1, T), RTRL, UORO, KF-RTRL.

An Elman RNN (4 tanh units) reads the CycleWorld bit stream one step at a
time and predicts the next bit through a linear head; every step it learns
with Adagrad (lr 0.1) by one of (:mod:`refnet.online`):

- ``fpp1`` … ``fpp10``: FPP (Algorithm 1) with n = 1..10 updates per step on
  transitions replayed from a buffer of the last N (``--buffer``, default 100);
- ``tbptt1`` … ``tbptt10``: TBPTT(1, T), the last T steps re-run and back-propagated;
- ``rtrl``: exact RTRL; ``uoro`` and ``kfrtrl``: its unbiased approximations;
  ``snap1`` (SnAp-1) and ``rflo`` (RFLO, readout transpose, on the same
  network written as a leaky RNN with α = 1): its biased, O(P) ones.

One FPP update (Nath, Jafferjee & White, Algorithm 1) samples a stored
transition (s_{T−1}, o_T, o_{T+1}, s_{T+1}, y_T) and descends

    s_T = f_W(s_{T−1}, o_T),   L = MSE(f_W(s_T, o_{T+1}), s_{T+1}) + CE(g_β(s_T), y_T)

in W (β by the target term only), then writes f_W(s_T, o_{T+1}) back as
s_{T+1}.  The paper's setting (App. C.1): 4 hidden units, Adagrad 0.1,
300 000 steps, 5 runs; its claim (§3, Fig. 1): T-BPTT with T < 6 "suffers
considerably" while FPP learns with n = 1; always predicting 0 scores 83%.

FPP with n updates and TBPTT with truncation T make n and T one-step
gradient computations per step, the paper's "equal computation" pairing
(Fig. 1a/b); an FPP update back-propagates through two steps of f (the
state loss reaches W through s'_{T+1} and s_T), so the measured time per
step is in the table too.

Four settings (``--settings``), 5 seeds each; a seed fixes the initial
weights, the phase of the cycle and the random draws, and all methods of a
seed start from the same weights on the same stream:

- ``p6``: 6-CycleWorld, sigmoid + binary cross-entropy, PyTorch's init — the FPP paper's setting;
- ``p6-mse``: 6-CycleWorld, linear output + squared error, every weight U(−0.1, 0.1)
  (the setting where truncation is most likely to stall: small weights, no squashing output);
- ``p10``, ``p15``: longer cycles, BCE, PyTorch's init: short T no longer spans a cycle.

A prediction is right when the sigmoid's output (BCE) or the linear output
(MSE) is on the target's side of ½.  The accuracy is a moving mean over
``--window`` steps; "steps to 95%" is the step from which it stays at or
above 95% to the end of the run (none if it ends below; always predicting 0
scores (p − 1)/p, 83% for p = 6, 93% for p = 15); the final accuracy is the
mean over the last ``--window`` steps.

Three studies, each a grid run by :func:`refnet.sweep.run_sweep` (joblib:
``--jobs`` local processes, or a Dask cluster with ``--scheduler ADDRESS``),
every run one line of ``--out`` (JSON lines), which the table and the figure read:

- the comparison: settings × methods × seeds (Fig. 1a/b);
- the sensitivity heat map of FPP: buffer size N × n at ``--heat-setting`` (Fig. 1c);
- ``--long STEPS``: one FPP run of STEPS steps (the paper ran 300 000), sampling the
  process's resident memory (and with ``--trace-heap`` the Python heap, tracemalloc)
  every 10% and checking for NaN.

    python examples/cycleworld.py --jobs 2          # the grid and the heat map
    python examples/cycleworld.py --long 300000     # the long run alone
    python examples/cycleworld.py --quick --json    # seconds, for CI

NumPy's BLAS is held to one thread (threadpoolctl): the products are 4 × 4,
and one thread makes a rerun print the same numbers.  The sweep writes
``--out`` row by row into a temporary file that replaces the old results only
when the whole grid has finished (a failed run leaves the rows it finished in
``OUT.partial``); the long run's row goes to ``--long-out``.  Then the table
(or with ``--json`` one line per (setting, method) and heat-map cell), then
the figures: ``--png`` shows, per setting, the steps to stay at 95% against
the budget (FPP's n, TBPTT's T) with every seed, the exact and approximate
RTRL as lines, and the accuracy curves of a few methods; the heat map of
FPP's N × n goes to the same name with ``_heat`` added.
"""
import json
import math
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from tqdm import tqdm

import refnet
from refnet.online import (FPPLearner, KFRTRLLearner, RFLOLearner, RTRLLearner, SnApLearner, TBPTTLearner,
                           UOROLearner)
from refnet.optim import Adagrad
from refnet.sweep import grid, read_results, run_sweep
from refnet.tasks.cycleworld import always_zero_accuracy, cycleworld

sys.path.insert(0, str(Path(__file__).resolve().parent))   # examples/_cli.py, however this file is started
import _cli  # noqa: E402

SETTINGS = {
    "p6": {"p": 6, "loss": "bce", "init": None},
    "p6-mse": {"p": 6, "loss": "mse", "init": 0.1},
    "p10": {"p": 10, "loss": "bce", "init": None},
    "p15": {"p": 15, "loss": "bce", "init": None},
}
BUDGETS = tuple(range(1, 11))   # n for FPP, T for TBPTT
METHODS = (tuple(f"fpp{n}" for n in BUDGETS) + tuple(f"tbptt{T}" for T in BUDGETS)
           + ("rtrl", "uoro", "kfrtrl", "snap1", "rflo"))
HIDDEN, LR = 4, 0.1
FULL = {"steps": 4_000, "seeds": 5, "window": 1000, "buffer": 100,
        "methods": tuple(f"fpp{n}" for n in (1, 2, 3, 4, 5, 6, 8, 10)) + METHODS[len(BUDGETS):],
        "heat_N": (10, 100, 1000), "heat_n": (1, 3, 10), "heat_steps": 4_000}
QUICK = {"steps": 100, "seeds": 1, "window": 20, "buffer": 20, "methods": METHODS,
         "heat_N": (5, 20), "heat_n": (1, 2), "heat_steps": 60}
# What the FPP paper (Nath, Jafferjee & White, Fig. 1 and App. C.1) reports for 6-CycleWorld.
PUBLISHED = [
    "FPP paper, Fig. 1 (6-CycleWorld, 4 tanh units, Adagrad 0.1, 300k steps, 5 runs): T-BPTT with "
    "T < 6 suffers, near the 83% of always predicting 0; FPP learns even with n = 1; FPP as fast as 6-BPTT; "
    "Fig. 1c: no clear best buffer size, FPP 'reasonably well' over a wide range of N and n.",
]


def _budget(method):
    """n or T of an fpp/tbptt method, else None."""
    for prefix in ("fpp", "tbptt"):
        if method.startswith(prefix):
            return int(method[len(prefix):])
    return None


def _learner(method, cell, head, theta, beta, seed, buffer):
    opt = Adagrad(LR)
    if method.startswith("fpp"):
        return FPPLearner(cell, head, theta, beta, opt, rng=refnet.rng(1000 + seed), n=_budget(method),
                          buffer_size=buffer)
    if method.startswith("tbptt"):
        return TBPTTLearner(cell, head, theta, beta, opt, k=_budget(method))
    if method == "rtrl":
        return RTRLLearner(cell, head, theta, beta, opt)
    if method == "uoro":
        return UOROLearner(cell, head, theta, beta, opt, rng=refnet.rng(1000 + seed))
    if method == "snap1":
        return SnApLearner(cell, head, theta, beta, opt, n=1)
    if method == "rflo":   # RFLO needs the leaky form; α = 1 is the same Elman network, same θ
        leaky = refnet.LeakyRNN(cell.input_size, cell.hidden_size, alpha=1.0, nonlinearity=cell.nonlinearity)
        return RFLOLearner(leaky, head, theta, beta, opt)
    return KFRTRLLearner(cell, head, theta, beta, opt, rng=refnet.rng(1000 + seed))


def _problem(setting, seed, steps):
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
    return cell, head, theta, beta, x, y, threshold


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


def run(setting, method, seed, steps, window, buffer):
    """One (setting, method, seed) run: final accuracy, steps to 95%, time per step, a coarse curve."""
    with _cli.pinned_blas():
        cell, head, theta, beta, x, y, threshold = _problem(setting, seed, steps)
        learner = _learner(method, cell, head, theta, beta, seed, buffer)
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
    curve = moving_accuracy(correct, window)
    return {"final_accuracy": float(curve[-1]), "steps_to_95": steps_to(curve, 0.95, window),
            "us_per_step": seconds / max(learner.t, 1) * 1e6, "status": status,
            "curve": [float(v) for v in curve[::max(1, window // 4)]]}


def long_run(setting, n, buffer, steps, seed=0, samples=10, trace_heap=False):
    """One FPP run of ``steps`` steps, sampling memory every steps/``samples``; raises on NaN.

    The resident set size is read at every sample; with ``trace_heap`` the
    Python heap is traced too (tracemalloc, which slows every allocation).
    """
    cell, head, theta, beta, x, y, threshold = _problem(setting, seed, steps)
    learner = _learner(f"fpp{n}", cell, head, theta, beta, seed, buffer)
    correct = np.zeros(steps, dtype=bool)
    memory = []
    if trace_heap:
        tracemalloc.start()
    start = time.perf_counter()
    with _cli.pinned_blas(), tqdm(total=steps, file=sys.stderr, unit="step", unit_scale=True,
                                  desc="long run") as bar:
        for t in range(steps):
            step = learner.step(x[t], y[t])
            if not math.isfinite(step.loss):
                raise refnet.NumericalError(f"loss {step.loss} at step {t + 1}", where=f"step {t + 1}")
            correct[t] = (step.prediction[0, 0] > threshold) == (y[t, 0, 0] > 0.5)
            if (t + 1) % (steps // samples) == 0:
                heap = tracemalloc.get_traced_memory()[0] // 1024 if trace_heap else None
                memory.append({"step": t + 1, "rss_kb": _rss_kb(), "heap_kb": heap})
                bar.update(steps // samples)
    seconds = time.perf_counter() - start
    if trace_heap:
        tracemalloc.stop()
    finite = bool(np.isfinite(learner.w).all() and np.isfinite(learner.buffer.S).all())
    window = min(10_000, steps // 2)
    curve = moving_accuracy(correct, window)
    return {"study": "long", "setting": setting, "method": f"fpp{n}", "buffer": buffer, "steps": steps,
            "seed": seed, "final_accuracy": float(curve[-1]), "window": window,
            "steps_to_95": steps_to(curve, 0.95, window), "us_per_step": seconds / steps * 1e6,
            "params_finite": finite, "memory": memory}


def _rss_kb():
    """Resident set size now (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def summarise(rows):
    """One dict per (study, setting, method, buffer) over its seeds, from the sweep's rows."""
    groups = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        groups.setdefault((r["study"], r["setting"], r["method"], r["buffer"]), []).append(r)
    out = []
    for (study, setting, method, buffer), runs in groups.items():
        out.append({
            "study": study, "setting": setting, "p": SETTINGS[setting]["p"], "loss": SETTINGS[setting]["loss"],
            "init": SETTINGS[setting]["init"] or "pytorch", "method": method, "budget": _budget(method),
            "buffer": buffer if method.startswith("fpp") else None, "steps": runs[0]["steps"],
            "window": runs[0]["window"], "seeds": [r["seed"] for r in runs],
            "final_accuracy": [r["final_accuracy"] for r in runs],
            "steps_to_95": [r["steps_to_95"] for r in runs],
            "seeds_at_99": int(sum(r["final_accuracy"] >= 0.99 for r in runs)),
            "us_per_step": float(np.median([r["us_per_step"] for r in runs])),
            "status": [r["status"] for r in runs], "always_zero": always_zero_accuracy(SETTINGS[setting]["p"]),
            "curve_mean": [float(v) for v in np.mean([r["curve"] for r in runs], axis=0)],
        })
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(out, key=lambda r: (r["study"], list(SETTINGS).index(r["setting"]), order[r["method"]],
                                      r["buffer"] or 0))


def _fmt_steps(values):
    reached = sorted(v for v in values if v is not None)
    if not reached:
        return "never"
    text = f"{int(np.median(reached)):>6}"
    if len(reached) < len(values):
        text += f" ({len(reached)}/{len(values)} seeds)"
    return text


def table(results):
    """The results under the published statements: one block per setting, then the heat map."""
    lines = [*PUBLISHED, ""]
    compare = [r for r in results if r["study"] == "compare"]
    for setting in dict.fromkeys(r["setting"] for r in compare):
        rows = [r for r in compare if r["setting"] == setting]
        first = rows[0]
        lines.append(f"{setting}: p = {first['p']}, {first['loss'].upper()}, init {first['init']}, "
                     f"{first['steps']} steps, {len(first['seeds'])} seeds, accuracy over the last "
                     f"{first['window']} steps (always 0: {100 * first['always_zero']:.1f}%); FPP buffer N = "
                     f"{next((r['buffer'] for r in rows if r['buffer']), '-')}")
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
    heat = [r for r in results if r["study"] == "heat"]
    if heat:
        Ns, ns = sorted({r["buffer"] for r in heat}), sorted({r["budget"] for r in heat})
        acc = {(r["buffer"], r["budget"]): 100 * np.mean(r["final_accuracy"]) for r in heat}
        lines.append(f"FPP sensitivity ({heat[0]['setting']}, {heat[0]['steps']} steps, {len(heat[0]['seeds'])} "
                     f"seeds): mean final accuracy % over the last {heat[0]['window']} steps")
        lines.append("  " + "N \\ n".rjust(8) + "".join(f"{n:>8}" for n in ns))
        for N in Ns:
            lines.append("  " + f"{N:>8}" + "".join(f"{acc[(N, n)]:8.1f}" for n in ns))
        lines.append("")
    return "\n".join(lines)


def heat_path(png):
    """Where the heat map goes: ``--png`` with ``_heat`` before the suffix."""
    path = Path(png)
    return str(path.with_name(f"{path.stem}_heat{path.suffix}"))


def _curve_methods(rows):
    """The methods whose accuracy curves are drawn: the smallest and largest n and T, T = p, and every other."""
    budgets = {prefix: sorted(r["budget"] for r in rows if r["method"].startswith(prefix))
               for prefix in ("fpp", "tbptt")}
    p = rows[0]["p"]
    keep = {f"fpp{b[0]}" for b in [budgets["fpp"]] if b} | {f"fpp{b[-1]}" for b in [budgets["fpp"]] if b}
    keep |= {f"tbptt{b[0]}" for b in [budgets["tbptt"]] if b} | {f"tbptt{b[-1]}" for b in [budgets["tbptt"]] if b}
    keep |= {f"tbptt{p}"} if p in budgets["tbptt"] else set()
    return [r for r in rows if r["method"] in keep or r["budget"] is None]


def plot(results, path):
    """Top: steps to stay >= 95% against the budget, per setting; bottom: a few accuracy curves.

    Then the heat map of FPP's final accuracy over N and n, in its own file (:func:`heat_path`).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compare = [r for r in results if r["study"] == "compare"]
    heat = [r for r in results if r["study"] == "heat"]
    settings = list(dict.fromkeys(r["setting"] for r in compare))
    if settings:
        _plot_compare(plt, compare, settings, path)
    if heat:
        _plot_heat(plt, heat, heat_path(path) if settings else path)


def _plot_compare(plt, compare, settings, path):
    cols = len(settings)
    # at least 7 inches wide, so one setting's figure still has room for the title
    fig, axes = plt.subplots(2, cols, figsize=(max(7.0, 3.6 * cols + 0.8), 7.6), squeeze=False)
    colour = {"fpp": "tab:blue", "tbptt": "tab:orange"}
    others = sorted({r["method"] for r in compare if r["budget"] is None}, key=METHODS.index)
    other_colour = {m: c for m, c in zip(others, ("k", "tab:red", "tab:purple", "tab:green", "tab:brown",
                                                   "tab:pink", "tab:olive", "tab:cyan"))}
    for j, setting in enumerate(settings):
        rows = [r for r in compare if r["setting"] == setting]
        top, bottom = axes[0, j], axes[1, j]
        horizon = rows[0]["steps"]
        for prefix, dx in (("fpp", -0.12), ("tbptt", 0.12)):
            mine = sorted((r for r in rows if r["method"].startswith(prefix)), key=lambda r: r["budget"])
            if not mine:
                continue
            medians = []
            for r in mine:
                reached = [v for v in r["steps_to_95"] if v is not None]
                missed = len(r["steps_to_95"]) - len(reached)
                top.scatter([r["budget"] + dx] * len(reached), reached, color=colour[prefix], s=9, alpha=0.6)
                if missed:
                    top.scatter([r["budget"] + dx], [horizon], marker="x", color=colour[prefix], s=12 + 10 * missed)
                values = sorted(v if v is not None else math.inf for v in r["steps_to_95"])
                median = values[(len(values) - 1) // 2]
                medians.append(horizon if median == math.inf else median)
            label = "FPP n" if prefix == "fpp" else "TBPTT(1, T)"
            top.plot([r["budget"] + dx for r in mine], medians, "-", color=colour[prefix], lw=1.5, label=label)
        for m in others:
            r = next((r for r in rows if r["method"] == m), None)
            if r is None:
                continue
            values = sorted(horizon if v is None else v for v in r["steps_to_95"])
            median = values[(len(values) - 1) // 2]          # a seed that never reached counts as the horizon
            top.axhline(median, color=other_colour[m], ls="--", lw=1,
                        label=m if median < horizon else f"{m} (median: never)")
        top.axhline(horizon, color="grey", lw=0.6, ls=":")
        top.set_yscale("log")
        top.set_title(f"{setting}: steps to stay >= 95%")
        top.set_xlabel("budget per step: FPP n, TBPTT T")
        top.set_xticks(sorted({r["budget"] for r in rows if r["budget"]}))
        top.tick_params(axis="x", labelsize=8)
        if j == 0:
            top.set_ylabel(f"steps (x at {horizon}: never)")
        for r in _curve_methods(rows):
            stride = max(1, r["window"] // 4)
            t = r["window"] + stride * np.arange(len(r["curve_mean"]))
            if r["budget"]:
                shade = 0.45 + 0.55 * r["budget"] / max(BUDGETS)
                c = plt.cm.Blues(shade) if r["method"].startswith("fpp") else plt.cm.Oranges(shade)
                style = "-"
            else:
                c, style = other_colour[r["method"]], "--"
            bottom.plot(t, 100 * np.asarray(r["curve_mean"]), color=c, ls=style, lw=1.2, label=r["method"])
        bottom.axhline(100 * rows[0]["always_zero"], color="grey", lw=0.8, ls="-.")
        bottom.set_ylim(50, 101)
        bottom.set_xlabel("step")
        bottom.set_title(f"{setting}: accuracy, mean of {len(rows[0]['seeds'])} seeds", fontsize=10)
        if j == 0:
            bottom.set_ylabel(f"accuracy over {rows[0]['window']} steps (%)")
        bottom.legend(fontsize=7, loc="lower right", ncol=2)
    axes[0, 0].legend(fontsize=8, loc="best")
    fig.suptitle("p-CycleWorld (the FPP paper's Fig. 1a/b): dots are seeds, lines medians; dash-dot: always 0",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_heat(plt, heat, path):
    Ns, ns = sorted({r["buffer"] for r in heat}), sorted({r["budget"] for r in heat})
    acc = np.array([[100 * np.mean(next(r["final_accuracy"] for r in heat if r["buffer"] == N
                                        and r["budget"] == n)) for n in ns] for N in Ns])
    fig, ax = plt.subplots(figsize=(5.2, 4))
    image = ax.imshow(acc, origin="lower", cmap="viridis", vmin=50, vmax=100, aspect="auto")
    for i in range(len(Ns)):
        for j in range(len(ns)):
            ax.text(j, i, f"{acc[i, j]:.1f}", ha="center", va="center", color="w", fontsize=9)
    ax.set_xticks(range(len(ns)), [str(n) for n in ns])
    ax.set_yticks(range(len(Ns)), [str(N) for N in Ns])
    ax.set_xlabel("FPP updates per step n")
    ax.set_ylabel("buffer size N")
    ax.set_title(f"FPP final accuracy %, {heat[0]['setting']}, {heat[0]['steps']} steps (Fig. 1c)", fontsize=10)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parser():
    parser = _cli.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: 100 steps, 1 seed, a 2 x 2 heat map")
    parser.add_argument("--json", action="store_true", help="one JSON line per (setting, method) and heat-map cell")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", choices=METHODS,
                        help="default: all but fpp7 and fpp9 (all with --quick), to fit the time")
    parser.add_argument("--steps", type=_cli.positive_int, help=f"steps per comparison run (default {FULL['steps']})")
    parser.add_argument("--seeds", type=_cli.positive_int, help=f"runs per method (default {FULL['seeds']})")
    parser.add_argument("--window", type=_cli.positive_int,
                        help=f"steps of the moving accuracy (default {FULL['window']})")
    parser.add_argument("--buffer", type=_cli.positive_int,
                        help=f"FPP's buffer size N in the comparison (default {FULL['buffer']})")
    parser.add_argument("--heat-setting", choices=list(SETTINGS), default="p6", help="setting of the heat map")
    parser.add_argument("--heat-steps", type=_cli.positive_int,
                        help=f"steps per heat-map run (default {FULL['heat_steps']})")
    parser.add_argument("--no-heat", action="store_true", help="skip the heat map")
    parser.add_argument("--no-compare", action="store_true", help="skip the comparison")
    parser.add_argument("--long", type=_cli.positive_int, metavar="STEPS",
                        help="the long FPP run alone, STEPS steps (>= 10)")
    parser.add_argument("--long-n", type=_cli.positive_int, default=1, help="n of the long run (default 1)")
    parser.add_argument("--trace-heap", action="store_true", help="trace the Python heap in the long run (slower)")
    parser.add_argument("--jobs", type=_cli.positive_int, default=1,
                        help="local worker processes through joblib (default 1)")
    parser.add_argument("--scheduler", help="address of a Dask scheduler: run the grid on that cluster")
    parser.add_argument("--out", default="cycleworld_runs.jsonl", help="the sweep's results, JSON lines")
    parser.add_argument("--long-out", default="cycleworld_long.jsonl", help="the long run's result, JSON lines")
    parser.add_argument("--from-results", action="store_true", help="only read --out and redo the table and figure")
    parser.add_argument("--png", default="cycleworld.png",
                        help="figure path (the heat map goes to the same name with _heat added)")
    return parser


def parse_args(argv=None):
    """The command line, checked; usage errors exit with status 2 naming the argument."""
    parser = _parser()
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key in ("steps", "seeds", "window", "buffer", "heat_steps"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    args.methods = _cli.check_grid(parser, "--methods", args.methods or list(defaults["methods"]))
    args.settings = _cli.check_grid(parser, "--settings", args.settings)
    if args.long is not None and args.long < 10:
        parser.error(f"argument --long: expected at least 10 steps (memory is sampled every 10%), got {args.long}")
    if not (args.long or args.from_results):
        if args.no_compare and args.no_heat:
            parser.error("argument --no-heat: with --no-compare nothing is left to run")
        for option, steps in (("--steps", None if args.no_compare else args.steps),
                              ("--heat-steps", None if args.no_heat else args.heat_steps)):
            if steps is not None and steps <= args.window:
                parser.error(f"argument {option}: expected more steps than --window ({args.window}), got {steps}")
    return args


def _points(args, defaults):
    """The grid of (study, setting, method, seed, ...) points the command line asks for."""
    seeds = range(args.seeds)
    points = []
    if not args.no_compare:
        points += grid(study=["compare"], setting=args.settings, method=args.methods, seed=seeds,
                       steps=[args.steps], window=[args.window], buffer=[args.buffer])
    if not args.no_heat:
        points += grid(study=["heat"], setting=[args.heat_setting],
                       method=[f"fpp{n}" for n in defaults["heat_n"]], seed=seeds, steps=[args.heat_steps],
                       window=[args.window], buffer=list(defaults["heat_N"]))
    return points


def _sweep_run(study, **point):
    return run(**point)


def main(argv=None):
    args = parse_args(argv)
    defaults = QUICK if args.quick else FULL
    if args.long:
        result = long_run(args.heat_setting, args.long_n, args.buffer, args.long, trace_heap=args.trace_heap)
        _cli.write_json_lines(args.long_out, [result])
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            rss, heap = [m["rss_kb"] for m in result["memory"]], [m["heap_kb"] for m in result["memory"]]
            print(f"long run: {result['method']}, N = {result['buffer']}, {result['setting']}, {result['steps']} steps, "
                  f"{result['us_per_step']:.0f} us/step; final accuracy (last {result['window']} steps) "
                  f"{100 * result['final_accuracy']:.1f}%, steps to stay >= 95%: {result['steps_to_95']}; "
                  f"parameters and buffer finite: {result['params_finite']}; {_cli.blas_threads_note()}")
            print(f"  RSS kB at each 10%: {rss}\n  traced Python heap kB: {heap}\nresult: {args.long_out}")
        return 0
    if not args.from_results:
        points = _points(args, defaults)
        with tqdm(total=sum(p["steps"] * max(1, _budget(p["method"]) or 1) for p in points), file=sys.stderr,
                  unit="grad-step", unit_scale=True) as bar, _cli.atomic_path(args.out, keep_partial=True) as tmp:
            run_sweep(_sweep_run, points, tmp, n_jobs=args.jobs, scheduler=args.scheduler,
                      progress=lambda row: bar.update(row["steps"] * max(1, _budget(row["method"]) or 1)))
    try:
        results = summarise(read_results(args.out))
    except (OSError, ValueError, KeyError) as exc:
        print(f"cycleworld.py: error: cannot read the results in {args.out!r}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    if args.json:
        for r in results:
            print(json.dumps({k: v for k, v in r.items() if k != "curve_mean"}), flush=True)
    else:
        print(table(results))
        print(f"results: {args.out}")
    if not _cli.save_figure(plot, args.png, results):
        return 1
    if not args.json:
        heat = any(r["study"] == "heat" for r in results) and any(r["study"] == "compare" for r in results)
        print(f"figure: {args.png}" + (f", heat map: {heat_path(args.png)}" if heat else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
