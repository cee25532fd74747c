"""Gradient algorithms, one module per family."""
from .bptt import (GradResult, SequenceVJP, Trajectory, bptt, forward, loss, sequence_vjp,
                   tbptt, tbptt_windows, truncated_loss)

from .stacked import StackedVJP, stacked_forward, stacked_sequence_vjp

__all__ = ["StackedVJP", "stacked_forward", "stacked_sequence_vjp", "GradResult", "SequenceVJP", "Trajectory", "bptt", "forward", "loss", "sequence_vjp",
           "tbptt", "tbptt_windows", "truncated_loss"]
