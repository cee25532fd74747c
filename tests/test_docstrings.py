"""Every public function, class and method of refnet and gradcheck has the numpydoc sections a reader relies on.

"Public" means: named in the ``__all__`` of a module whose dotted path has no
component starting with an underscore (``__init__`` aside), defined in that
module or re-exported there from a private one (``refnet._validate``), and,
for a class, every method, property, classmethod and staticmethod its own
body defines without a leading underscore, and ``__call__``.  Each must have

- a docstring with a one-line summary;
- a ``Parameters`` section naming every parameter of the signature (``self``
  and ``cls`` aside), one per entry, each with its type or shape (``x, y : ...`` on one line is refused);
  a dataclass or named tuple may list its fields under ``Attributes`` instead;
  no entry may name a parameter the signature does not have;
- a ``Returns`` (or ``Yields``) section when the body returns a value;
- a ``Raises`` section, except on a property and on a class whose
  ``__init__`` is generated (dataclass, named tuple) — those cannot refuse
  anything of their own.

The sections are parsed by numpydoc's own parser (``numpydoc.docscrape``), so
a heading that numpydoc would not read as a section does not count.  Shapes
(``x : (T, B, n_in)``) and the paper and equation each function implements
are the authors' duty; the test enforces the sections' presence and their
agreement with the signature.
"""
import ast
import dataclasses
import importlib
import inspect
import pkgutil
import textwrap
from pathlib import Path

import pytest

docscrape = pytest.importorskip("numpydoc.docscrape")

PACKAGES = ("refnet", "gradcheck")
ROOT = Path(__file__).resolve().parents[1]


def _public_modules():
    """Dotted names of every public module of the checked packages, found on disk (no import needed)."""
    names = []
    for package in PACKAGES:
        names.append(package)
        for info in pkgutil.walk_packages([str(ROOT / package)], package + "."):
            parts = info.name.split(".")[1:]
            if any(p.startswith("_") for p in parts):
                continue
            names.append(info.name)
    return sorted(names)


def _is_generated_init(cls):
    """Whether ``cls.__init__`` is written by dataclasses or namedtuple, not by the class's author.

    A dataclass's generated ``__init__`` is compiled from a string, so its code
    has no file; a named tuple's ``__new__`` is generated the same way.
    """
    if dataclasses.is_dataclass(cls):
        code = getattr(cls.__init__, "__code__", None)
        return code is not None and code.co_filename.startswith("<")
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def _returns_a_value(function):
    """Whether the source of ``function`` has a ``return <value>`` outside nested functions, or yields."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return False
    tree = ast.parse(source)
    body = tree.body[0]
    for node in ast.walk(body):
        if node is not body and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            if _inside_nested(body, node):
                continue
            return True
        if isinstance(node, (ast.Yield, ast.YieldFrom)) and not _inside_nested(body, node):
            return True
    return False


def _inside_nested(body, target):
    """Whether ``target`` lies inside a function or class nested in ``body``."""
    for node in ast.walk(body):
        if node is not body and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            if any(child is target for child in ast.walk(node)):
                return True
    return False


def _signature_names(function, skip_first):
    """Parameter names as a numpydoc entry writes them (``*args``, ``**kwargs``), self/cls dropped."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return []
    if skip_first and parameters:
        parameters = parameters[1:]
    names = []
    for p in parameters:
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(p.kind, "")
        names.append(prefix + p.name)
    return names


def _entry_names(section):
    return [entry.name.strip() for entry in section]


def problems(obj, *, kind, owner=None):
    """What the docstring of ``obj`` lacks, as a list of short sentences (empty when it is complete).

    ``kind`` is 'function', 'class', 'method' or 'property'; ``owner`` the class of a method.
    """
    found = []
    doc_text = inspect.getdoc(obj.fget if kind == "property" else obj) if kind == "property" else obj.__doc__
    if not doc_text or not doc_text.strip():
        return ["no docstring"]
    try:
        doc = docscrape.NumpyDocString(inspect.cleandoc(doc_text))
    except Exception as error:      # numpydoc raises ValueError/ParseError subclasses on malformed sections
        return [f"numpydoc cannot parse it: {error}"]
    if not "".join(doc["Summary"]).strip():
        found.append("no one-line summary")
    if kind == "property":
        return found

    if kind == "class":
        generated = _is_generated_init(obj)
        init = obj.__init__
        if generated and not dataclasses.is_dataclass(obj):
            expected = list(obj._fields)           # a named tuple: its fields (its __init__ is object's)
        else:
            own_init = generated or any("__init__" in vars(b) for b in obj.__mro__[:-1] if b.__module__ != "builtins")
            expected = _signature_names(init, skip_first=True) if own_init else []
        documented = _entry_names(doc["Parameters"]) + _entry_names(doc["Other Parameters"])
        if generated:
            documented += _entry_names(doc["Attributes"])
        function = init
    else:
        generated = False
        function = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
        skip = kind == "method" and not isinstance(obj, staticmethod)
        expected = _signature_names(function, skip_first=skip)
        documented = _entry_names(doc["Parameters"]) + _entry_names(doc["Other Parameters"])

    untyped = [entry.name.strip() for entry in list(doc["Parameters"]) + list(doc["Other Parameters"])
               if not entry.type.strip()]
    if untyped:
        found.append(f"parameters without a type or shape: {untyped}")
    joined = [name for name in documented if "," in name]
    if joined:
        found.append(f"one parameter per entry: {joined}")
    flat = {n.strip() for name in documented for n in name.split(",")}
    missing = [name for name in expected if name not in flat and name.lstrip("*") not in flat]
    if missing:
        found.append(f"parameters not documented: {missing}")
    builtin_init = kind == "class" and not expected and not any(
        "__init__" in vars(b) for b in obj.__mro__[:-1] if b.__module__ != "builtins")
    if kind != "class" or not (generated or builtin_init):   # a builtin __init__ (*args) may be described
        stray = sorted(n for n in flat if n.lstrip("*") not in {e.lstrip("*") for e in expected})
        if stray and expected is not None:
            found.append(f"documented parameters the signature lacks: {stray}")
    if kind != "class" and _returns_a_value(function) and not (doc["Returns"] or doc["Yields"]):
        found.append("no Returns section")
    if not doc["Raises"] and not generated and not builtin_init:
        found.append("no Raises section")
    return found


