"""Saving and loading fixtures: one ``.npz`` of arrays (no pickle) and a ``.json`` sidecar.  NumPy only.

A fixture at ``DIR/NAME`` is ``DIR/NAME.npz`` plus ``DIR/NAME.json``; every
function here takes the stem, either file, or a folder holding exactly one
fixture.  The format (keys, meta fields) is described in ``refnet.fixtures``;
this module only needs ``meta['format']``, ``meta['version']`` and
``meta['arrays']``.
"""
import json
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["FORMAT", "VERSIONS", "Fixture", "fixture_paths", "save_fixture", "load_fixture", "as_fixture"]

FORMAT = "refnet-fixture"
VERSIONS = (1,)


@dataclass(frozen=True)
class Fixture:
    """A fixture: ``meta`` (the JSON sidecar as a dict), ``arrays`` {key: NumPy array}, where it was read."""

    meta: dict
    arrays: dict
    path: Optional[str] = None


def fixture_paths(path):
    """(``.npz`` path, ``.json`` path) of the fixture at ``path`` (stem, either file, or a folder of one)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        stems = sorted({os.path.splitext(f)[0] for f in os.listdir(path) if f.endswith(".json")})
        if len(stems) != 1:
            raise ValueError(f"path {path!r} is a folder; it must hold exactly one fixture (NAME.json + "
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


def load_fixture(path):
    """Read the fixture at ``path``; ValueError if it is not a fixture of a known version or is incomplete."""
    npz_path, json_path = fixture_paths(path)
    for p in (npz_path, json_path):
        if not os.path.exists(p):
            raise FileNotFoundError(f"fixture file {p!r} does not exist (a fixture is NAME.npz + NAME.json)")
    with open(json_path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT or meta.get("version") not in VERSIONS:
        raise ValueError(f"{json_path!r} must be a {FORMAT!r} sidecar of version {VERSIONS}, got format "
                         f"{meta.get('format')!r} version {meta.get('version')!r}")
    with np.load(npz_path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    missing = sorted(set(meta.get("arrays", {})) - set(arrays))
    if missing:
        raise ValueError(f"{npz_path!r} lacks arrays its sidecar lists: {missing}")
    return Fixture(meta, arrays, os.path.splitext(npz_path)[0])


def as_fixture(obj):
    """A :class:`Fixture` from a path or from any object with ``meta`` and ``arrays``."""
    if isinstance(obj, (str, os.PathLike)):
        return load_fixture(obj)
    if hasattr(obj, "meta") and hasattr(obj, "arrays"):
        return obj if isinstance(obj, Fixture) else Fixture(dict(obj.meta), dict(obj.arrays))
    raise TypeError(f"a fixture must be a path or have meta and arrays, got {type(obj).__name__}")
