"""Recurrent cells, one module each, all under the contract of :mod:`refnet.cells.base`."""
from .activations import ACTIVATIONS, Activation
from .base import Cell
from .elman import IRNN, ElmanRNN
from .fast_weights import FastWeights, FastWeightsAttention
from .gru import GRU
from .lstm import LSTM

__all__ = ["Cell", "ElmanRNN", "IRNN", "LSTM", "GRU", "FastWeights", "FastWeightsAttention", "Activation", "ACTIVATIONS"]
