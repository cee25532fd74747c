"""Hopfield associative memory trained by TBPTT, RBP, CG-RBP and Neumann-RBP (Liao et al. 2018, success-rate table).

Liao et al. store ten binary MNIST digits in a continuous Hopfield network
(:class:`refnet.cells.hopfield.Hopfield`: 784 clamped input units, 1024
hidden, 784 output; a = 1, b = 0.5), the Euler step of
dh/dt = −h/a + W σ(b h) + l,

    s_t = (1 − a) s_{t−1} + W_s σ(b u_{t−1}),    u = [x, s],    W = Wᵀ, diag W = 0,

run 50 updates from h = 0, and learn W
(symmetric, zero diagonal) with Adam at 1e-3 from the L1 loss between the
output units' state and the pattern; each gradient method is truncated at K =
10, 20 or 30 steps.  A run succeeds when its final loss is at most 50% of its
initial one.  Their success rates: TBPTT 100/100/100, RBP 1/4/99, CG-RBP
100/100/100, Neumann-RBP 100/100/100 (%).

Here (:mod:`refnet.tasks.hopfield_patterns`): the first image of each class
of scikit-learn's 8×8 digits, upsampled to ``side``×``side`` and thresholded;
the input units are clamped to the *cue* — the pattern with 50% of its on
pixels switched off — and the loss asks the output units for the whole
pattern (retrieval from a partial cue); the 10 patterns form one batch.
The network is smaller than Liao et al.'s and trains for fewer Adam steps
(the full run's sizes are in FULL), so that 5 methods × 3 truncations × 10
seeds fit in 45 minutes on a shared 2-core machine.  The gradient methods, at the state
h_50 reached by the 50 updates:

- TBPTT(K): back-propagation through the last K updates
  (``refnet.sequence_vjp`` from h_{50−K} with the cotangent ∂L/∂h_50);
- RBP: Alg. 1 (``refnet.algorithms.rbp.rbp``) with at most K updates of z,
  started from U(0, 1) as Liao et al.'s code does;
- RBP (z0 = 0): the same from z = 0 — after K updates this is exactly
  Neumann-RBP(K − 1), so any gap to the row above is the (Jᵀ)^K z_0 left by
  the random start;
- CG-RBP: ``cg_rbp`` with at most K CG iterations (no damping);
- Neumann-RBP: ``neumann_rbp`` with K.

RBP and CG-RBP stop early if they reach their tolerance (rtol 1e-10) and
otherwise return the K-th iterate (``refnet.solvers.failures("warn")``: the table's
"capped" column says how often).  ρ(J) at the final equilibrium is reported
(power method) to show how contractive the trained network is.

The summary rows are written first (``--out``, JSON lines, replaced
atomically), then the table, then the figure (``--png``): the success rate
against the truncation K for every method beside the paper's, the median
final/initial loss against K, and the patterns each method retrieves (the
first seed, the largest K).  BLAS is held to one thread so a rerun prints the same numbers.

At the paper's size (``--side 28``: 784 + hidden + 784 units) one Adam step
costs about a second on one core, so a long run can be split over processes
(``--first-seed``, ``--seeds``), each appending one line per finished run to
``--runs-out``; ``--from-runs`` then summarises whatever seeds every
(method, K) finished.  ``--methods`` picks the gradient methods (the paper's
four leave out "RBP (z0 = 0)"), ``--dtype float32`` is what Liao et al.'s
PyTorch code ran in.

    python examples/hopfield_rbp.py                 # the full run (FULL below)
    python examples/hopfield_rbp.py --quick --json
    python examples/hopfield_rbp.py --side 28 --hidden 256 --dtype float32 --methods TBPTT RBP CG-RBP Neumann-RBP \
        --first-seed 0 --seeds 5 --runs-out runs.jsonl   # and --first-seed 5 in a second process
    python examples/hopfield_rbp.py --from-runs runs.jsonl --methods TBPTT RBP CG-RBP Neumann-RBP
"""
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

import refnet
from refnet.solvers import ConvergenceWarning, failures, spectral_radius
from refnet.algorithms.rbp import cg_rbp, neumann_rbp, rbp
from refnet.cells.hopfield import Hopfield
from refnet.optim import Adam
from refnet.tasks.hopfield_patterns import corrupt, digit_patterns

