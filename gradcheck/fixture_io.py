"""Saving and loading fixtures: one ``.npz`` of arrays (no pickle) and a ``.json`` sidecar.  NumPy only.

A fixture at ``DIR/NAME`` is ``DIR/NAME.npz`` plus ``DIR/NAME.json``; every
function here takes the stem, either file, or a folder holding exactly one
fixture.  The format (keys, meta fields) is described in ``refnet.fixtures``;
this module only needs ``meta['format']``, ``meta['version']`` and
``meta['arrays']``.
"""
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["FORMAT", "VERSIONS", "Fixture", "FixtureError", "FixtureFileNotFound", "fixture_paths",
           "save_fixture", "load_fixture", "load_npz", "as_fixture"]

FORMAT = "refnet-fixture"
VERSIONS = (1,)


class FixtureError(ValueError):
    """A fixture or candidate file is missing, unreadable, or not what its sidecar says; names the file."""


class FixtureFileNotFound(FixtureError, FileNotFoundError):
    """A fixture file does not exist (also a FileNotFoundError)."""


@dataclass(frozen=True)
class Fixture:
    """A fixture: ``meta`` (the JSON sidecar as a dict), ``arrays`` {key: NumPy array}, where it was read."""

    meta: dict
    arrays: dict
    path: Optional[str] = None


