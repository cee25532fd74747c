"""MNIST from IDX files in a user-given folder (LeCun et al.'s format), as pixel or row sequences.

Nothing is downloaded: the folder must hold the four files
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each possibly
gzipped (``.gz``).  An IDX file is a big-endian header — two zero bytes, a
type code (0x08: unsigned bytes), the number of dimensions d — then d
big-endian uint32 sizes and the data in C order.
"""
import gzip
from pathlib import Path

import numpy as np

from ..backend import asarray, get_dtype
from .digits import SequenceSplit, to_sequences

__all__ = ["FILES", "read_idx", "write_idx", "mnist"]

FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """The array stored in the IDX file ``path`` (gzipped if it ends in .gz)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise ValueError(f"{path} must start with an IDX header (0, 0, type code in "
                         f"{sorted(_TYPES)}, ndim), got bytes {list(data[:4])}")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[data[2]])
    expected = 4 + 4 * ndim + dtype.itemsize * int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(f"{path} must hold {expected} bytes for shape {shape} of {dtype}, got {len(data)}")
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Write an unsigned-byte array as an IDX file (for tests and small fixtures)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    Path(path).write_bytes(header + array.tobytes())


def _find(folder, name):
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"MNIST folder {folder} must hold {name} or {name}.gz (IDX format); not found")


def mnist(folder, *, rows=False, dtype=None):
    """MNIST's train and test sets from ``folder`` as sequences: 784 steps of one pixel, or 28 rows of 28.

    Pixels are scaled from 0..255 to [0, 1]; returns a
    :class:`refnet.tasks.digits.SequenceSplit` on the active backend.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder must be a directory holding the MNIST IDX files, got {str(folder)!r}")
    arrays = {key: read_idx(_find(folder, name)) for key, name in FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"the {split} images must be (N, H, W) and the labels (N,), "
                             f"got {x.shape} and {y.shape}")
    width = arrays["x_train"].shape[2]
    dtype = get_dtype() if dtype is None else dtype
    seq = {k: to_sequences(arrays[k] / 255.0, width if rows else 1) for k in ("x_train", "x_test")}
    return SequenceSplit(asarray(seq["x_train"], dtype), asarray(arrays["y_train"].astype(np.int64), np.int64),
                         asarray(seq["x_test"], dtype), asarray(arrays["y_test"].astype(np.int64), np.int64))
