"""A hand-written LSTM and GRU (forward and backward, min-char-rnn style) with the classic bugs plantable.

This is the code an oracle user brings: written from the equations, not from
refnet, reading a fixture's set-up arrays (PyTorch layout) and returning a
candidate under the fixture's keys.  ``bug=None`` is the correct copy; each
bug is planted where the comment ``# BUG <name>`` says.  The direct
cotangents are the fixture's ``cotangents/output`` (for a BPTT fixture: the
head's ∂L/∂h_t) and, where present, ``cotangents/h_n``/``c_n``.
"""
import numpy as np

__all__ = ["LSTM_BUGS", "GRU_BUGS", "lstm_candidate", "gru_candidate"]

LSTM_BUGS = ("wrong_gate_bias", "missing_sigmoid_grad", "no_dh_next_carry", "transposed_weight")
GRU_BUGS = LSTM_BUGS + ("reset_before_matmul",)


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _setup(arrays, dtype):
    p = {k: arrays[f"params/{k}_l0"].astype(dtype) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    x = arrays["inputs/x"].astype(dtype)
    T, B, _ = x.shape
    H = p["weight_hh"].shape[1]
    dout = arrays["cotangents/output"].astype(dtype)
    dh_T = arrays["cotangents/h_n"][0].astype(dtype) if "cotangents/h_n" in arrays else np.zeros((B, H), dtype)
    return p, x, T, H, dout, dh_T


def lstm_candidate(arrays, bug=None, dtype=np.float64):
    """nn.LSTM's equations by hand; returns {fixture key: array} with traces and gradients."""
    p, x, T, H, dout, dh_next = _setup(arrays, dtype)
    W_ih, W_hh, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
    dc_next = arrays["cotangents/c_n"][0].astype(dtype) if "cotangents/c_n" in arrays else np.zeros_like(dh_next)
    blk = {g: slice(k * H, (k + 1) * H) for k, g in enumerate("ifgo")}
    h, c = {0: arrays["inputs/h0"][0].astype(dtype)}, {0: arrays["inputs/c0"][0].astype(dtype)}
    a, i, f, g, o = {}, {}, {}, {}, {}
    for t in range(1, T + 1):
        b = b_ih + b_hh
        if bug == "wrong_gate_bias":
            b = b.copy()
            b[blk["i"]] = b_ih[blk["i"]] + b_hh[blk["f"]]            # BUG wrong_gate_bias: f's bias on gate i
        a[t] = x[t - 1] @ W_ih.T + h[t - 1] @ W_hh.T + b
        i[t], f[t] = _sigmoid(a[t][:, blk["i"]]), _sigmoid(a[t][:, blk["f"]])
        g[t], o[t] = np.tanh(a[t][:, blk["g"]]), _sigmoid(a[t][:, blk["o"]])
        c[t] = f[t] * c[t - 1] + i[t] * g[t]
        h[t] = o[t] * np.tanh(c[t])

    dW_ih, dW_hh, db = np.zeros_like(W_ih), np.zeros_like(W_hh), np.zeros_like(b_ih)
    trace = {k: np.zeros((T,) + h[0].shape, dtype) for k in
             ["dh", "dc"] + [f"da_{q}" for q in "ifgo"] + [f"dh_prev_from_a_{q}" for q in "ifgo"]}
    for t in range(T, 0, -1):
        dh = dout[t - 1] if bug == "no_dh_next_carry" else dout[t - 1] + dh_next   # BUG no_dh_next_carry
        tanh_c = np.tanh(c[t])
        dc = dc_next + dh * o[t] * (1 - tanh_c ** 2)
        sf = 1.0 if bug == "missing_sigmoid_grad" else f[t] * (1 - f[t])      # BUG missing σ′ on f
        da = {"i": dc * g[t] * i[t] * (1 - i[t]),
              "f": dc * c[t - 1] * sf,
              "g": dc * i[t] * (1 - g[t] ** 2),
              "o": dh * tanh_c * o[t] * (1 - o[t])}
        da_all = np.concatenate([da[q] for q in "ifgo"], axis=1)
        dW_ih += da_all.T @ x[t - 1]
        dW_hh += da_all.T @ h[t - 1]
        db += da_all.sum(axis=0)
        share = {q: da[q] @ W_hh[blk[q]] for q in "ifgo"}
        if bug == "transposed_weight":
            share["o"] = da["o"] @ W_hh[blk["o"]].T                 # BUG transposed_weight: W_ho transposed
        dh_next, dc_next = sum(share.values()), dc * f[t]
        for name, value in [("dh", dh), ("dc", dc)] + [(f"da_{q}", da[q]) for q in "ifgo"] + \
                [(f"dh_prev_from_a_{q}", share[q]) for q in "ifgo"]:
            trace[name][t - 1] = value
    out = {f"backward/{k}_l0": v for k, v in trace.items()}
    stack = lambda d: np.stack([d[t] for t in range(1, T + 1)])  # noqa: E731
    A = stack(a)
    out.update({f"forward/a_{q}_l0": A[:, :, blk[q]] for q in "ifgo"})
    out.update({"forward/h_l0": stack(h), "forward/c_l0": stack(c),
                "grads/weight_ih_l0": dW_ih, "grads/weight_hh_l0": dW_hh, "grads/bias_ih_l0": db,
                "grads/bias_hh_l0": db, "grads/h0": dh_next[None], "grads/c0": dc_next[None]})
    return out


def gru_candidate(arrays, bug=None, dtype=np.float64):
    """nn.GRU's equations by hand; returns {fixture key: array} with traces and gradients."""
    p, x, T, H, dout, dh_next = _setup(arrays, dtype)
    W_ih, W_hh, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
    blk = {g: slice(k * H, (k + 1) * H) for k, g in enumerate("rzn")}
    W = {(side, q): M[blk[q]] for side, M in (("i", W_ih), ("h", W_hh)) for q in "rzn"}
    h = {0: arrays["inputs/h0"][0].astype(dtype)}
    a_r, a_z, a_hn, a_n, r, z, n = {}, {}, {}, {}, {}, {}, {}
    for t in range(1, T + 1):
        xt, hp = x[t - 1], h[t - 1]
        a_r[t] = xt @ W["i", "r"].T + b_ih[blk["r"]] + hp @ W["h", "r"].T + b_hh[blk["r"]]
        b_hz = b_hh[blk["r"]] if bug == "wrong_gate_bias" else b_hh[blk["z"]]   # BUG wrong_gate_bias: b_hr on z
        a_z[t] = xt @ W["i", "z"].T + b_ih[blk["z"]] + hp @ W["h", "z"].T + b_hz
        r[t], z[t] = _sigmoid(a_r[t]), _sigmoid(a_z[t])
        if bug == "reset_before_matmul":
            a_hn[t] = (r[t] * hp) @ W["h", "n"].T + b_hh[blk["n"]]           # BUG: Cho et al.'s r ⊙ h inside
            a_n[t] = xt @ W["i", "n"].T + b_ih[blk["n"]] + a_hn[t]
        else:
            a_hn[t] = hp @ W["h", "n"].T + b_hh[blk["n"]]
            a_n[t] = xt @ W["i", "n"].T + b_ih[blk["n"]] + r[t] * a_hn[t]
        n[t] = np.tanh(a_n[t])
        h[t] = (1 - z[t]) * n[t] + z[t] * hp

    dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    db_ih, db_hh = np.zeros_like(b_ih), np.zeros_like(b_hh)
    names = ["dh", "da_r", "da_z", "da_hn", "da_n", "dh_prev_from_a_r", "dh_prev_from_a_z", "dh_prev_from_a_hn"]
    trace = {k: np.zeros((T,) + h[0].shape, dtype) for k in names}
    for t in range(T, 0, -1):
        dh = dout[t - 1] if bug == "no_dh_next_carry" else dout[t - 1] + dh_next   # BUG no_dh_next_carry
        da_n = dh * (1 - z[t]) * (1 - n[t] ** 2)
        da_hn = da_n * r[t]
        da_r = da_n * a_hn[t] * r[t] * (1 - r[t])
        sz = 1.0 if bug == "missing_sigmoid_grad" else z[t] * (1 - z[t])     # BUG missing σ′ on z
        da_z = dh * (h[t - 1] - n[t]) * sz
        da_i = np.concatenate([da_r, da_z, da_n], axis=1)
        da_h = np.concatenate([da_r, da_z, da_hn], axis=1)
        dW_ih += da_i.T @ x[t - 1]
        dW_hh += da_h.T @ h[t - 1]
        db_ih += da_i.sum(axis=0)
        db_hh += da_h.sum(axis=0)
        share = {"r": da_r @ W["h", "r"], "z": da_z @ W["h", "z"], "hn": da_hn @ W["h", "n"]}
        if bug == "transposed_weight":
            share["r"] = da_r @ W["h", "r"].T                          # BUG transposed_weight: W_hr transposed
        dh_next = share["r"] + share["z"] + share["hn"] + dh * z[t]
        for name, value in [("dh", dh), ("da_r", da_r), ("da_z", da_z), ("da_hn", da_hn), ("da_n", da_n),
                            ("dh_prev_from_a_r", share["r"]), ("dh_prev_from_a_z", share["z"]),
                            ("dh_prev_from_a_hn", share["hn"])]:
            trace[name][t - 1] = value
    out = {f"backward/{k}_l0": v for k, v in trace.items()}
    stack = lambda d: np.stack([d[t] for t in range(1, T + 1)])  # noqa: E731
    out.update({"forward/a_r_l0": stack(a_r), "forward/a_z_l0": stack(a_z), "forward/a_hn_l0": stack(a_hn),
                "forward/a_n_l0": stack(a_n), "forward/h_l0": stack(h),
                "grads/weight_ih_l0": dW_ih, "grads/weight_hh_l0": dW_hh, "grads/bias_ih_l0": db_ih,
                "grads/bias_hh_l0": db_hh, "grads/h0": dh_next[None]})
    return out
