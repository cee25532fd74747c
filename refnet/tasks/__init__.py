"""Tasks: data streams and datasets for the examples, knowing nothing of cells or algorithms."""
from . import associative_retrieval, cycleworld
from .cycleworld import always_zero_accuracy

__all__ = ["associative_retrieval", "cycleworld", "always_zero_accuracy"]
