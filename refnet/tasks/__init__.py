"""Tasks: data streams and datasets for the examples, knowing nothing of cells or algorithms."""
from . import associative_retrieval, cycleworld, hopfield_patterns, random_walks
from .cycleworld import always_zero_accuracy

__all__ = ["associative_retrieval", "cycleworld", "hopfield_patterns", "random_walks", "always_zero_accuracy"]
