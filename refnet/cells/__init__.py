"""Recurrent cells, one module each, all under the contract of :mod:`refnet.cells.base`."""
from .activations import ACTIVATIONS, Activation
from .base import Cell
from .elman import IRNN, ElmanRNN
from .ernn import ERNN
from .fastgrnn import FastGRNN
from .fastrnn import FastRNN
from .fast_weights import FastWeights, FastWeightsAttention
from .gru import GRU
from .hopfield import Hopfield
from .leaky import LeakyRNN
from .lstm import LSTM

__all__ = ["Cell", "ElmanRNN", "IRNN", "LSTM", "GRU", "FastWeights", "FastWeightsAttention",
           "ERNN", "FastRNN", "FastGRNN", "Hopfield", "LeakyRNN", "Activation", "ACTIVATIONS"]
