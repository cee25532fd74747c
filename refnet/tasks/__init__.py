"""Tasks: data streams and datasets for the examples, knowing nothing of cells or algorithms."""
from . import associative_retrieval, cycleworld, digits, hopfield_patterns, mnist, random_walks
from .cycleworld import always_zero_accuracy

__all__ = ["associative_retrieval", "cycleworld", "digits", "mnist", "hopfield_patterns", "random_walks", "always_zero_accuracy"]
