"""refnet.online: each learner's gradients, with θ held fixed, are its sequence algorithm's."""
import numpy as np
import pytest

import refnet
from gradcheck import compare_grads
from refnet import heads
from refnet.algorithms.kfrtrl import kfrtrl
from refnet.algorithms.uoro import uoro
from refnet.online import KFRTRLLearner, RTRLLearner, Step, TBPTTLearner, UOROLearner
from refnet.optim import SGD, Adagrad

from conftest import make_cell

T = 7


def _problem(name, B=1, seed=0, loss=heads.sigmoid_bce):
    r = refnet.rng(seed)
    cell = make_cell(name)
    head = refnet.Head(cell.n_out, 2, loss)
    theta, beta = cell.init(r), head.init(r)
    x = r.normal((T, B, 3))
    y = r.integers(0, 2, (T, B)) if loss.label_target else r.uniform((T, B, 2))
    return cell, theta, x, head, beta, y


def _summed_gradients(learner, x, y):
    """Run the learner over the stream; Σ_t of its per-step gradients (θ fixed by lr = 0)."""
    dtheta = {k: np.zeros_like(v) for k, v in learner.dtheta.items()}
    dbeta = {k: np.zeros_like(v) for k, v in learner.dbeta.items()}
    losses = 0.0
    for t in range(x.shape[0]):
        losses += learner.step(x[t], y[t]).loss
        for k in dtheta:
            dtheta[k] += learner.dtheta[k]
        for k in dbeta:
            dbeta[k] += learner.dbeta[k]
    return losses, dtheta, dbeta


def _every_step_summed(B):
    # Each online loss is the batch mean at one step: weights 1/B at every (t, b).
    return np.full((T, B), 1.0 / B)


def _same(learned, reference, rtol=1e-12):
    loss, dtheta, dbeta = learned
    assert loss == pytest.approx(reference.loss, rel=1e-12)
    compare_grads({**dtheta, **{f"beta/{k}": v for k, v in dbeta.items()}},
                  {**reference.dtheta, **{f"beta/{k}": v for k, v in reference.dbeta.items()}}, rtol=rtol)


@pytest.mark.parametrize("name, B", [("elman_tanh", 1), ("lstm", 1), ("gru", 2)])
def test_rtrl_learner_with_theta_fixed_sums_to_bptt(name, B):
    cell, theta, x, head, beta, y = _problem(name, B)
    learner = RTRLLearner(cell, head, theta, beta, SGD(0.0), batch=B)
    # The same sums in another order: rounding only.
    _same(_summed_gradients(learner, x, y), refnet.bptt(cell, theta, x, None, head, beta, y, _every_step_summed(B)))


@pytest.mark.parametrize("name, k", [("elman_tanh", 1), ("elman_relu", 3), ("gru", 4)])
def test_tbptt_learner_with_theta_fixed_sums_to_tbptt_1_k(name, k):
    cell, theta, x, head, beta, y = _problem(name)
    learner = TBPTTLearner(cell, head, theta, beta, SGD(0.0), k=k)
    reference = refnet.tbptt(cell, theta, x, None, head, beta, y, _every_step_summed(1), k1=1, k2=k)
    _same(_summed_gradients(learner, x, y), reference)


def test_uoro_learner_with_theta_fixed_sums_to_uoro():
    # Same seed, same signs: the learner draws them in blocks whose first T steps are uoro's.
    cell, theta, x, head, beta, y = _problem("lstm")
    learner = UOROLearner(cell, head, theta, beta, SGD(0.0), rng=refnet.rng(3))
    reference = uoro(cell, theta, x, None, head, beta, y, _every_step_summed(1), rng=refnet.rng(3))
    _same(_summed_gradients(learner, x, y), reference)


def test_kfrtrl_learner_with_theta_fixed_sums_to_kfrtrl():
    cell, theta, x, head, beta, y = _problem("elman_tanh", B=2)
    learner = KFRTRLLearner(cell, head, theta, beta, SGD(0.0), rng=refnet.rng(4), batch=2)
    reference = kfrtrl(cell, theta, x, None, head, beta, y, _every_step_summed(2), rng=refnet.rng(4))
    _same(_summed_gradients(learner, x, y), reference)


