"""Gradient algorithms, one module per family.

Each function is re-exported here under its own name, so
``refnet.algorithms.rtrl`` is the function; import a module's other names
with ``from refnet.algorithms.rtrl import rtrl_update``.  The exception is
original RBP: ``refnet.rbp`` is the function, ``refnet.algorithms.rbp`` the module.
The equilibrium solvers (``fixed_point``, ``anderson``, ``newton_krylov``,
``spectral_radius``) live in the solver layer, :mod:`refnet.solvers`.
"""
from .bptt import (GradResult, SequenceVJP, Trajectory, bptt, forward, loss, sequence_vjp,
                   tbptt, tbptt_windows, truncated_loss)
from .fpp import FPPGrad, fpp_grad, fpp_loss, fpp_refresh
from .fpp_buffer import FPPBuffer
from .kfrtrl import (KFRTRLState, kfrtrl, kfrtrl_gradient, kfrtrl_init, kfrtrl_sensitivity,
                     kfrtrl_update)
from .rbp import ImplicitGradient, cg_rbp, gmres_rbp, implicit_vjp, neumann_rbp
from .rflo import RFLOState, rflo, rflo_gradient, rflo_init, rflo_update
from .rtrl import rtrl, rtrl_update
from .snap import SnApPattern, SnApState, snap, snap_gradient, snap_init, snap_pattern, snap_update
from .stacked import StackedVJP, stacked_forward, stacked_sequence_vjp
from .uoro import UOROState, uoro, uoro_gradient, uoro_init, uoro_update

__all__ = [
    "GradResult", "SequenceVJP", "Trajectory", "bptt", "forward", "loss", "sequence_vjp",
    "tbptt", "tbptt_windows", "truncated_loss",
    "FPPGrad", "fpp_grad", "fpp_loss", "fpp_refresh", "FPPBuffer",
    "KFRTRLState", "kfrtrl", "kfrtrl_gradient", "kfrtrl_init", "kfrtrl_sensitivity", "kfrtrl_update",
    "ImplicitGradient", "cg_rbp", "gmres_rbp", "implicit_vjp", "neumann_rbp",
    "RFLOState", "rflo", "rflo_gradient", "rflo_init", "rflo_update",
    "rtrl", "rtrl_update",
    "SnApPattern", "SnApState", "snap", "snap_gradient", "snap_init", "snap_pattern", "snap_update",
    "StackedVJP", "stacked_forward", "stacked_sequence_vjp",
    "UOROState", "uoro", "uoro_gradient", "uoro_init", "uoro_update",
]
