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
           "save_fixture", "load_fixture", "load_npz", "as_fixture", "validate_meta",
           "check_meta_against_arrays"]

FORMAT = "refnet-fixture"
VERSIONS = (1,)


class FixtureError(ValueError):
    """A fixture or candidate file is missing, unreadable, or not what its sidecar says; names the file.

    A ValueError, so that code catching bad input as ValueError catches it too.

    Parameters
    ----------
    *args : object
        The message (one str naming the file and the problem), as for ValueError.
    **kwargs : object
        None are accepted (as for ValueError).

    Raises
    ------
    TypeError
        If keyword arguments are given (ValueError takes none).
    """


class FixtureFileNotFound(FixtureError, FileNotFoundError):
    """A fixture file does not exist (also a FileNotFoundError).

    Parameters
    ----------
    *args : object
        The message (one str naming the missing file).
    **kwargs : object
        None are accepted.

    Raises
    ------
    TypeError
        If keyword arguments are given.
    """


@dataclass(frozen=True)
class Fixture:
    """A fixture: ``meta`` (the JSON sidecar as a dict), ``arrays`` {key: NumPy array}, where it was read.

    Attributes
    ----------
    meta : dict
        The sidecar: ``format``, ``version``, ``arrays`` (key -> shape, dtype)
        and the fields ``refnet.fixtures`` describes (cell, algorithm, T, B,
        traces, gate_blocks, tolerances...).
    arrays : dict {key: ndarray}
        The arrays under their slash-separated keys (``'inputs/x'``,
        ``'grads/weight_ih_l0'``, ``'forward/h_l0'`` (T, B, H) ...).
    path : str or None
        The stem it was read from (``DIR/NAME``), None for a fixture made in memory.
    """

    meta: dict
    arrays: dict
    path: Optional[str] = None


def fixture_paths(path):
    """(``.npz`` path, ``.json`` path) of the fixture at ``path`` (stem, either file, or a folder of one).

    Parameters
    ----------
    path : str or os.PathLike
        ``DIR/NAME``, ``DIR/NAME.npz``, ``DIR/NAME.json``, or a folder holding
        exactly one ``NAME.json``.  The files need not exist (except in the folder case).

    Returns
    -------
    npz_path : str
        ``DIR/NAME.npz``.
    json_path : str
        ``DIR/NAME.json``.

    Raises
    ------
    TypeError
        If ``path`` is not a str or os.PathLike.
    FixtureError
        If ``path`` is a folder holding no ``.json`` sidecar or more than one.
    """
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
    (``gradcheck.compare.COMPARE_TOLERANCES`` unless given).  The arrays are
    written with ``np.savez`` (uncompressed, no pickle), the sidecar as
    indented JSON; a missing folder is created; existing files are overwritten.

    Parameters
    ----------
    fixture : Fixture or object
        Anything with ``meta`` (a dict) and ``arrays`` ({key: array}, numeric dtypes).
    path : str or os.PathLike
        Where to write, as for :func:`fixture_paths`.
    tolerances : dict, optional
        ``{dtype name: {'rtol': float, 'atol': float}}`` to record in the sidecar.

    Returns
    -------
    npz_path : str
        The ``.npz`` written.
    json_path : str
        The ``.json`` sidecar written.

    Raises
    ------
    TypeError
        If ``path`` is not a str or os.PathLike, an array is not numeric
        (bool, int, float: no pickle), or ``meta`` holds something JSON cannot encode.
    FixtureError
        If ``path`` is a folder that does not hold exactly one fixture.
    OSError
        If the folder cannot be created or a file cannot be written.
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


# deflate cannot expand data by more than ~1032:1; a member claiming more is lying about its size
_MAX_DEFLATE_RATIO = 1032


def _member_header(zf, info, path):
    """(shape, dtype) from a member's .npy header, read without reading its data; FixtureError otherwise.

    The size the header claims must fit the member (and the member the archive), so that a header
    claiming shape (10**15,) is refused instead of allocated (numpy allocates before it reads).
    """
    name = info.filename
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, SyntaxError) as exc:
            raise FixtureError(f"{path!r}: member {name!r} is not a valid .npy array ({type(exc).__name__}: "
                               f"{exc})") from None
        header_bytes = f.tell()
    if dtype.hasobject:
        raise FixtureError(f"{path!r}: array {name[:-4]!r} cannot be read without pickle (dtype {dtype}); "
                           "fixtures hold numeric (bool, int, float) arrays only")
    if dtype.kind not in "biuf":
        raise FixtureError(f"{path!r}: array {name[:-4]!r} has dtype {dtype}; fixtures hold numeric "
                           "(bool, int, float) arrays only")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    available = info.file_size - header_bytes
    archive = os.path.getsize(path)
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.file_size <= archive
    else:
        plausible = info.file_size <= _MAX_DEFLATE_RATIO * max(info.compress_size, 1)
    if claimed > available or not plausible:
        raise FixtureError(f"{path!r}: member {name!r} claims shape {tuple(shape)} of {dtype} ({claimed} bytes), "
                           f"but holds {available} bytes of data (archive {archive} bytes): a corrupt or "
                           "forged header; refused before allocating")
    return tuple(shape), dtype


