"""Every cell × every algorithm and online learner runs a few steps, or refuses by name (issue 11, item 7).

Cells and learners are found by introspection (every refnet.cells.Cell subclass defined in a
module of refnet.cells, every OnlineLearner in refnet.online), so a new cell or learner is
covered without editing this file; one whose constructor needs an argument this file does not
know fails with a message saying which.  A run passes if everything it returns is finite, or
if it refuses with TypeError/ValueError/NotImplementedError whose message names the cell's
class (and so the capability it lacks, e.g. KF-RTRL's ``kronecker_factors``).
"""
import dataclasses
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import refnet
import refnet.cells
from refnet import online
from refnet.algorithms import bptt, fpp_grad, kfrtrl, rflo, rtrl, sequence_vjp, snap, tbptt, uoro
from refnet.cells.base import CONTRACT_NAMES, REQUIRED_METHODS, Cell, contract_clashes
from refnet.optim import SGD

T, B = 5, 2
# Values for constructor fields without a default, by name.
SIZES = {"input_size": 3, "hidden_size": 4, "output_size": 2, "capacity": T + 1}
# Internal cells that are not sequence cells, with the reason.
INTERNAL = {"StepMap": "one step's map h -> T(h) for the equilibrium solvers (static input, JVP of the state only)"}
# Constructor variants worth covering beyond the defaults: the per-step η of the ERNN reads t.
VARIANTS = {"ERNN": [{}, {"sequence_length": T}]}