def _items(module_name):
    """(qualified name, object, kind) for every public item the module defines."""
    module = importlib.import_module(module_name)
    items = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        home = obj.__module__ or ""
        private_home = home.split(".")[0] == module_name.split(".")[0] and any(
            part.startswith("_") for part in home.split(".")[1:])
        if home != module_name and not private_home:   # defined elsewhere public: checked at home
            continue
        if inspect.isfunction(obj):
            items.append((f"{module_name}.{name}", obj, "function", None))
            continue
        items.append((f"{module_name}.{name}", obj, "class", None))
        if issubclass(obj, BaseException):
            continue
        fields = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
        for attr, value in vars(obj).items():
            if (attr.startswith("_") and attr != "__call__") or attr in fields:   # a field's default is data
                continue
            qualified = f"{module_name}.{name}.{attr}"
            if isinstance(value, property):
                items.append((qualified, value, "property", obj))
            elif inspect.isfunction(value) or isinstance(value, (staticmethod, classmethod)):
                items.append((qualified, value, "method", obj))
    return items


MODULES = _public_modules()


def test_the_public_modules_are_found():
    assert {"refnet", "refnet.cells.lstm", "refnet.algorithms.bptt", "refnet.solvers.linear",
            "gradcheck.check", "gradcheck.verdict"} <= set(MODULES)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_item_has_its_numpydoc_sections(module_name):
    report = []
    for qualified, obj, kind, owner in _items(module_name):
        missing = problems(obj, kind=kind, owner=owner)
        if missing:
            report.append(f"{qualified}: {'; '.join(missing)}")
    assert not report, "\n".join(report)


# ----------------------------------------------------------------- the checker itself can fail

def _complete(x, y=1):
    """Add.

    Parameters
    ----------
    x : (B, n)
        Summand.
    y : float
        Summand.

    Returns
    -------
    (B, n)

    Raises
    ------
    TypeError
        If x is not an array.
    """
    return x + y


def _joined(x, y):
    """Add.

    Parameters
    ----------
    x, y : float

    Returns
    -------
    float

    Raises
    ------
    TypeError
        Never in practice.
    """
    return x + y


def _bare(x):
    """Add one."""
    return x + 1


def test_a_complete_docstring_passes():
    assert problems(_complete, kind="function") == []


def test_joined_parameters_are_named():
    assert problems(_joined, kind="function") == ["one parameter per entry: ['x, y']"]


def test_a_bare_docstring_lacks_every_section():
    assert problems(_bare, kind="function") == ["parameters not documented: ['x']", "no Returns section",
                                                "no Raises section"]


def test_a_documented_parameter_the_signature_lacks_is_named():
    def stale(x):
        """Stale.

        Parameters
        ----------
        x : float
        old : float

        Raises
        ------
        ValueError
        """
    assert problems(stale, kind="function") == ["documented parameters the signature lacks: ['old']"]


def test_a_named_tuple_documents_its_fields():
    from typing import NamedTuple

    class Pair(NamedTuple):
        """A pair.

        Attributes
        ----------
        first : float
        second : float
        """
        first: float
        second: float
    assert problems(Pair, kind="class") == []
    Pair.__doc__ = "A pair."
    assert problems(Pair, kind="class") == ["parameters not documented: ['first', 'second']"]


def test_a_dataclass_may_document_its_fields_as_attributes():
    @dataclasses.dataclass
    class Result:
        """A result.

        Attributes
        ----------
        value : float
        """
        value: float
    assert problems(Result, kind="class") == []
    Result.__doc__ = "A result."
    assert problems(Result, kind="class") == ["parameters not documented: ['value']"]


def test_a_parameter_without_a_type_or_shape_is_named():
    def bare_entry(x):
        """Bare.

        Parameters
        ----------
        x
            Something.

        Raises
        ------
        ValueError
        """
    assert problems(bare_entry, kind="function") == ["parameters without a type or shape: ['x']"]


def test_call_of_a_public_class_is_checked():
    class Map:
        """A map.

        Raises
        ------
        None
            Nothing of its own.
        """

        def __call__(self, h):
            return h
    listed = [(kind, problems(obj, kind=kind)) for _, obj, kind, _ in _items_of_class(Map)]
    assert ("method", ["no docstring"]) in listed


def _items_of_class(cls):
    """The (name, object, kind, owner) items the module walk yields for one class, for the test above."""
    import types
    module = types.ModuleType("refnet_docstring_probe")
    module.__all__ = ["Map"]
    cls.__module__ = module.__name__
    module.Map = cls
    import sys
    sys.modules[module.__name__] = module
    try:
        return _items(module.__name__)
    finally:
        del sys.modules[module.__name__]