sys.path.insert(0, str(Path(__file__).resolve().parent))   # examples/_cli.py, however this file is started
import _cli  # noqa: E402

# Liao et al., slides' table: success rate (%) at truncation 10 / 20 / 30.
PAPER = {"TBPTT": (100, 100, 100), "RBP": (1, 4, 99), "CG-RBP": (100, 100, 100),
         "Neumann-RBP": (100, 100, 100)}
PAPER_K = (10, 20, 30)
FULL = {"side": 12, "hidden": 64, "updates": 50, "steps": 400, "seeds": 10, "truncations": (10, 20, 30)}
QUICK = {"side": 8, "hidden": 8, "updates": 8, "steps": 6, "seeds": 2, "truncations": (2, 4)}
CORRUPTION = 0.5   # Liao et al.: half of the "on" pixels switched off (--corruption)


def _tbptt(cell, theta, x, states, dh, K, draw):
    """TBPTT(K): back through the last K updates, h_{U−K} held fixed."""
    U = len(states) - 1
    xs = np.broadcast_to(x, (K,) + x.shape)
    dout = np.zeros((K,) + x.shape[:1] + (cell.n_out,), dtype=x.dtype)
    return refnet.sequence_vjp(cell, theta, xs, states[U - K], dout, dh).dtheta


def _rbp_uniform(cell, theta, x, states, dh, K, draw):
    z0 = draw(dh.shape).astype(dh.dtype, copy=False)     # the generator draws float64
    return rbp(cell, theta, x, states[-1], dh, z0=z0, maxiter=K, check_equilibrium=False).dtheta


def _rbp_zero(cell, theta, x, states, dh, K, draw):
    return rbp(cell, theta, x, states[-1], dh, maxiter=K, check_equilibrium=False).dtheta


def _cg(cell, theta, x, states, dh, K, draw):
    return cg_rbp(cell, theta, x, states[-1], dh, maxiter=K, check_equilibrium=False).dtheta


def _neumann(cell, theta, x, states, dh, K, draw):
    return neumann_rbp(cell, theta, x, states[-1], dh, K=K, check_equilibrium=False).dtheta


METHODS = {"TBPTT": _tbptt, "RBP": _rbp_uniform, "RBP (z0 = 0)": _rbp_zero, "CG-RBP": _cg,
           "Neumann-RBP": _neumann}


def forward(cell, theta, x, updates):
    """h_0 = 0, h_u = F(h_{u−1}) for u = 1..updates; returns [h_0, …, h_updates]."""
    states = [np.zeros((x.shape[0], cell.n_state), dtype=x.dtype)]
    for _ in range(updates):
        states.append(cell.step(theta, states[-1], x)[0])
    return states


def l1_loss(cell, h, patterns):
    """L = mean |output(h) − pattern| (nn.L1Loss, as Liao et al.) and ∂L/∂h."""
    r = cell.output(h) - patterns
    return float(np.abs(r).mean()), cell.output_vjp(np.sign(r) / r.size)


def train(method, K, seed, patterns, args, bar):
    """One run: Adam on U from the seed's init; returns the run's record."""
    side2 = patterns.shape[1]
    cell = Hopfield(side2, args.hidden, side2)
    dtype = np.dtype(args.dtype)       # float32: what Liao et al.'s PyTorch code ran in, and half the memory traffic
    theta = {k: v.astype(dtype, copy=False) for k, v in cell.init(refnet.rng(seed)).items()}
    patterns = patterns.astype(dtype, copy=False)
    x = corrupt(patterns, args.corruption, seed=seed).astype(dtype, copy=False)
    generator = refnet.rng(10_000 + seed)
    opt = Adam(lr=args.lr)
    state = opt.init(theta)
    losses, capped = [], 0
    for _ in range(args.steps):
        states = forward(cell, theta, x, args.updates)
        loss, dh = l1_loss(cell, states[-1], patterns)
        losses.append(loss)
        with warnings.catch_warnings(record=True) as caught, failures("warn"):
            warnings.simplefilter("always", ConvergenceWarning)
            dtheta = METHODS[method](cell, theta, x, states, dh, K, generator.uniform)
        capped += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        state = opt.update(theta, dtheta, state)
        bar.update(1)
    states = forward(cell, theta, x, args.updates)
    final, _ = l1_loss(cell, states[-1], patterns)
    rho = float(spectral_radius(cell, theta, x, states[-1], iterations=100).max())
    return {"method": method, "K": K, "seed": seed, "initial_loss": losses[0], "final_loss": final,
            "ratio": final / losses[0], "success": final <= 0.5 * losses[0],
            "capped_fraction": capped / args.steps, "rho_final": rho,
            "retrieved": (cell.output(states[-1]) >= 0.5).astype(float), "cue": x}