def _cell_classes():
    for module in pkgutil.iter_modules(refnet.cells.__path__):
        importlib.import_module(f"refnet.cells.{module.name}")
    found, stack = [], list(Cell.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("refnet.cells.") and not cls.__name__.startswith("_") \
                and cls.__name__ not in INTERNAL and cls not in found:
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def _build(cls, extra):
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.init:
            if f.name not in SIZES:
                pytest.fail(f"{cls.__name__} needs {f.name!r}: add a small value for it to SIZES")
            kwargs[f.name] = SIZES[f.name]
    return cls(**{**kwargs, **extra})


CELLS = [(f"{cls.__name__}{'-' + '-'.join(f'{k}={v}' for k, v in extra.items()) if extra else ''}", cls, extra)
         for cls in _cell_classes() for extra in VARIANTS.get(cls.__name__, [{}])]
LEARNERS = sorted((cls for _, cls in inspect.getmembers(online, inspect.isclass)
                   if issubclass(cls, online.OnlineLearner) and cls is not online.OnlineLearner),
                  key=lambda c: c.__name__)
LEARNER_KWARGS = {"rng": lambda: refnet.rng(1), "k": lambda: 2, "n": lambda: 2}


def test_introspection_finds_the_cells_the_issue_names():
    names = {cls.__name__ for _, cls, _ in CELLS}
    assert {"ElmanRNN", "IRNN", "LSTM", "GRU", "ERNN", "ExactERNN", "ToyERNN", "FastRNN", "FastGRNN",
            "FastWeights", "FastWeightsAttention", "Hopfield"} <= names
    assert {"TBPTTLearner", "RTRLLearner", "UOROLearner", "KFRTRLLearner", "FPPLearner"} <= \
        {cls.__name__ for cls in LEARNERS}


def _problem(cls, extra, seed=0):
    cell = _build(cls, extra)
    r = refnet.rng(seed)
    theta = cell.init(r)
    head = refnet.Head(cell.n_out, 3)
    beta = head.init(r)
    x = r.normal((T, B, cell.input_size), 0.5)
    y = r.integers(0, 3, (T, B))
    return cell, theta, head, beta, x, y


def _assert_finite(value, what):
    if isinstance(value, dict):
        for k, v in value.items():
            _assert_finite(v, f"{what}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _assert_finite(v, f"{what}[{i}]")
    elif value is not None and not isinstance(value, (int, str)):
        assert np.isfinite(refnet.to_numpy(np.asarray(value) if isinstance(value, float) else value)).all(), what


def _runs_or_refuses_by_name(cell, run):
    try:
        result = run()
    except (TypeError, ValueError, NotImplementedError) as exc:
        assert type(cell).__name__ in str(exc), f"a refusal must name the cell: {exc!r}"
        assert any(name in str(exc) for name in CONTRACT_NAMES), f"a refusal must name the capability: {exc!r}"
        return None
    return result


ALGORITHMS = {
    "bptt": lambda c, th, h, b, x, y: bptt(c, th, x, None, h, b, y),
    "tbptt": lambda c, th, h, b, x, y: tbptt(c, th, x, None, h, b, y, k1=2, k2=3),
    "sequence_vjp": lambda c, th, h, b, x, y: sequence_vjp(c, th, x, None, np.ones((T, B, c.n_out))),
    "rtrl": lambda c, th, h, b, x, y: rtrl(c, th, x, None, h, b, y),
    "uoro": lambda c, th, h, b, x, y: uoro(c, th, x, None, h, b, y, rng=refnet.rng(2)),
    "kfrtrl": lambda c, th, h, b, x, y: kfrtrl(c, th, x, None, h, b, y, rng=refnet.rng(2)),
    "snap": lambda c, th, h, b, x, y: snap(c, th, x, None, h, b, y, n=1),
    "rflo": lambda c, th, h, b, x, y: rflo(c, th, x, None, h, b, y),
    "fpp_grad": lambda c, th, h, b, x, y: fpp_grad(c, th, h, b, np.zeros((B, c.n_state)), x[0], x[1],
                                                   np.zeros((B, c.n_state)), y[0], np.full(B, 1.0 / B), t=0),
}


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("name, cls, extra", CELLS, ids=[c[0] for c in CELLS])
def test_every_algorithm_runs_on_every_cell_or_refuses_by_name(name, cls, extra, algorithm):
    cell, theta, head, beta, x, y = _problem(cls, extra)
    result = _runs_or_refuses_by_name(cell, lambda: ALGORITHMS[algorithm](cell, theta, head, beta, x, y))
    if result is not None:
        _assert_finite(dataclasses.asdict(result), f"{algorithm} on {name}")


def _learner(learner_cls, cell, theta, head, beta):
    kwargs = {}
    for p in inspect.signature(learner_cls.__init__).parameters.values():
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            if p.name not in LEARNER_KWARGS:
                pytest.fail(f"{learner_cls.__name__} needs {p.name!r}: add a value for it to LEARNER_KWARGS")
            kwargs[p.name] = LEARNER_KWARGS[p.name]()
    return learner_cls(cell, head, theta, beta, SGD(0.01), batch=B, **kwargs)


@pytest.mark.parametrize("learner_cls", LEARNERS, ids=[c.__name__ for c in LEARNERS])
@pytest.mark.parametrize("name, cls, extra", CELLS, ids=[c[0] for c in CELLS])
def test_every_learner_runs_on_every_cell_or_refuses_by_name(name, cls, extra, learner_cls):
    cell, theta, head, beta, x, y = _problem(cls, extra)

    def run():
        learner = _learner(learner_cls, cell, theta, head, beta)
        losses = [learner.step(x[t], y[t]).loss for t in range(T)]
        return losses, learner.w, learner.s

    result = _runs_or_refuses_by_name(cell, run)
    if result is not None:
        _assert_finite(result, f"{learner_cls.__name__} on {name}")


def test_tbptt_learner_runs_on_the_ernn_whose_field_once_hid_the_steps_method():
    cell, theta, head, beta, x, y = _problem(refnet.ERNN, {"sequence_length": T})
    learner = online.TBPTTLearner(cell, head, theta, beta, SGD(0.01), k=2, batch=B)
    assert all(np.isfinite(learner.step(x[t], y[t]).loss) for t in range(T))


@pytest.mark.parametrize("name, cls, extra", CELLS, ids=[c[0] for c in CELLS])
def test_no_cell_reuses_a_contract_name(name, cls, extra):
    cell = _build(cls, extra)
    assert contract_clashes(cell) == []
    for method in REQUIRED_METHODS:
        assert hasattr(cell, method), f"{name} lacks {method}"
    for capability in set(CONTRACT_NAMES) - set(REQUIRED_METHODS):
        declared = next((k.__dict__[capability] for k in type(cell).__mro__ if capability in k.__dict__), None)
        assert declared is None or callable(declared) or isinstance(declared, property), \
            f"{name}.{capability} is {declared!r}, not a method or property"


def test_a_cell_class_with_a_field_named_like_a_contract_method_is_refused():
    with pytest.raises(TypeError, match="must not have a field named 'steps'"):
        @dataclasses.dataclass(frozen=True)
        class Shadowing(Cell):
            input_size: int
            hidden_size: int
            steps: int = 3
