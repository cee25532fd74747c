"""Gradient algorithms, one module per family."""
from .bptt import (GradResult, SequenceVJP, Trajectory, bptt, forward, loss, sequence_vjp,
                   tbptt, tbptt_windows, truncated_loss)

__all__ = ["GradResult", "SequenceVJP", "Trajectory", "bptt", "forward", "loss", "sequence_vjp",
           "tbptt", "tbptt_windows", "truncated_loss"]
