"""refnet.optim: SGD, Adagrad and Adam take PyTorch's steps; bad hyper-parameters are named."""
import numpy as np
import pytest

from refnet.optim import SGD, Adagrad, Adam


def _params(seed=0):
    r = np.random.default_rng(seed)
    return {"W": r.normal(size=(3, 4)), "b": r.normal(size=5)}


def _grads(params, r):
    return {k: r.normal(size=v.shape) for k, v in params.items()}


def test_first_steps_follow_the_formulas():
    g = {"W": np.array([2.0, -0.5])}
    p = {"W": np.zeros(2)}
    SGD(0.1).update(p, g, SGD(0.1).init(p))
    np.testing.assert_allclose(p["W"], [-0.2, 0.05], rtol=1e-15)
    p = {"W": np.zeros(2)}
    Adagrad(0.1).update(p, g, Adagrad(0.1).init(p))       # θ − lr g / |g|
    np.testing.assert_allclose(p["W"], [-0.1, 0.1], rtol=1e-9)
    p = {"W": np.zeros(2)}
    Adam(0.01).update(p, g, Adam(0.01).init(p))           # bias correction: θ − lr sign(g)
    np.testing.assert_allclose(p["W"], [-0.01, 0.01], rtol=1e-7)


def test_sgd_momentum_accumulates_the_buffer():
    p, opt = {"W": np.zeros(1)}, SGD(1.0, momentum=0.5)
    state = opt.init(p)
    for _ in range(3):
        state = opt.update(p, {"W": np.ones(1)}, state)
    np.testing.assert_allclose(p["W"], [-(1 + 1.5 + 1.75)], rtol=1e-15)


def test_adam_counts_its_steps_and_updates_in_place():
    p = _params()
    W = p["W"]
    opt = Adam()
    state = opt.update(p, _grads(p, np.random.default_rng(1)), opt.init(p))
    assert state.t == 1 and p["W"] is W


@pytest.mark.parametrize("ours, name, kwargs", [
    (SGD(0.1), "SGD", {"lr": 0.1}),
    (SGD(0.1, momentum=0.9), "SGD", {"lr": 0.1, "momentum": 0.9}),
    (Adagrad(0.1), "Adagrad", {"lr": 0.1}),
    (Adam(0.01), "Adam", {"lr": 0.01}),
])
def test_steps_equal_torch_optim(ours, name, kwargs):
    torch = pytest.importorskip("torch")
    params = _params()
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    theirs = getattr(torch.optim, name)(leaves.values(), **kwargs)
    state = ours.init(params)
    r = np.random.default_rng(2)
    for _ in range(25):
        grads = _grads(params, r)
        for k, leaf in leaves.items():
            leaf.grad = torch.from_numpy(grads[k])
        theirs.step()
        state = ours.update(params, grads, state)
    for k, leaf in leaves.items():
        # Same formulas in float64; the order of a few operations differs: rounding.
        np.testing.assert_allclose(params[k], leaf.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make, match", [
    (lambda: SGD(-1.0), r"lr must be a finite number >= 0, got -1.0"),
    (lambda: SGD(0.1, momentum=1.0), r"momentum must be a number in \[0, 1\), got 1.0"),
    (lambda: Adagrad(float("nan")), r"lr must be a finite number >= 0, got nan"),
    (lambda: Adagrad(0.1, eps=0.0), r"eps must be a finite number > 0, got 0.0"),
    (lambda: Adam(beta2=1.5), r"beta2 must be a number in \[0, 1\), got 1.5"),
])
def test_bad_hyper_parameters_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