def load_npz(path):
    """The arrays of the ``.npz`` at ``path``, read without pickle; FixtureError naming the file otherwise.

    Truncated, corrupt or non-zip files, members that are not ``.npy``
    arrays, object and non-numeric arrays, and headers claiming more data
    than the member (or the archive) holds are refused — every header is read
    and checked before any array is allocated; the file is closed on every path.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file itself (no stem resolution here).

    Returns
    -------
    dict {key: ndarray}
        Every member, keyed by its name without ``.npy``.

    Raises
    ------
    TypeError
        If ``path`` is not a str or os.PathLike.
    FixtureFileNotFound
        If the file does not exist.
    FixtureError
        If it is not a zip file, is corrupt or truncated, holds a member name
        twice, a member that is not an ``.npy`` array, an object or
        non-numeric array, or a header claiming more data than it holds.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FixtureFileNotFound(f"file {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise FixtureError(f"{path!r} is not an .npz archive (not a zip file: wrong file, or truncated)")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise FixtureError(f"{path!r}: the archive holds a member name twice")
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise FixtureError(f"{path!r}: member {info.filename!r} is not an .npy array (an .npz "
                                       "fixture holds only NAME.npy members)")
                _member_header(zf, info, path)
            for info in infos:
                with zf.open(info) as f:
                    arrays[info.filename[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
    except FixtureError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, MemoryError) as exc:
        raise FixtureError(f"{path!r} is a corrupt or truncated .npz archive: {type(exc).__name__}: {exc}") from None
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
    except RecursionError:
        raise FixtureError(f"sidecar {json_path!r} nests JSON arrays/objects too deeply to read (a JSON "
                           "nesting bomb?); a fixture's sidecar is a few levels deep") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise FixtureError(f"sidecar {json_path!r} cannot be read as UTF-8 JSON text: {exc}") from None
    if not isinstance(meta, dict):
        raise FixtureError(f"sidecar {json_path!r} must hold a JSON object, got a JSON {type(meta).__name__}")
    return meta


def _is_int(value, low=None):
    return isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value >= 0


_STR_FIELDS = ("producer", "algorithm", "objective", "cell", "torch_module", "flax_cell", "dtype", "layout")
_INT_FIELDS = ("T", "B", "input_size", "hidden_size", "output_size", "num_layers")


def validate_meta(meta, where):
    """Check every field of a sidecar that refnet reads, by type and range, before any of it is used.

    ``where`` names the file (or "the reference fixture") in the messages.

    Parameters
    ----------
    meta : dict
        The sidecar as read from JSON.
    where : str
        What to call it in error messages (``"sidecar 'x.json'"``).

    Raises
    ------
    FixtureError
        A field of the wrong type or out of range, naming the field and what came.
    """
    def bad(field, expected, got):
        raise FixtureError(f"{where}: {field} must be {expected}, got {got!r}"[:400])

    if not isinstance(meta, dict):
        bad("the sidecar", "a JSON object", type(meta).__name__)
    if meta.get("format") != FORMAT or not _is_int(meta.get("version")) or meta.get("version") not in VERSIONS:
        raise FixtureError(f"{where} must be a {FORMAT!r} sidecar of version {VERSIONS}, got format "
                           f"{meta.get('format')!r} version {meta.get('version')!r}"[:400])
    for name in _STR_FIELDS:
        if name in meta and not isinstance(meta[name], str):
            bad(f"'{name}'", "a string", meta[name])
    for name in _INT_FIELDS:
        if name in meta and not _is_int(meta[name], 0):
            bad(f"'{name}'", "an int >= 0", meta[name])
    if "seed" in meta and meta["seed"] is not None and not _is_int(meta["seed"]):
        bad("'seed'", "an int or null", meta["seed"])
    for name in ("gates", "state"):
        if name in meta and not (isinstance(meta[name], list) and all(isinstance(g, str) for g in meta[name])):
            bad(f"'{name}'", "a list of strings", meta[name])
    if "options" in meta and not isinstance(meta["options"], dict):
        bad("'options'", "an object", meta["options"])
    described = meta.get("arrays")
    if not isinstance(described, dict):
        raise FixtureError(f"{where} must have an 'arrays' object (key -> shape, dtype), got "
                           f"{type(described).__name__}")
    for key, claim in described.items():
        if not isinstance(claim, dict):
            bad(f"arrays[{key!r}]", "an object with shape and dtype", claim)
        if "shape" in claim and not (isinstance(claim["shape"], list)
                                     and all(_is_int(d, 0) for d in claim["shape"])):
            bad(f"arrays[{key!r}].shape", "a list of ints >= 0", claim["shape"])
        if "dtype" in claim and not isinstance(claim["dtype"], str):
            bad(f"arrays[{key!r}].dtype", "a dtype name (string)", claim["dtype"])
        if "description" in claim and not isinstance(claim["description"], str):
            bad(f"arrays[{key!r}].description", "a string", claim["description"])
    tolerances = meta.get("tolerances", {})
    if not isinstance(tolerances, dict):
        bad("'tolerances'", "an object (dtype -> {rtol, atol})", tolerances)
    for dtype, row in tolerances.items():
        if not (isinstance(row, dict) and all(_is_number(row.get(t)) for t in ("rtol", "atol"))):
            bad(f"tolerances[{dtype!r}]", "an object with finite rtol, atol >= 0", row)
    traces = meta.get("traces", {})
    if not isinstance(traces, dict):
        bad("'traces'", "an object (key -> {direction, quantity, layer, order, gate})", traces)
    for key, info in traces.items():
        field = f"traces[{key!r}]"
        if not isinstance(info, dict):
            bad(field, "an object", info)
        if key not in described:
            bad(field, "a key listed in 'arrays'", key)
        if info.get("direction") not in ("forward", "backward"):
            bad(f"{field}.direction", "'forward' or 'backward'", info.get("direction"))
        if not isinstance(info.get("quantity"), str):
            bad(f"{field}.quantity", "a string", info.get("quantity"))
        if not _is_int(info.get("layer"), 0):
            bad(f"{field}.layer", "an int >= 0", info.get("layer"))
        if "order" in info and not _is_int(info["order"]):
            bad(f"{field}.order", "an int", info["order"])
        if info.get("gate") is not None and not isinstance(info["gate"], str):
            bad(f"{field}.gate", "a string or null", info["gate"])
    blocks = meta.get("gate_blocks", {})
    if not isinstance(blocks, dict):
        bad("'gate_blocks'", "an object (key -> {axis, size, gates})", blocks)
    for key, block in blocks.items():
        field = f"gate_blocks[{key!r}]"
        if not isinstance(block, dict):
            bad(field, "an object", block)
        if key not in described:
            bad(field, "a key listed in 'arrays'", key)
        if not _is_int(block.get("axis"), 0):
            bad(f"{field}.axis", "an int >= 0", block.get("axis"))
        if not _is_int(block.get("size"), 1):
            bad(f"{field}.size", "an int >= 1", block.get("size"))
        gates = block.get("gates")
        if not (isinstance(gates, list) and gates and all(isinstance(g, str) for g in gates)):
            bad(f"{field}.gates", "a non-empty list of strings", gates)


def check_meta_against_arrays(meta, arrays, where):
    """The parts of a (validated) sidecar that describe arrays must fit those arrays: traces, gate blocks.

    Parameters
    ----------
    meta : dict
        A sidecar already passed through :func:`validate_meta`.
    arrays : dict {key: array}
        The fixture's arrays; keys the sidecar names but ``arrays`` lacks are skipped here.
    where : str
        What to call the fixture in error messages.

    Raises
    ------
    FixtureError
        A trace key that is not a (T, …) array of ndim >= 2, a gate block whose axis is beyond the
        array's dimensions or whose size × len(gates) is not that axis's length.
    """
    for key, info in meta.get("traces", {}).items():
        if key in arrays and np.ndim(arrays[key]) < 2:
            raise FixtureError(f"{where}: traces[{key!r}] names an array of shape {np.shape(arrays[key])}; a "
                               "trace is (T, B, ...) with ndim >= 2")
    for key, block in meta.get("gate_blocks", {}).items():
        if key not in arrays:
            continue
        shape = np.shape(arrays[key])
        if block["axis"] >= len(shape):
            raise FixtureError(f"{where}: gate_blocks[{key!r}].axis is {block['axis']}, but the array has "
                               f"shape {shape} ({len(shape)} axes)")
        if block["size"] * len(block["gates"]) != shape[block["axis"]]:
            raise FixtureError(f"{where}: gate_blocks[{key!r}] says {len(block['gates'])} gates of size "
                               f"{block['size']} along axis {block['axis']}, but the array has "
                               f"{shape[block['axis']]} rows there (shape {shape})")


def _check_against_sidecar(meta, arrays, npz_path, json_path):
    """Every key, shape and dtype the sidecar lists must be the archive's, and every array listed."""
    described = meta["arrays"]
    missing = sorted(set(described) - set(arrays))
    if missing:
        raise FixtureError(f"{npz_path!r} lacks arrays its sidecar {json_path!r} lists: {missing}")
    unlisted = sorted(set(arrays) - set(described))
    if unlisted:
        raise FixtureError(f"{npz_path!r} holds arrays its sidecar {json_path!r} does not list: {unlisted}")
    for key, claim in described.items():
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
    check_meta_against_arrays(meta, arrays, f"sidecar {json_path!r}")


