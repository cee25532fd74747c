"""``python -m refnet.kernels``: compile every numba kernel into the on-disk cache (:mod:`refnet.kernels.warm`)."""
from .warm import main

__all__ = []

main()