def summarise(runs, args):
    """One result per (method, K): success rate, ratios, beside the paper's."""
    out = []
    for method in args.methods:
        for K in args.truncations:
            group = [r for r in runs if r["method"] == method and r["K"] == K]
            paper = PAPER.get(method)
            out.append({
                "method": method, "K": K, "seeds": len(group),
                "success_rate": float(np.mean([r["success"] for r in group])),
                "median_ratio": float(np.median([r["ratio"] for r in group])),
                "ratios": [round(r["ratio"], 4) for r in group],
                "capped_fraction": float(np.mean([r["capped_fraction"] for r in group])),
                "rho_final_median": float(np.median([r["rho_final"] for r in group])),
                "paper_success_rate": (paper[PAPER_K.index(K)] / 100 if paper is not None and K in PAPER_K
                                       else None),   # only beside the truncation the paper ran
                "config": {k: getattr(args, k) for k in ("side", "hidden", "updates", "steps", "lr", "corruption",
                                                         "dtype")},
            })
    return out


def _rate(result):
    return f"{100 * result['success_rate']:.0f}% ({result['median_ratio']:.2f})"


def table(results, args, seconds):
    """Success rate (median final/initial loss) per method and truncation, beside the paper's."""
    Ks = args.truncations
    N = 2 * args.side ** 2 + args.hidden
    lines = [
        f"Hopfield associative memory: 10 patterns {args.side}×{args.side}, cue = {args.corruption:.0%} of on "
        f"pixels off; "
        f"N = {N} units ({args.side ** 2} clamped, {args.hidden} hidden, {args.side ** 2} output); "
        f"{args.updates} updates; Adam lr {args.lr:g}, {args.steps} steps; {args.seeds} seeds; "
        f"{f'{seconds:.0f} s' if seconds == seconds else 'time not recorded in --from-runs'}; "
        f"{_cli.blas_threads_note()}",
        "success rate = final loss <= 50% of initial (median final/initial loss in brackets)",
        f"{'method':<14}" + "".join(f"{'K = ' + str(K):>16}" for K in Ks) + f"   {'paper K = 10/20/30':<20}"
        + "".join(f"{'capped K=' + str(K):>12}" for K in Ks) + f"{'median ρ(J)':>13}",
    ]
    for method in args.methods:
        rows = [r for r in results if r["method"] == method]
        paper = PAPER.get(method)
        cells = "".join(f"{_rate(r):>16}" for r in rows)
        paper_text = "/".join(str(v) for v in paper) + " %" if paper else "-"
        capped = "".join(f"{100 * r['capped_fraction']:>11.0f}%" for r in rows)
        rho = np.median([r["rho_final_median"] for r in rows])
        lines.append(f"{method:<14}{cells}   {paper_text:<20}{capped}{rho:>13.3f}")
    lines.append("capped: share of training steps where RBP / CG-RBP stopped at K iterations short of "
                 "rtol 1e-10; ρ(J): spectral radius at the final equilibrium, median over seeds and K")
    return "\n".join(lines)