def test_predict_returns_the_head_output_of_the_new_state_before_learning():
    cell, theta, x, head, beta, y = _problem("gru")
    learner = RTRLLearner(cell, head, theta, beta, Adagrad(0.1))
    prediction = learner.predict(x[0])
    s1, _ = cell.step(theta, np.zeros((1, 4)), x[0])
    np.testing.assert_allclose(prediction, head.forward(beta, s1), rtol=1e-14)
    step = learner.step(x[1], y[1])
    assert isinstance(step, Step) and step.loss > 0


def test_learner_owns_a_copy_of_the_parameters_and_updates_it():
    cell, theta, x, head, beta, y = _problem("elman_tanh")
    before = {k: v.copy() for k, v in theta.items()}
    learner = TBPTTLearner(cell, head, theta, beta, Adagrad(0.1), k=2)
    learner.step(x[0], y[0])
    learner.step(x[1], y[1])     # at step 1, h_0 = 0 leaves weight_hh's gradient zero
    for k in theta:
        np.testing.assert_array_equal(theta[k], before[k])
        assert not np.array_equal(learner.theta[k], before[k])


def test_tbptt_learner_matches_pytorch_online_tbptt():
    # The form a PyTorch user writes: keep the last k inputs and the state before them,
    # re-run, backward, Adagrad step, advance the anchor state (detached).
    torch = pytest.importorskip("torch")
    k, steps = 3, 12
    cell, theta, x, head, beta, y = _problem("elman_tanh")
    learner = TBPTTLearner(cell, head, theta, beta, Adagrad(0.1), k=k)
    rnn = torch.nn.RNNCell(3, 4, dtype=torch.float64)
    lin = torch.nn.Linear(4, 2, dtype=torch.float64)
    with torch.no_grad():
        for name in theta:
            getattr(rnn, name).copy_(torch.from_numpy(theta[name]))
        lin.weight.copy_(torch.from_numpy(beta["weight"]))
        lin.bias.copy_(torch.from_numpy(beta["bias"]))
    opt = torch.optim.Adagrad([*rnn.parameters(), *lin.parameters()], lr=0.1)
    xs, anchor, second = [], torch.zeros(1, 4, dtype=torch.float64), None
    for t in range(steps):
        learner.step(x[t % T], y[t % T])
        if len(xs) == k:
            anchor = second
            xs.pop(0)
        xs.append(torch.from_numpy(x[t % T]))
        h = anchor
        for j, x_j in enumerate(xs):
            h = rnn(x_j, h)
            if j == 0:
                second = h.detach()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(h), torch.from_numpy(y[t % T]),
                                                                    reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name in theta:
        # Adagrad normalises each step, so rounding differences stay at rounding level.
        np.testing.assert_allclose(learner.theta[name], getattr(rnn, name).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_learners_reject_bad_input_by_name():
    cell, theta, x, head, beta, _ = _problem("elman_tanh")
    learner = RTRLLearner(cell, head, theta, beta, SGD(0.1))
    with pytest.raises(ValueError, match=r"x must have shape \(1, 3\), got \(2, 3\)"):
        learner.predict(np.zeros((2, 3)))
    learner.predict(x[0])
    with pytest.raises(ValueError, match=r"y must have shape \(1, 2\), got \(2,\)"):
        learner.learn(np.zeros(2))
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        TBPTTLearner(cell, head, theta, beta, SGD(0.1), k=0)
    with pytest.raises(TypeError, match="rng must be a refnet.backend.Rng"):
        UOROLearner(cell, head, theta, beta, SGD(0.1), rng=0)
    with pytest.raises(ValueError, match=r"head.n_in must equal cell.n_out = 4, got 3"):
        RTRLLearner(cell, refnet.Head(3, 2), theta, refnet.Head(3, 2).init(refnet.rng(0)), SGD(0.1))


def test_kfrtrl_learner_refuses_a_cell_without_kronecker_factors():
    cell, theta, _, head, beta, _ = _problem("gru")
    with pytest.raises(TypeError, match="got GRU, which has none"):
        KFRTRLLearner(cell, head, theta, beta, SGD(0.1), rng=refnet.rng(0))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_a_non_finite_loss_is_a_numerical_error():
    cell = refnet.ElmanRNN(1, 2, "relu")
    theta = {"weight_ih": np.full((2, 1), 1e200), "weight_hh": np.eye(2), "bias_ih": np.zeros(2),
             "bias_hh": np.zeros(2)}
    head = refnet.Head(2, 1, heads.mse)
    learner = RTRLLearner(cell, head, theta, {"weight": np.full((1, 2), 1e200), "bias": np.zeros(1)}, SGD(0.1))
    with pytest.raises(refnet.NumericalError, match="the loss at step 1 is inf"):
        learner.step(np.ones((1, 1)), np.zeros((1, 1)))


# FPP: n one-step updates per step on transitions replayed from a buffer (refnet.algorithms.fpp).
def _fpp(name="elman_tanh", opt=None, **options):
    from refnet.online import FPPLearner
    cell, theta, x, head, beta, y = _problem(name)
    learner = FPPLearner(cell, head, theta, beta, opt or SGD(0.1), rng=refnet.rng(3), **options)
    return learner, cell, theta, x, head, beta, y


def test_fpp_learner_makes_n_updates_per_step_once_a_transition_is_held():
    learner, *_, x, head, beta, y = _fpp(n=3, buffer_size=4)
    for t in range(T):
        learner.step(x[t], y[t])
    assert learner.updates == 3 * (T - 1) and len(learner.buffer) == 4


def test_fpp_learner_first_update_is_fpp_grad_then_sgd_then_write_back():
    from refnet.algorithms.fpp import fpp_grad, fpp_refresh
    learner, cell, theta, x, head, beta, y = _fpp(opt=SGD(0.1), n=1)
    learner.step(x[0], y[0])
    s1 = cell.step(theta, np.zeros((1, 4)), x[0], 0)[0]
    s2 = cell.step(theta, s1, x[1], 1)[0]
    learner.step(x[1], y[1])          # the one held transition is T = 1: (s_0, o_1, o_2, s_2, y_1)
    g = fpp_grad(cell, theta, head, beta, np.zeros((1, 4)), x[0], x[1], s2, y[0], np.ones(1), t=0)
    for k in theta:   # the same operations in the same order: equal to rounding
        np.testing.assert_allclose(learner.theta[k], theta[k] - 0.1 * g.dtheta[k], rtol=1e-13, atol=1e-15)
    for k in beta:
        np.testing.assert_allclose(learner.beta[k], beta[k] - 0.1 * g.dbeta[k], rtol=1e-13, atol=1e-15)
    refreshed = fpp_refresh(cell, learner.theta, np.zeros((1, 4)), x[0], x[1], t=0)[1]
    np.testing.assert_allclose(learner.buffer.state(2), refreshed, rtol=1e-13, atol=1e-15)


def test_fpp_learner_with_lr_zero_leaves_weights_and_stored_states_unchanged():
    learner, cell, theta, x, head, beta, y = _fpp(opt=SGD(0.0), n=2, refresh=2)
    states = [cell.init_state(1)]
    for t in range(T):
        learner.step(x[t], y[t])
        states.append(cell.step(theta, states[-1], x[t], t)[0])
    for k in theta:
        np.testing.assert_array_equal(learner.theta[k], theta[k])
    # with W fixed a refreshed state is the state the stream produced: equal to rounding
    for t in range(T - 4, T + 1):
        np.testing.assert_allclose(learner.buffer.state(t), states[t], rtol=1e-13, atol=1e-15)


def test_fpp_learner_states_as_variables_moves_the_stored_input_state():
    learner, cell, theta, x, head, beta, y = _fpp(opt=SGD(0.0), n=1, state_lr=0.5)
    learner.step(x[0], y[0])
    learner.step(x[1], y[1])          # updates transition 1, whose input state is s_0 = 0
    assert np.abs(learner.buffer.state(0)).max() > 0


def test_fpp_learner_prioritised_and_weighted_options_run_and_stay_finite():
    learner, *_, x, head, beta, y = _fpp(opt=Adagrad(0.1), n=2, prioritised=True, state_weight=0.5, refresh=1)
    for t in range(T):
        learner.step(x[t], y[t])
    assert np.isfinite(learner.w).all() and float(learner.buffer.priority.max()) > 0


def test_fpp_learner_rejects_bad_options_by_name():
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        _fpp(n=0)
    with pytest.raises(ValueError, match="state_weight must be a finite number >= 0, got -1"):
        _fpp(state_weight=-1)
    with pytest.raises(TypeError, match="prioritised must be a bool"):
        _fpp(prioritised=1)
    with pytest.raises(TypeError, match="rng must be a refnet.backend.Rng"):
        from refnet.online import FPPLearner
        cell, theta, x, head, beta, y = _problem("elman_tanh")
        FPPLearner(cell, head, theta, beta, SGD(0.1), rng=0)
