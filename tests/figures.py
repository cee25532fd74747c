"""Helpers for the example tests: the pixel size of a PNG, read from its header (no imaging library needed)."""
import struct

__all__ = ["MAX_WIDTH", "png_size"]

MAX_WIDTH = 1600   # px at the example's own DPI: readable at 100% zoom on a laptop screen


def png_size(path):
    """(width, height) in pixels of the PNG at ``path``, from its IHDR chunk.

    Raises
    ------
    ValueError
        If the file is not a PNG.
    """
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file (header {head[:16]!r})")
    return struct.unpack(">II", head[16:24])
