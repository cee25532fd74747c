"""gradcheck.check_torch: one call checks a PyTorch RNN's gradients against refnet (gradcheck/oracle.py)."""
import numpy as np
import pytest

from gradcheck import check_torch

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _data(B=2, T=5, I=3, seed=0):
    torch.manual_seed(seed)
    return torch.randn(T, B, I, dtype=torch.float64), torch.randint(0, 4, (T, B))


@pytest.mark.parametrize("make", [lambda: torch.nn.LSTM(3, 5, num_layers=2),
                                  lambda: torch.nn.GRU(3, 5, bias=False),
                                  lambda: torch.nn.RNN(3, 5, num_layers=3, nonlinearity="relu")])
def test_a_torch_module_with_a_cross_entropy_head_passes(make):
    x, y = _data()
    model, head = make().double(), torch.nn.Linear(5, 4).double()
    report = check_torch(model, x, loss=lambda out, _: F.cross_entropy(head(out).flatten(0, 1), y.flatten()))
    assert report.passed, report
    keys = {a.key for a in report.arrays}
    assert {"grads/x", "grads/h0", "grads/weight_hh_l0", f"forward/h_l{model.num_layers - 1}"} <= keys


def test_the_final_state_enters_the_loss_and_initial_states_are_the_users():
    x, _ = _data()
    lstm = torch.nn.LSTM(3, 4).double()
    h0, c0 = 0.5 * torch.randn(1, 2, 4, dtype=torch.float64), torch.randn(1, 2, 4, dtype=torch.float64)
    report = check_torch(lstm, x, h0=h0, c0=c0, loss=lambda out, state: (out ** 3).sum() + state[1].pow(2).sum())
    assert report.passed, report
    assert "grads/c0" in {a.key for a in report.arrays}


def test_a_wrong_gradient_function_fails_and_names_the_gate():
    x, _ = _data()
    gru = torch.nn.GRU(3, 4).double()
    loss = lambda out, h_n: (out ** 2).sum() + h_n.sum()  # noqa: E731

    def my_grads(x, h0):
        out, h_n = gru(x, h0)
        g = torch.autograd.grad(loss(out, h_n), [gru.weight_hh_l0, x])
        wrong = g[0].clone()
        wrong[4 + 2] += 1e-3           # gate z (rows 4..7), unit 2
        return {"weight_hh_l0": wrong, "x": g[1]}

    report = check_torch(gru, x, loss=loss, grads=my_grads)
    assert report.verdict.failed
    bad = next(a for a in report.arrays if not a.passed)
    assert (bad.key, bad.gate, bad.unit) == ("grads/weight_hh_l0", "z", 2)


def test_a_correct_gradient_function_on_a_state_dict_passes():
    x, _ = _data()
    rnn = torch.nn.RNN(3, 4).double()
    loss = lambda out, h_n: out.tanh().sum()  # noqa: E731

    def my_grads(x, h0):
        out, h_n = rnn(x, h0)
        return dict(zip(("weight_ih_l0", "x", "h0"),
                        torch.autograd.grad(loss(out, h_n), [rnn.weight_ih_l0, x, h0])))

    assert check_torch(rnn.state_dict(), x, loss=loss, grads=my_grads).passed


def test_a_float32_module_is_held_to_the_float32_tolerances():
    x, y = _data()
    lstm, head = torch.nn.LSTM(3, 5), torch.nn.Linear(5, 4)
    report = check_torch(lstm, x.float(), loss=lambda out, _: F.cross_entropy(head(out).flatten(0, 1), y.flatten()))
    assert report.passed and report.dtype == "float32" and report.rtol == pytest.approx(1e-4)


def test_a_loss_with_zero_cotangents_is_inconclusive_not_passed():
    x, _ = _data()
    report = check_torch(torch.nn.GRU(3, 4).double(), x, loss=lambda out, h: 0.0 * out.sum())
    assert report.verdict.is_inconclusive and not report.passed
    assert "nothing was tested" in report.reason


def test_bad_arguments_are_named():
    x, _ = _data()
    gru = torch.nn.GRU(3, 4).double()
    with pytest.raises(TypeError, match="loss must be a callable"):
        check_torch(gru, x, loss=None)
    with pytest.raises(TypeError, match=r"loss\(output, state\) must return a scalar"):
        check_torch(gru, x, loss=lambda out, h: out)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, \*, 3\)"):
        check_torch(gru, np.zeros((2, 2, 5)), loss=lambda out, h: out.sum())
    with pytest.raises(TypeError, match="model must be a torch"):
        check_torch(gru.state_dict(), x, loss=lambda out, h: out.sum())
    with pytest.raises(TypeError, match="must return a dict"):
        check_torch(gru, x, loss=lambda out, h: out.sum(), grads=lambda x, h0: [1])
    dropping = torch.nn.LSTM(3, 4, num_layers=2, dropout=0.5).double()
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        check_torch(dropping, x, loss=lambda out, h: out.sum())
    assert check_torch(dropping.eval(), x, loss=lambda out, h: out.sum()).passed


def test_the_readme_example_runs_as_written():
    readme = (__import__("pathlib").Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("### One call: `gradcheck.check_torch`")
    code = readme[readme.index("```python\n", start) + 10:readme.index("```\n", readme.index("```python\n", start))]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)     # its last line asserts report.passed
    assert namespace["report"].passed