def load_fixture(path):
    """Read and validate the fixture at ``path`` (a stem, either file, or a folder holding one).

    Parameters
    ----------
    path : str or os.PathLike
        ``DIR/NAME``, either file, or a folder holding exactly one fixture.

    Returns
    -------
    Fixture
        Its ``meta``, its ``arrays`` and the stem it was read from.

    Raises
    ------
    TypeError
        If ``path`` is not a str or os.PathLike.
    FixtureError
        (a ValueError) naming the file and the problem: a file missing
        (:class:`FixtureFileNotFound`, also a FileNotFoundError), a sidecar that is
        not JSON or not a fixture of a known version, an archive that is truncated,
        corrupt, not a zip, holds a member that is not an .npy array, object
        arrays, or a header claiming more data than it holds; a sidecar field of
        the wrong type or range (every field refnet reads: :func:`validate_meta`),
        or a nesting too deep to read; arrays whose keys, shapes or dtypes are not
        the sidecar's, traces or gate blocks that do not fit their arrays.
        Nothing is unpickled; every file is closed.
    """
    npz_path, json_path = fixture_paths(path)
    if not os.path.exists(npz_path):
        raise FixtureFileNotFound(f"fixture file {npz_path!r} does not exist (a fixture is NAME.npz + NAME.json)")
    meta = _read_sidecar(json_path)
    validate_meta(meta, f"sidecar {json_path!r}")
    arrays = load_npz(npz_path)
    _check_against_sidecar(meta, arrays, npz_path, json_path)
    return Fixture(meta, arrays, os.path.splitext(npz_path)[0])