def fixture_paths(path):
    """(``.npz`` path, ``.json`` path) of the fixture at ``path`` (stem, either file, or a folder of one)."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    if os.path.isdir(path):
        stems = sorted({os.path.splitext(f)[0] for f in os.listdir(path) if f.endswith(".json")})
        if len(stems) != 1:
            raise FixtureError(f"path {path!r} is a folder; it must hold exactly one fixture (NAME.json + "
                             f"NAME.npz), found {len(stems)}: {stems}")
        path = os.path.join(path, stems[0])
    stem, ext = os.path.splitext(path)
    if ext not in (".npz", ".json"):
        stem = path
    return stem + ".npz", stem + ".json"


def save_fixture(fixture, path, *, tolerances=None):
    """Write ``fixture`` (anything with ``meta`` and ``arrays``) to ``path``.npz and ``path``.json.

    ``meta['arrays']`` gains each array's shape and dtype, and
    ``meta['tolerances']`` the comparison defaults by dtype
    (``gradcheck.compare.COMPARE_TOLERANCES`` unless given).  Returns the two paths.
    """
    npz_path, json_path = fixture_paths(path)
    arrays = {key: np.asarray(value) for key, value in fixture.arrays.items()}
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise TypeError(f"fixture.arrays[{key!r}] must be a numeric array (no pickle), "
                            f"got dtype {value.dtype}")
    if tolerances is None:
        from .compare import COMPARE_TOLERANCES
        tolerances = {str(dtype): dict(row) for dtype, row in COMPARE_TOLERANCES.items()}
    meta = dict(fixture.meta)
    described = meta.get("arrays", {})
    meta["arrays"] = {key: {"shape": list(value.shape), "dtype": str(value.dtype), **described.get(key, {})}
                      for key, value in arrays.items()}
    meta["tolerances"] = tolerances
    folder = os.path.dirname(npz_path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    np.savez(npz_path, **arrays)
    with open(json_path, "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return npz_path, json_path


def load_npz(path):
    """The arrays of the ``.npz`` at ``path``, read without pickle; FixtureError naming the file otherwise.

    Truncated, corrupt or non-zip files, object arrays and non-numeric arrays
    are refused; the file is closed on every path.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FixtureFileNotFound(f"file {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise FixtureError(f"{path!r} is not an .npz archive (not a zip file: wrong file, or truncated)")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                try:
                    arrays[key] = data[key]
                except ValueError as exc:     # object arrays need pickle, which is never used
                    raise FixtureError(f"{path!r}: array {key!r} cannot be read without pickle ({exc}); "
                                       f"fixtures hold numeric arrays only") from None
    except FixtureError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
        raise FixtureError(f"{path!r} is a corrupt or truncated .npz archive: {type(exc).__name__}: {exc}") from None
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise FixtureError(f"{path!r}: array {key!r} has dtype {value.dtype}; fixtures hold numeric "
                               f"(bool, int, float) arrays only")
    return arrays


def _read_sidecar(json_path):
    if not os.path.exists(json_path):
        raise FixtureFileNotFound(f"fixture file {json_path!r} does not exist (a fixture is NAME.npz + "
                                  f"NAME.json)")
    try:
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as exc:
        raise FixtureError(f"sidecar {json_path!r} is not valid JSON: {exc}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise FixtureError(f"sidecar {json_path!r} cannot be read as UTF-8 JSON text: {exc}") from None
    if not isinstance(meta, dict):
        raise FixtureError(f"sidecar {json_path!r} must hold a JSON object, got a JSON {type(meta).__name__}")
    return meta


def _check_against_sidecar(meta, arrays, npz_path, json_path):
    """Every key, shape and dtype the sidecar lists must be the archive's, and every array listed."""
    described = meta.get("arrays")
    if not isinstance(described, dict):
        raise FixtureError(f"sidecar {json_path!r} must have an 'arrays' object (key -> shape, dtype), got "
                           f"{type(described).__name__}")
    missing = sorted(set(described) - set(arrays))
    if missing:
        raise FixtureError(f"{npz_path!r} lacks arrays its sidecar {json_path!r} lists: {missing}")
    unlisted = sorted(set(arrays) - set(described))
    if unlisted:
        raise FixtureError(f"{npz_path!r} holds arrays its sidecar {json_path!r} does not list: {unlisted}")
    for key, claim in described.items():
        if not isinstance(claim, dict):
            raise FixtureError(f"sidecar {json_path!r}: arrays[{key!r}] must be an object with shape and "
                               f"dtype, got {claim!r}")
        value = arrays[key]
        if "shape" in claim and list(claim["shape"]) != list(value.shape):
            raise FixtureError(f"{npz_path!r}: array {key!r} has shape {list(value.shape)}, but its sidecar "
                               f"says {claim['shape']}")
        if "dtype" in claim:
            try:
                same = np.dtype(claim["dtype"]) == value.dtype
            except TypeError:
                same = False
            if not same:
                raise FixtureError(f"{npz_path!r}: array {key!r} has dtype {value.dtype}, but its sidecar "
                                   f"says {claim['dtype']!r}")


def load_fixture(path):
    """Read and validate the fixture at ``path`` (a stem, either file, or a folder holding one).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Fixture

    Raises
    ------
    FixtureError (a ValueError) naming the file and the problem: a file missing
    (:class:`FixtureFileNotFound`, also a FileNotFoundError), a sidecar that is
    not JSON or not a fixture of a known version, an archive that is truncated,
    corrupt, not a zip, or holds object arrays, arrays whose keys, shapes or
    dtypes are not the sidecar's.  Nothing is unpickled; every file is closed.
    """
    npz_path, json_path = fixture_paths(path)
    if not os.path.exists(npz_path):
        raise FixtureFileNotFound(f"fixture file {npz_path!r} does not exist (a fixture is NAME.npz + NAME.json)")
    meta = _read_sidecar(json_path)
    if meta.get("format") != FORMAT or meta.get("version") not in VERSIONS:
        raise FixtureError(f"{json_path!r} must be a {FORMAT!r} sidecar of version {VERSIONS}, got format "
                           f"{meta.get('format')!r} version {meta.get('version')!r}")
    arrays = load_npz(npz_path)
    _check_against_sidecar(meta, arrays, npz_path, json_path)
    return Fixture(meta, arrays, os.path.splitext(npz_path)[0])


def as_fixture(obj):
    """A :class:`Fixture` from a path or from any object with ``meta`` and ``arrays``."""
    if isinstance(obj, (str, os.PathLike)):
        return load_fixture(obj)
    if hasattr(obj, "meta") and hasattr(obj, "arrays"):
        return obj if isinstance(obj, Fixture) else Fixture(dict(obj.meta), dict(obj.arrays))
    raise TypeError(f"a fixture must be a path or have meta and arrays, got {type(obj).__name__}")
