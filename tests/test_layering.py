"""The layers of DESIGN.md §2, read from the source with ``ast``: no module imports a layer above its own,
no import cycle among refnet's modules, and gradcheck imports refnet only where §2 allows.

Every ``import``/``from … import`` counts, including those inside functions (a lazy import is
still a dependency).  A module may import its own layer and the layers below it.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# DESIGN.md §2, lowest first: a module may import modules of its own layer or of a lower one.
LAYERS = [
    ("refnet.backend", "refnet._strict", "refnet.errors", "refnet._validate", "refnet._version"),
    ("refnet.params",),
    ("refnet.kernels",),
    ("refnet.solvers",),
    ("refnet.cells",),
    ("refnet.heads", "refnet.heads_mlp"),
    ("refnet.algorithms",),
    ("refnet.optim",),
    ("refnet.online", "refnet.online_kernels"),
    ("refnet.tasks",),
    ("refnet.interop", "refnet.interop_keras", "refnet.interop_edgeml"),
    ("refnet.fixtures",),
    ("refnet.sweep",),
    # commands that drive the whole library: the benchmarks and the kernel-cache warmer
    # (``python -m refnet.kernels`` compiles every kernel by running the learners that call them)
    ("refnet.bench", "refnet.kernels.warm", "refnet.kernels.__main__"),
]
# gradcheck is NumPy-only except the matrix (one module per family) and the CLI (the matrix runner
# and its ``export`` subcommand).
GRADCHECK_MAY_IMPORT_REFNET = ("gradcheck.matrix", "gradcheck.__main__", "gradcheck.cli_fixtures",
                               "gradcheck.oracle")   # check_torch: imports refnet when called


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package):
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


REFNET = _modules("refnet")


def _resolve(module, path, node):
    """The absolute module names an import statement brings in (a submodule where it names one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module
    names = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        names.append(candidate if candidate in REFNET else base)
    return names


def _imports(module, path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(_resolve(module, path, node))
    return found


def _layer(module):
    """The layer of the longest prefix in LAYERS that names ``module`` or a package above it."""
    matches = [(len(p), index) for index, prefixes in enumerate(LAYERS) for p in prefixes
               if module == p or module.startswith(p + ".")]
    return max(matches)[1] if matches else None


def _refnet_targets(imports):
    """The refnet modules among ``imports``, each as the deepest module that exists."""
    out = set()
    for name in imports:
        if name == "refnet" or name.startswith("refnet."):
            while name not in REFNET and "." in name:
                name = name.rpartition(".")[0]
            out.add(name)
    return out


GRAPH = {module: _refnet_targets(_imports(module, path)) for module, path in REFNET.items()}


def test_every_refnet_module_has_a_layer():
    unplaced = [m for m in REFNET if m != "refnet" and _layer(m) is None]
    assert not unplaced, f"modules outside DESIGN.md §2's layers: {unplaced}"


@pytest.mark.parametrize("module", sorted(m for m in REFNET if m != "refnet"))
def test_no_module_imports_a_layer_above_its_own(module):
    mine = _layer(module)
    bad = sorted(t for t in GRAPH[module] if t == "refnet" or _layer(t) > mine)
    assert not bad, (f"{module} (layer {LAYERS[mine][0]}) imports {bad}, above it in DESIGN.md §2"
                     " (or the whole package)")


def _cycles(graph):
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_there_is_no_import_cycle_among_refnet_modules():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    # Guards the test above against passing vacuously.
    planted = dict(GRAPH)
    planted["refnet.backend"] = GRAPH["refnet.backend"] | {"refnet.solvers.linear"}
    assert any("refnet.backend" in c and "refnet.solvers.linear" in c for c in _cycles(planted))


def test_the_layer_check_sees_a_cell_importing_an_algorithm():
    # The fault issue 12 removed: refnet/cells/ernn_exact.py imported refnet.algorithms.equilibrium.
    assert _layer("refnet.algorithms.rbp") > _layer("refnet.cells.ernn_exact")
    assert _refnet_targets({"refnet.algorithms.rbp.implicit_vjp"}) == {"refnet.algorithms.rbp"}


def test_the_solver_layer_imports_nothing_above_the_kernels():
    above = {t for m in REFNET if m.startswith("refnet.solvers") for t in GRAPH[m]
             if _layer(t) > _layer("refnet.solvers")}
    assert above == set()
    assert "refnet.solvers.nonlinear" in GRAPH["refnet.cells.ernn_exact"]


@pytest.mark.parametrize("module, path", sorted(_modules("gradcheck").items()))
def test_gradcheck_imports_refnet_only_from_the_matrix_and_the_cli(module, path):
    if any(module == p or module.startswith(p + ".") for p in GRADCHECK_MAY_IMPORT_REFNET):
        return
    refnet_imports = sorted(n for n in _imports(module, path) if n == "refnet" or n.startswith("refnet."))
    assert not refnet_imports, f"{module} imports {refnet_imports}: gradcheck is NumPy-only outside the matrix"