def as_fixture(obj):
    """A :class:`Fixture` from a path or from any object with ``meta`` and ``arrays``.

    A path is loaded with :func:`load_fixture`; an object in memory is
    validated as a sidecar would be (an unsaved one may lack ``format``,
    ``version`` and the ``arrays`` table, which :func:`save_fixture` adds).

    Parameters
    ----------
    obj : str, os.PathLike, Fixture or object
        A fixture path, or anything with ``meta`` (a dict) and ``arrays``.

    Returns
    -------
    Fixture
        ``obj`` itself when it is a Fixture, else a Fixture holding copies
        of its ``meta`` and ``arrays`` dicts.

    Raises
    ------
    TypeError
        If ``obj`` is neither a path nor has ``meta`` and ``arrays``.
    FixtureError
        As :func:`load_fixture` for a path; for an object, a ``meta`` field
        of the wrong type or range, or traces or gate blocks that do not fit
        the arrays.
    """
    if isinstance(obj, (str, os.PathLike)):
        return load_fixture(obj)
    if hasattr(obj, "meta") and hasattr(obj, "arrays"):
        fixture = obj if isinstance(obj, Fixture) else Fixture(dict(obj.meta), dict(obj.arrays))
        where = f"fixture {fixture.path!r}" if fixture.path else "the fixture given in memory"
        meta = fixture.meta if isinstance(fixture.meta, dict) else None
        if meta is not None and fixture.path is None:
            # an in-memory fixture (refnet.fixtures, or the user's own) before saving: save_fixture adds
            # format, version and the arrays table, so check only the fields that are there
            meta = dict(meta, format=meta.get("format", FORMAT), version=meta.get("version", VERSIONS[-1]),
                        arrays=meta.get("arrays") or {})
        validate_meta(meta, where)
        check_meta_against_arrays(fixture.meta, fixture.arrays, where)
        return fixture
    raise TypeError(f"a fixture must be a path or have meta and arrays, got {type(obj).__name__}")
