"""Case ``ernn``: training speed of ERNN (K = 1, 2) against FastRNN and an LSTM on 2-D random walks.

The ERNN paper (§4, Tables 3–4) reports that ERNN trains 1.3–6× faster than
FastRNN, in time to a converged model.  Here every model learns the paper's
random-walk task (:mod:`refnet.tasks.random_walks`, σ read as a variance,
10 hidden units, the last state classified by a linear readout, softmax
cross-entropy) with ``refnet.bptt`` and ``refnet.optim.Adam`` (learning rate
1e-2, batches of 128), in float64, in one run per model (seed 0):

- ``epoch``: the median, min and max wall time of one training epoch (BPTT and
  Adam over every batch; the evaluation between epochs is not counted);
- ``to 95%``: the training time (sum of the epochs) until the test accuracy,
  measured after every epoch, first reaches 95%, and the epochs it took; or
  "not reached" within :data:`MAX_EPOCHS`.  The run goes on past 95% until
  ``repeats`` epochs are timed;
- ``speed-up vs FastRNN``: FastRNN's time to 95% over the model's, the
  paper's claim's measure (> 1: the model is faster).

The peer is the same models in PyTorch (``nn.LSTM``; FastRNN and ERNN written
with torch ops as refnet writes them, differentiated by autograd,
``torch.optim.Adam``), timed per epoch on the same batches in the same run;
before that, refnet's and PyTorch's gradients on the first batch from the
same weights must agree to :data:`GRAD_RTOL`, else
:class:`~refnet.bench.report.BenchmarkError`.  Both libraries run on one
thread (NumPy's BLAS limited with threadpoolctl when importable; PyTorch with
``torch.set_num_threads(1)``): the products here are 128×10 and cannot be
split usefully.
"""
import os
import time

import numpy

from .._validate import check_int
from ..algorithms import bptt, forward
from ..backend import rng
from ..cells.ernn import ERNN
from ..cells.fastrnn import FastRNN
from ..cells.lstm import LSTM
from ..heads import Head, last_step
from ..optim import Adam
from ..tasks.random_walks import random_walk_task
from .bptt import max_rel_error
from .report import BenchmarkError, Report, format_table
from .timing import import_torch, numpy_blas, one_thread, Timing

__all__ = ["MODELS", "MAX_EPOCHS", "GRAD_RTOL", "TARGET", "make_model", "train_refnet", "run"]

HIDDEN, INPUT, CLASSES, BATCH, LR = 10, 2, 2, 128, 1e-2
MODELS = ("FastRNN", "ERNN(K=1)", "ERNN(K=2)", "LSTM")
TARGET = 0.95
SIZES = {"full": {"n_per_class": 2000, "T": 100}, "quick": {"n_per_class": 64, "T": 10}}
MAX_EPOCHS = {"full": 40, "quick": 2}
DEFAULT_REPEATS = {"full": 5, "quick": 1}
# Normwise relative error allowed between refnet's and PyTorch's float64 gradients:
# the same terms summed in different orders over T = 100 steps.
GRAD_RTOL = 1e-10


def make_model(name, T):
    """The refnet cell of ``name`` (one of :data:`MODELS`) for walks of T steps.

    FastRNN (Kusupati et al. 2018) and the LSTM (Hochreiter & Schmidhuber
    1997) ignore T; ERNN (Zhang et al. 2019, Eqs. 7, 9, 11, 12) with K = 1 or
    2 inner iterations needs it for its per-step η (T, K).  Every model has
    INPUT = 2 inputs and HIDDEN = 10 units.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`: ``'FastRNN'``, ``'ERNN(K=1)'``, ``'ERNN(K=2)'``, ``'LSTM'``.
    T : int
        Time steps of the walks, >= 1.

    Returns
    -------
    refnet cell
        A fresh cell (its parameters are drawn later, by ``cell.init``).

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`MODELS`, or, for an ERNN, ``T`` is not
        a positive int (the cell's constructor refuses it as ``sequence_length``).
    """
    cells = {"FastRNN": lambda: FastRNN(INPUT, HIDDEN),
             "ERNN(K=1)": lambda: ERNN(INPUT, HIDDEN, K=1, sequence_length=T),
             "ERNN(K=2)": lambda: ERNN(INPUT, HIDDEN, K=2, sequence_length=T),
             "LSTM": lambda: LSTM(INPUT, HIDDEN)}
    if name not in cells:
        raise ValueError(f"name must be one of {MODELS}, got {name!r}")
    return cells[name]()