def plot(runs, results, args, path):
    """Success rate and median loss ratio against K (top); cue, pattern and each method's retrieval (below)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    K = max(args.truncations)
    first = min(r["seed"] for r in runs)
    chosen = {r["method"]: r for r in runs if r["seed"] == first and r["K"] == K}
    patterns = digit_patterns(args.side)
    rows = [("cue", chosen[args.methods[0]]["cue"]), ("pattern", patterns)]
    for m in args.methods:
        verdict = "ok" if chosen[m]["success"] else "fail"
        rows.append((f"{m}: {verdict}, loss ×{chosen[m]['ratio']:.2f}", chosen[m]["retrieved"]))
    fig = plt.figure(figsize=(12, 12))
    outer = fig.add_gridspec(2, 1, height_ratios=(1, 1.5), hspace=0.25)
    top = outer[0].subgridspec(1, 2, wspace=0.3)
    rate, ratio = fig.add_subplot(top[0]), fig.add_subplot(top[1])
    Ks = list(args.truncations)
    spread = 0.012 * (max(Ks) - min(Ks) or 1)     # methods side by side, so equal rates stay visible
    for i, (m, marker) in enumerate(zip(args.methods, "osD^v")):
        mine = [r for r in results if r["method"] == m]
        shifted = [k + (i - 2) * spread for k in Ks]
        rate.plot(shifted, [100 * r["success_rate"] for r in mine], marker + "-", color=f"C{i}", label=m)
        ratio.plot(shifted, [r["median_ratio"] for r in mine], marker + "-", color=f"C{i}", label=m)
        paper = [(k, r["paper_success_rate"]) for k, r in zip(Ks, mine) if r["paper_success_rate"] is not None]
        if paper:
            rate.plot(*zip(*[(k, 100 * p) for k, p in paper]), "x--", color=f"C{i}", alpha=0.6, ms=9)
    rate.plot([], [], "kx--", alpha=0.6, label="Liao et al. (K = 10/20/30)")
    rate.set(xlabel="truncation K", ylabel="success rate (%)", ylim=(-5, 105), xticks=Ks,
             title=f"success: final loss <= 50% of initial ({args.seeds} seeds)")
    ratio.axhline(0.5, color="grey", ls=":", lw=1)
    ratio.set(xlabel="truncation K", ylabel="final / initial loss (median over seeds)", xticks=Ks,
              title="loss reduction")
    handles, labels = rate.get_legend_handles_labels()    # one legend for both panels, outside the data
    ratio.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    images = outer[1].subgridspec(len(rows), 10, wspace=0.05, hspace=0.3)
    for i, (title, pictures) in enumerate(rows):
        for j in range(10):
            ax = fig.add_subplot(images[i, j])
            ax.imshow(pictures[j].reshape(args.side, args.side), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_title(title, fontsize=8, loc="left")
    fig.suptitle(f"Hopfield memory, {args.side}×{args.side} patterns, {args.hidden} hidden units: success "
                 f"against truncation; retrieval from {args.corruption:.0%}-corrupted cues (seed {first}, K = {K})",
                 fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.8, top=0.94, bottom=0.03)
    fig.savefig(path, dpi=100)


def _parser():
    parser = _cli.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: tiny network, few steps, 2 seeds")
    parser.add_argument("--json", action="store_true", help="one JSON line per (method, truncation)")
    parser.add_argument("--side", type=_cli.positive_int, help=f"pattern side (default {FULL['side']})")
    parser.add_argument("--hidden", type=_cli.positive_int, help=f"hidden units (default {FULL['hidden']})")
    parser.add_argument("--updates", type=_cli.positive_int,
                        help=f"network updates per forward (default {FULL['updates']})")
    parser.add_argument("--steps", type=_cli.positive_int, help=f"Adam steps per run (default {FULL['steps']})")
    parser.add_argument("--seeds", type=_cli.positive_int,
                        help=f"how many seeds, from --first-seed on (default {FULL['seeds']})")
    parser.add_argument("--first-seed", type=_cli.seed, default=0,
                        help="the first seed (default 0): split a long run over processes, each with --runs-out")
    parser.add_argument("--truncations", type=_cli.positive_int, nargs="+",
                        help="K values, each <= --updates (default 10 20 30)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                        help="gradient methods, in the table's order (default: all five)")
    parser.add_argument("--lr", type=_cli.positive_float, default=1e-3, help="Adam's learning rate (default 0.001)")
    parser.add_argument("--corruption", type=_cli.probability, default=CORRUPTION,
                        help=f"share of the on pixels switched off in the cue (default {CORRUPTION})")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="weights, states and patterns (default float64; Liao et al. ran PyTorch's float32)")
    parser.add_argument("--runs-out", help="also append one JSON line per finished run (method, K, seed) here, "
                                           "so a long run that is stopped keeps what it finished")
    parser.add_argument("--from-runs", metavar="RUNS", help="only summarise the runs in RUNS (a --runs-out file) "
                                                            "for --methods and --truncations; no figure")
    parser.add_argument("--out", default="hopfield_rbp_results.jsonl", help="one JSON line per (method, K)")
    parser.add_argument("--png", default="hopfield_rbp.png", help="figure: success rate against K, retrievals")
    return parser


def parse_args(argv=None):
    """The command line with the defaults of --quick or the full run filled in; usage errors exit with status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.truncations = tuple(sorted(_cli.check_grid(parser, "--truncations", args.truncations)))
    args.methods = _cli.check_grid(parser, "--methods", args.methods)
    if max(args.truncations) > args.updates:
        parser.error(f"argument --truncations: expected values <= --updates ({args.updates}), "
                     f"got {list(args.truncations)}")
    return args


