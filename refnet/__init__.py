"""refnet: hand-written forward and backward passes for recurrent training algorithms.

NumPy by default, CuPy with ``REFNET_BACKEND=cupy``; float64 by default.
"""
from . import fixtures, heads, interop, online, optim, params, solvers, sweep, tasks
from ._version import __version__
from .algorithms import (GradResult, SequenceVJP, StackedVJP, bptt, forward, kfrtrl, loss, rflo, rtrl,
                         sequence_vjp, snap, stacked_forward, stacked_sequence_vjp, tbptt, tbptt_windows,
                         truncated_loss, uoro)
from .algorithms.rbp import ImplicitGradient, cg_rbp, gmres_rbp, implicit_vjp, neumann_rbp, rbp
from .backend import asarray, get_dtype, get_xp, rng, to_numpy, xp_of
from .cells import (ERNN, GRU, IRNN, LSTM, Cell, ElmanRNN, FastGRNN, FastRNN, FastWeights,
                    FastWeightsAttention, Hopfield, LeakyRNN)
from .cells.ernn_exact import ExactERNN, ToyERNN
from .errors import ConvergenceError, NumericalError, SingularSystemError
from .heads_mlp import MLPHead
from .heads import Head, every_step, last_step, masked, mse, sigmoid_bce, softmax_cross_entropy
from .solvers import (ConvergenceWarning, Equilibrium, anderson, fixed_point, newton_krylov,
                      spectral_radius)


__all__ = [
    "fixtures", "heads", "interop", "online", "optim", "params", "solvers", "sweep", "tasks",
    "GradResult", "SequenceVJP", "StackedVJP", "bptt", "forward", "kfrtrl", "loss", "rflo", "rtrl", "sequence_vjp",
    "snap", "uoro",
    "stacked_forward", "stacked_sequence_vjp", "tbptt", "tbptt_windows", "truncated_loss",
    "asarray", "get_dtype", "get_xp", "rng", "to_numpy", "xp_of",
    "ConvergenceWarning", "Equilibrium", "anderson", "fixed_point", "newton_krylov", "spectral_radius",
    "ImplicitGradient", "cg_rbp", "gmres_rbp", "implicit_vjp", "neumann_rbp", "rbp",
    "Cell", "ElmanRNN", "IRNN", "LSTM", "GRU", "FastWeights", "FastWeightsAttention", "MLPHead",
    "ERNN", "ExactERNN", "ToyERNN", "FastRNN", "FastGRNN", "Hopfield", "LeakyRNN",
    "ConvergenceError", "NumericalError", "SingularSystemError",
    "Head", "every_step", "last_step", "masked", "mse", "sigmoid_bce", "softmax_cross_entropy",
]