def _batches(n, seed, epochs):
    """The batch index arrays of every epoch (a fixed permutation per epoch), shared by both libraries."""
    generator = numpy.random.default_rng(seed)
    return [numpy.array_split(generator.permutation(n), max(1, n // BATCH)) for _ in range(epochs)]


def _accuracy(cell, theta, head, beta, x, y):
    s_T = forward(cell, theta, x).s[-1]
    return float((head.forward(beta, cell.output(s_T)).argmax(axis=1) == y).mean())


def train_refnet(name, data, batches, repeats):
    """Train ``name`` epoch by epoch until TARGET test accuracy and ``repeats`` timed epochs.

    Each epoch runs ``refnet.bptt`` (Werbos 1990) and Adam (lr 1e-2) on every
    batch, the last state classified, then measures test accuracy (not timed).

    Parameters
    ----------
    name : str
        One of :data:`MODELS`.
    data : refnet.tasks.random_walks.RandomWalks
        The split: ``x_train`` (T, N, 2), ``y_train`` (N,), ``x_test``, ``y_test``.
    batches : list of list of ndarray
        Per epoch, the index arrays of its batches into the N training walks;
        at most ``len(batches)`` epochs are run.
    repeats : int
        Least number of timed epochs before stopping once TARGET is reached.

    Returns
    -------
    seconds : list of float
        Wall time of each epoch run, in seconds.
    epochs_to_target : int or None
        The epoch (1-based) after which test accuracy first reached TARGET, or None.
    seconds_to_target : float or None
        The training time of those epochs, in seconds, or None.
    accuracy : float
        Test accuracy after the last epoch run, in [0, 1].

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`MODELS`, or as ``refnet.bptt`` for
        data of the wrong shape or holding NaN/Inf.
    refnet.NumericalError
        If a training step overflows (names the first non-finite step).
    """
    T = data.x_train.shape[0]
    cell = make_model(name, T)
    head = Head(HIDDEN, CLASSES)
    theta, beta = _init(cell, head)
    opt = Adam(lr=LR)
    states = opt.init(theta), opt.init(beta)
    seconds, reached, accuracy = [], None, 0.0
    for epoch, epoch_batches in enumerate(batches):
        start = time.perf_counter()
        for idx in epoch_batches:
            y = numpy.broadcast_to(data.y_train[idx], (T, idx.size))
            res = bptt(cell, theta, data.x_train[:, idx], None, head, beta, y, last_step(T, idx.size))
            states = opt.update(theta, res.dtheta, states[0]), opt.update(beta, res.dbeta, states[1])
        seconds.append(time.perf_counter() - start)
        accuracy = _accuracy(cell, theta, head, beta, data.x_test, data.y_test)
        if reached is None and accuracy >= TARGET:
            reached = epoch + 1
        if reached is not None and len(seconds) >= repeats:
            break
    to_target = None if reached is None else sum(seconds[:reached])
    return seconds, reached, to_target, accuracy


def _init(cell, head, seed=0):
    """θ and β as every run of a model starts them (seed 0)."""
    r = rng(seed)
    return cell.init(r), head.init(r)


def _torch_model(torch, name, cell, theta, head_params):
    """The model in torch: ``(cell leaves, readout leaves, x (T, B, I) -> logits (B, CLASSES))``.

    FastRNN and ERNN are written with torch ops as refnet writes them; the LSTM is ``nn.LSTM``.
    """
    readout = {k: torch.tensor(v, requires_grad=True) for k, v in head_params.items()}
    if name == "LSTM":
        module = torch.nn.LSTM(INPUT, HIDDEN, dtype=torch.float64)
        with torch.no_grad():
            for k, v in theta.items():
                getattr(module, f"{k}_l0").copy_(torch.from_numpy(v))
        params = {k: getattr(module, f"{k}_l0") for k in theta}

        def hidden(x):
            return module(x)[0][-1]
    elif name == "FastRNN":
        params = {k: torch.tensor(v, requires_grad=True) for k, v in theta.items()}

        def hidden(x):
            h = torch.zeros((x.shape[1], HIDDEN), dtype=x.dtype)
            alpha, beta = torch.sigmoid(params["alpha"]), torch.sigmoid(params["beta"])
            for t in range(x.shape[0]):
                h = alpha * torch.tanh(x[t] @ params["W"].T + h @ params["U"].T + params["bias_update"]) + beta * h
            return h
    else:
        params = {k: torch.tensor(v, requires_grad=True) for k, v in theta.items()}

        def hidden(x):
            h = torch.zeros((x.shape[1], HIDDEN), dtype=x.dtype)
            for t in range(x.shape[0]):
                input_part = x[t] @ params["W"].T + params["b"]
                for k in range(cell.K):
                    a = h @ params["V"].T + input_part
                    h = h + params["eta"][t, k] * (torch.relu(a + a @ params["U"].T) - h)
            return h

    def logits(x):
        return hidden(x) @ readout["weight"].T + readout["bias"]

    return params, readout, logits


def _check_agreement(torch, name, data, idx):
    """refnet's and PyTorch's gradients on one batch from the same weights; returns the error or raises."""
    T = data.x_train.shape[0]
    cell, head = make_model(name, T), Head(HIDDEN, CLASSES)
    theta, beta = _init(cell, head)
    y = numpy.broadcast_to(data.y_train[idx], (T, idx.size))
    ours = bptt(cell, theta, data.x_train[:, idx], None, head, beta, y, last_step(T, idx.size))
    params, readout, logits = _torch_model(torch, name, cell, theta, beta)
    loss = torch.nn.functional.cross_entropy(logits(torch.from_numpy(data.x_train[:, idx])),
                                             torch.from_numpy(data.y_train[idx]))
    loss.backward()
    theirs = {**{f"theta/{k}": p.grad.numpy() for k, p in params.items()},
              **{f"beta/{k}": p.grad.numpy() for k, p in readout.items()}}
    error, worst = max_rel_error({**{f"theta/{k}": v for k, v in ours.dtheta.items()},
                                  **{f"beta/{k}": v for k, v in ours.dbeta.items()}}, theirs)
    if error > GRAD_RTOL:
        raise BenchmarkError(f"refnet and torch disagree on {worst} for {name}: normwise relative error "
                             f"{error:.2e} > {GRAD_RTOL:.0e}; a benchmark of a wrong computation is worthless")
    return error


def _torch_epochs(torch, name, data, batches):
    """Wall time of each training epoch in PyTorch (autograd + torch.optim.Adam)."""
    T = data.x_train.shape[0]
    cell, head = make_model(name, T), Head(HIDDEN, CLASSES)
    theta, beta = _init(cell, head)
    params, readout, logits = _torch_model(torch, name, cell, theta, beta)
    opt = torch.optim.Adam(list(params.values()) + list(readout.values()), lr=LR)
    x_all, y_all = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    seconds = []
    for epoch_batches in batches:
        start = time.perf_counter()
        for idx in epoch_batches:
            index = torch.from_numpy(idx)
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(logits(x_all[:, index]), y_all[index])
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def _row(env, impl, name, seconds, **extra):
    t = Timing.of(seconds)
    return {**env, "row": "epoch", "impl": impl, "model": name, "median_s": t.median, "min_s": t.min,
            "max_s": t.max, "epochs_timed": t.repeats, **extra}


def _table(rows, env):
    epoch = [r for r in rows if r["row"] == "epoch"]
    ratio = {r["model"]: r for r in rows if r["row"] == "ratio"}
    header = (f"ernn: training on 2-D random walks (σ as variance), {env['n_train']} training walks, "
              f"T = {env['T']}, batch {BATCH}, {HIDDEN} hidden units, Adam lr {LR:g}, float64, one thread, "
              f"seed 0\nepoch: wall time of one training epoch, median [min, max] over the epochs timed; "
              f"to {TARGET:.0%}: training time until the test accuracy first reached {TARGET:.0%}\n"
              f"numpy {env['numpy_version']} (BLAS {env['numpy_blas']}); "
              + (f"torch {env['torch_version']}" if env["torch_version"] else "torch not importable: peer skipped"))

    def fmt(value, spec, none="-"):
        return none if value is None else format(value, spec)
    body = format_table(
        ("model", "impl", "epochs", "epoch median s", "min s", "max s", f"to {TARGET:.0%} s",
         f"epochs to {TARGET:.0%}", "final acc", "speed-up vs FastRNN", "refnet/torch epoch", "grad err"),
        [(r["model"], r["impl"], str(r["epochs_timed"]), f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
          f"{r['max_s']:.3f}", fmt(r.get("seconds_to_target"), ".2f", "not reached" if r["impl"] == "refnet" else "-"),
          fmt(r.get("epochs_to_target"), "d"), fmt(r.get("final_accuracy"), ".3f"),
          fmt(ratio[r["model"]]["speedup_vs_fastrnn"] if r["impl"] == "refnet" else None, ".2f"),
          fmt(ratio[r["model"]]["refnet_over_torch_epoch"] if r["impl"] == "refnet" else None, ".2f"),
          fmt(ratio[r["model"]]["grad_max_rel_err"] if r["impl"] == "refnet" else None, ".1e"))
         for r in epoch], text_columns=2)
    note = "paper (ERNN §4): ERNN trains 1.3–6× faster than FastRNN (time to a converged model, GPU, other tasks)"
    return "\n\n".join([header, body, note])


def run(*, repeats=None, quick=False):
    """Run the ``ernn`` case.

    Parameters
    ----------
    repeats : int >= 1 or None
        Least number of epochs timed per model (default 5, or 1 with ``quick``).
    quick : bool
        64 walks per class of T = 10 and at most 2 epochs, for tests.

    Returns
    -------
    Report
        Rows ``row`` = "epoch" (per model and implementation: epoch times; for
        refnet also the epochs and seconds to TARGET and the final accuracy)
        and "ratio" (per model: ``speedup_vs_fastrnn`` = FastRNN's time to
        TARGET / the model's, ``refnet_over_torch_epoch`` = refnet's median
        epoch / PyTorch's, the gradient agreement).

    Raises
    ------
    TypeError
        If ``repeats`` is not an int (or None).
    ValueError
        If ``repeats`` < 1.
    BenchmarkError
        If refnet's and PyTorch's gradients on the first batch disagree beyond
        :data:`GRAD_RTOL` (only when PyTorch is importable).
    refnet.NumericalError
        If a training step overflows.
    """
    size = "quick" if quick else "full"
    repeats = DEFAULT_REPEATS[size] if repeats is None else check_int("repeats", repeats, 1)
    data = random_walk_task(SIZES[size]["n_per_class"], T=SIZES[size]["T"], reading="variance", seed=0)
    n, T = data.x_train.shape[1], data.x_train.shape[0]
    batches = _batches(n, 0, max(MAX_EPOCHS[size], repeats))
    torch, _ = import_torch()
    blas, _ = numpy_blas()
    env = {"case": "ernn", "numpy_version": numpy.__version__, "numpy_blas": blas,
           "torch_version": None if torch is None else torch.__version__, "cpu_count": os.cpu_count(),
           "n_train": n, "T": T, "batch": BATCH, "target": TARGET}
    rows, to_target = [], {}
    with one_thread(torch):
        for name in MODELS:
            seconds, reached, target_s, accuracy = train_refnet(name, data, batches, repeats)
            to_target[name] = target_s
            rows.append(_row(env, "refnet", name, seconds, epochs_to_target=reached,
                             seconds_to_target=target_s, final_accuracy=accuracy))
            agreement = peer = None
            if torch is not None:
                agreement = _check_agreement(torch, name, data, batches[0][0])
                peer = _torch_epochs(torch, name, data, batches[:repeats])
                rows.append(_row(env, "torch", name, peer))
            rows.append({**env, "row": "ratio", "model": name, "grad_max_rel_err": agreement,
                         "refnet_over_torch_epoch": (Timing.of(seconds).median / Timing.of(peer).median
                                                     if peer else None)})
    for row in rows:
        if row["row"] == "ratio":
            fast, own = to_target.get("FastRNN"), to_target.get(row["model"])
            row["speedup_vs_fastrnn"] = fast / own if fast and own else None
    return Report(tuple(rows), _table(rows, env))
