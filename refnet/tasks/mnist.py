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

from .._validate import as_array, check_dtype
from ..backend import asarray, get_dtype, to_numpy
from .digits import SequenceSplit, to_sequences

__all__ = ["FILES", "read_idx", "write_idx", "mnist"]

FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """The array stored in the IDX file ``path`` (gzipped if it ends in .gz).

    Parameters
    ----------
    path : str or os.PathLike
        The file; a name ending in ``.gz`` is read through gzip.

    Returns
    -------
    numpy.ndarray
        The array of the header's shape and type (uint8 for MNIST), native byte order.

    Raises
    ------
    TypeError
        ``path`` not a str or os.PathLike.
    FileNotFoundError
        No such file.
    ValueError
        Not an IDX file: a bad or truncated header, a size that disagrees with the header's shape,
        a broken gzip stream.
    """
    path = _path("path", path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path} could not be read as {'a gzipped ' if path.suffix == '.gz' else 'an '}IDX "
                         f"file: {type(exc).__name__}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise ValueError(f"{path} must start with an IDX header (0, 0, type code in "
                         f"{sorted(_TYPES)}, ndim), got bytes {list(data[:4])}")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header declares {ndim} dimensions, which need "
                         f"{4 + 4 * ndim} header bytes, but the file holds {len(data)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[data[2]])
    expected = 4 + 4 * ndim + dtype.itemsize * int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(f"{path} must hold {expected} bytes for shape {shape} of {dtype}, got {len(data)}")
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _path(name, path):
    if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__} {path!r:.60}")
    return Path(path)


def write_idx(path, array):
    """Write an unsigned-byte array as an IDX file (for tests and small fixtures).

    Header 0, 0, 0x08 (unsigned bytes), ndim, then the sizes as big-endian uint32 and the data in
    C order (LeCun et al.'s IDX format, module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The file, written anew (not gzipped, whatever its name).
    array : array or array-like
        Whole numbers in [0, 255] (integer, bool or whole-valued float), at most 255 dimensions.

    Raises
    ------
    TypeError
        ``path`` not a path; ``array`` not an array or not of a numeric dtype.
    ValueError
        Values outside [0, 255]; floats that are not whole numbers (refused rather than truncated);
        more than 255 dimensions.
    """
    path = _path("path", path)
    array = to_numpy(as_array("array", array))
    if array.dtype.kind not in "iubf":
        raise TypeError(f"array must hold integers in [0, 255] (an IDX file of unsigned bytes), got dtype "
                        f"{array.dtype}")
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise ValueError("array must hold whole numbers in [0, 255] (an IDX file of unsigned bytes), got "
                         "fractional or non-finite floats; round it yourself if that is meant (nothing is "
                         "truncated silently)")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"array must hold values in [0, 255] (unsigned bytes), got values in "
                         f"[{array.min()}, {array.max()}]")
    if array.ndim > 255:
        raise ValueError(f"array must have at most 255 dimensions (one header byte), got {array.ndim}")
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

    Pixels are scaled from 0..255 to [0, 1] (LeCun et al.'s IDX files, :data:`FILES`, each possibly
    gzipped); nothing is downloaded.

    Parameters
    ----------
    folder : str or os.PathLike
        The directory holding the four IDX files.
    rows : bool
        False for W·H steps of one pixel; True for H steps of one row of W pixels.
    dtype : str, numpy.dtype or None
        'float64' or 'float32', the inputs' dtype (None: ``REFNET_DTYPE``).

    Returns
    -------
    SequenceSplit
        x (784, N, 1) or (28, N, 28) for MNIST and int64 labels, on the active backend.

    Raises
    ------
    TypeError
        If ``folder`` is not a path or ``rows`` not a bool.
    FileNotFoundError
        If ``folder`` is not a directory or lacks one of the files (named).
    ValueError
        If a file is not a valid IDX file (:func:`read_idx`), the images are not (N, H, W) with one
        (N,) label per image, or ``dtype`` is not float64/float32.
    """
    folder = _path("folder", folder)
    if not isinstance(rows, bool):
        raise TypeError(f"rows must be a bool, got {type(rows).__name__} {rows!r}")
    dtype = check_dtype("dtype", dtype)
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