RUN_FIELDS = ("method", "K", "seed", "initial_loss", "final_loss", "ratio", "success", "capped_fraction",
              "rho_final")


def _from_runs(args):
    """The runs of a --runs-out file for --methods × --truncations, every seed found; the args' sizes from them."""
    rows = [json.loads(line) for line in open(args.from_runs, encoding="utf-8") if line.strip()]
    runs = [r for r in rows if r["method"] in args.methods and r["K"] in args.truncations]
    if not runs:
        raise ValueError(f"no run of methods {args.methods} at K = {list(args.truncations)} in {args.from_runs!r}")
    for key, value in runs[0]["config"].items():
        setattr(args, key, value)
    counts = {(m, K): sum(r["method"] == m and r["K"] == K for r in runs)
              for m in args.methods for K in args.truncations}
    args.seeds = min(counts.values())
    if args.seeds == 0:
        raise ValueError(f"no run for {[k for k, n in counts.items() if n == 0]} in {args.from_runs!r}")
    seeds = sorted({r["seed"] for r in runs})[:args.seeds]   # the same seeds for every (method, K)
    return [r for r in runs if r["seed"] in seeds]


def main(argv=None):
    args = parse_args(argv)
    if args.from_runs:
        try:
            runs = _from_runs(args)
        except (OSError, ValueError, KeyError) as exc:
            print(f"hopfield_rbp.py: error: cannot read the runs in {args.from_runs!r}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 2
        results = summarise(runs, args)
        _cli.write_json_lines(args.out, results)
        if args.json:
            for row in results:
                print(json.dumps(row))
        else:
            print(table(results, args, float("nan")))
            print(f"results: {args.out} ({args.seeds} seeds from {args.from_runs})")
        return 0
    patterns = digit_patterns(args.side)
    started = time.perf_counter()
    runs = []
    total = len(args.methods) * len(args.truncations) * args.seeds * args.steps
    config = {k: getattr(args, k) for k in ("side", "hidden", "updates", "steps", "lr", "corruption", "dtype")}
    with _cli.pinned_blas(), tqdm(total=total, file=sys.stderr, unit="step") as bar:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for K in args.truncations:
                for method in args.methods:
                    bar.set_description(f"seed {seed} K={K} {method}")
                    runs.append(train(method, K, seed, patterns, args, bar))
                    if args.runs_out:
                        with open(args.runs_out, "a", encoding="utf-8") as f:
                            f.write(json.dumps({**{k: runs[-1][k] for k in RUN_FIELDS}, "config": config}) + "\n")
    results = summarise(runs, args)
    _cli.write_json_lines(args.out, results)
    if args.json:
        for row in results:
            print(json.dumps(row))
    else:
        print(table(results, args, time.perf_counter() - started))
        print(f"results: {args.out}")
    if not _cli.save_figure(plot, args.png, runs, results, args):
        return 1
    if not args.json:
        print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
