"""SnAp-n (Menick et al. 2021, "Practical Real Time Recurrent Learning with a Sparse Approximation").

RTRL carries M_t = ds_t/dθ (B, n, P) by M_t = J_s M_{t−1} + J_θ.  SnAp-n keeps
only the entries of M_t through which parameter p can reach state entry i
within n steps, and drops the rest at every step (the paper's §3):

    M̃_t = (J_s M̃_{t−1} + J_θ) ⊙ 𝟙_n,        M̃_0 = 0

The mask 𝟙_n (n, P) comes from the cell's structural patterns (its
``jacobian_pattern``: S of J_s, Θ of J_θ): 𝟙_1 = Θ (a parameter reaches, in one
step, the entries its immediate Jacobian touches) and 𝟙_{k+1} = 𝟙_k ∨ (S 𝟙_k),
boolean products over the recurrence graph (edge j → i where S[i, j]).  So:

- SnAp-1 keeps J_θ's own pattern: one entry per parameter for the Elman,
  leaky and GRU cells (O(P) memory), two for the LSTM's i, f, g gate rows
  (which act on both h_i and c_i; the LSTM's state is s = [h, c], so M̃
  holds ∂h/∂θ and ∂c/∂θ);
- SnAp-n is RTRL exactly once the mask is closed, 𝟙_{n+1} = 𝟙_n (``exact``):
  for a recurrence graph of diameter d (longest shortest path) that is
  n ≥ d + 1 — n counts the immediate step, in which a parameter reaches its
  own unit.  A dense W_hh has d = 1, so SnAp-2 is already full RTRL; a
  diagonal one (iRNN at init, any α for the leaky cell) d = 0: SnAp-1 = RTRL.
  (The LSTM's o-gate rows reach c_i only in a second step, so with a
  diagonal W_hh it is SnAp-2 that is exact for the LSTM.)

Storage.  Columns with the same kept rows form a group g (rows R_g, columns
C_g); M̃ is kept as one dense block per group, V (B, G, r, c) — padded to the
largest group, so each block is an (r, c) matrix — and updated as

    V_g ← J_s[R_g, R_g] V_g + J_θ[R_g, C_g]           (one batched matmul)

Memory: the nnz(𝟙_n) kept entries (P for SnAp-1 on Elman/leaky/GRU) padded to
G·r·c (no padding for those cells; for a dense W_hh at n ≥ 2 one group,
n·P, RTRL's).  Cost per step: G·r²·c multiply-adds, Σ_p |R_p|² unpadded —
O(P) for SnAp-1, O(n²P) for a full mask — plus J_s (O(n²), the cell's
``state_jacobian`` where it has one) and J_θ's kept entries: for cells with
``kronecker_factors`` (Elman, leaky) read off D ⊗ ĥ (O(nnz)), otherwise
gathered from the cell's dense J_θ (``jacobians``, O(nP) and, for GRU/LSTM,
n + P JVPs per step).  SnAp-1 on a factored cell keeps the layout of
:mod:`refnet.algorithms.traces` (one row per unit) and runs its trace update,
with a numba kernel at batch 1.  :func:`snap_masked_update` is the dense
equation above, the plain twin the grouped update is tested against.

Frozen parameters (``trainable=``): their columns are taken out of 𝟙_1 = Θ,
so they keep no entry at any order (a column no state entry depends on is in
no group): V holds the trainable columns' kept entries only.  A column's kept
rows depend on its own pattern and S alone, so the restricted SnAp-n is the
full one's trainable columns exactly.
"""
from typing import NamedTuple

import numpy

from ..backend import xp_of
from .._validate import check_array, check_int
from ..params import axpy, unflatten, zeros_like
from .bptt import GradResult
from .checks import StepWatch, check_objective, check_sequence
from .structure import has_kronecker, kronecker_layout, state_jacobian
from .traces import trace_update
from .trainable import check_trainable, restrict, trainable_columns

__all__ = ["SnApPattern", "SnApState", "snap_pattern", "snap_init", "snap_update", "snap_gradient",
           "snap_sensitivity", "snap_masked_update", "snap"]


class SnApPattern(NamedTuple):
    """The kept entries of SnAp-n and how they are grouped (Menick et al. 2021, §3; module docstring).

    Built once by :func:`snap_pattern`; the arrays live on θ's backend except ``mask``.

    Attributes
    ----------
    order : int
        n of SnAp-n.
    mask : (n_state, P) NumPy bool array
        The kept entries 𝟙_n.
    exact : bool
        Whether 𝟙_n is closed under the recurrence (𝟙_{n+1} = 𝟙_n): SnAp-n is then RTRL.
    rows : (G, r) int array
        The kept rows R_g of each group, padded by repeating its first row.
    cols : (G, c) int array
        The columns C_g of each group, padded by repeating its first column.
    pair_valid : (G, r, r) float array or None
        1 for real (row, row) pairs, 0 for padding; None without padding.
    entry_valid : (G, r, c) float array or None
        1 for kept entries, 0 for padding; None without padding.
    h_cols : (G, c) int array or None
        For cells with ``kronecker_factors`` and every parameter factored: the column of ĥ each
        kept column reads; None otherwise.
    own : (G, r, c) float array or None
        1 where the row is the column's own unit (factored cells), else 0; None otherwise.
    diagonal : bool
        r = 1 and group g = unit g with columns in ĥ order: the trace layout of
        :mod:`refnet.algorithms.traces` (SnAp-1 on a factored cell).
    scatter : tuple of three int arrays
        Flat positions in V (B, G·r·c) of the kept entries, their rows and their columns (for
        :func:`snap_sensitivity`).
    valid_cols : tuple of two int arrays
        Flat positions in (G, c) of the real columns and their parameter columns (for
        :func:`snap_gradient`).
    """

    order: int          # n of SnAp-n
    mask: object        # (n_state, P) NumPy bool, the kept entries 𝟙_n
    exact: bool         # 𝟙_n is closed under the recurrence: SnAp-n = RTRL
    rows: object        # (G, r) int, R_g padded by repeating its first row
    cols: object        # (G, c) int, C_g padded by repeating its first column
    pair_valid: object  # (G, r, r) float mask of real (row, row) pairs, None without padding
    entry_valid: object  # (G, r, c) float mask of kept entries, None without padding
    h_cols: object      # (G, c) int, the column of ĥ each kept column reads (factored cells), or None
    own: object         # (G, r, c) float, row == the column's unit (factored cells), or None
    diagonal: bool      # r = 1 and group g = unit g, columns in ĥ order: the trace layout
    scatter: tuple      # (flat positions in V (B, G·r·c), their rows, their columns) of the kept entries
    valid_cols: tuple   # (flat positions in (G, c), their parameter columns)


class SnApState(NamedTuple):
    """SnAp-n's carried sensitivity: the kept entries of M̃_t, one dense block per group.

    Attributes
    ----------
    V : (B, G, r, c) array
        V[b, g] is M̃_t[b][R_g, C_g] of the pattern's group g (zeros at padding).
    """
    V: object           # (B, G, r, c) the kept entries of M̃_t


def _closure_step(S, mask):
    """𝟙 ∨ (S 𝟙): one more step of reach over the recurrence graph (boolean product)."""
    return mask | ((S.astype(numpy.int64) @ mask.astype(numpy.int64)) > 0)


def snap_pattern(cell, theta, n, trainable=None):
    """The SnAp-n mask of ``cell`` at θ and its grouped layout (Menick et al. 2021, §3).

    𝟙_1 = Θ, the pattern of J_θ (the trainable columns only), and
    𝟙_{k+1} = 𝟙_k ∨ (S 𝟙_k) with S the pattern of J_s, as boolean products over the
    recurrence graph; the columns are then grouped by their kept rows.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``jacobian_pattern`` (ElmanRNN, IRNN, LeakyRNN, GRU, LSTM).
    theta : dict {name: array}
        The cell's parameters; J_s's pattern reads W_hh's zeros from it, so the mask is that of
        the network's sparsity at θ and is fixed from then on.
    n : int
        The SnAp order, >= 1.
    trainable : collection of str or None
        Names of the parameters whose columns keep entries (default None: all); the others keep
        none (module docstring).

    Returns
    -------
    SnApPattern
        The mask, whether it is exact, and the grouped layout.

    Raises
    ------
    TypeError
        ``n`` not an int; the cell has no ``jacobian_pattern`` (FastRNN, FastGRNN, ...);
        ``theta`` not a dict of floating arrays; ``trainable`` a str or not a collection.
    ValueError
        n < 1; a missing or extra parameter, a wrong shape or a NaN/Inf in ``theta``; patterns
        of the wrong shapes from the cell; a ``trainable`` name the cell lacks, or a
        ``trainable`` that leaves no column with a kept entry.
    """
    n = check_int("n", n, 1)
    names = check_trainable(cell, trainable)
    if not callable(getattr(cell, "jacobian_pattern", None)):
        raise TypeError(f"SnAp needs the structural nonzero patterns of J_s and J_theta, a "
                        f"jacobian_pattern(params) method (ElmanRNN, IRNN, LeakyRNN, GRU, LSTM); "
                        f"got {type(cell).__name__}, which has none")
    cell.check_params(theta, "theta")
    S, Theta = (numpy.asarray(a, dtype=bool) for a in cell.jacobian_pattern(theta))
    N = cell.n_state
    P = sum(int(numpy.prod(shape)) for shape in cell.param_shapes().values())
    if S.shape != (N, N) or Theta.shape != (N, P):
        raise ValueError(f"{type(cell).__name__}.jacobian_pattern must return shapes ({N}, {N}) and ({N}, {P}), "
                         f"got {S.shape} and {Theta.shape}")
    mask = Theta
    if len(names) < len(cell.param_shapes()):          # frozen columns: nothing kept, at any order
        mask = numpy.zeros_like(Theta)
        columns = trainable_columns(cell, names)
        mask[:, columns] = Theta[:, columns]
    if not mask.any():
        raise ValueError(f"trainable = {list(names)} leaves SnAp no sensitivity entry to carry (every "
                         f"parameter the state depends on is frozen); expected at least one of "
                         f"{list(cell.param_shapes())}")
    for _ in range(n - 1):
        mask = _closure_step(S, mask)
    exact = bool((_closure_step(S, mask) == mask).all())
    return _layout(cell, n, mask, exact, xp_of(next(iter(theta.values()))))


def _layout(cell, order, mask, exact, xp):
    """Group the columns of ``mask`` by their kept rows, pad the groups, precompute the gathers."""
    N, P = mask.shape
    keys, group_of = numpy.unique(mask.T, axis=0, return_inverse=True)
    group_of = numpy.asarray(group_of).reshape(-1)
    groups = [(numpy.flatnonzero(keys[g]), numpy.flatnonzero(group_of == g)) for g in range(len(keys))
              if keys[g].any()]        # a column no state entry depends on keeps nothing (gradient 0)
    groups.sort(key=lambda group: group[1][0])   # in order of their first column: unit order for Elman
    G = len(groups)
    r = max(len(rows) for rows, _ in groups)
    c = max(len(cols) for _, cols in groups)
    rows = numpy.empty((G, r), dtype=numpy.int64)
    cols = numpy.empty((G, c), dtype=numpy.int64)
    row_ok = numpy.zeros((G, r), dtype=bool)
    col_ok = numpy.zeros((G, c), dtype=bool)
    for g, (R, C) in enumerate(groups):
        rows[g], cols[g] = R[0], C[0]
        rows[g, :len(R)], cols[g, :len(C)] = R, C
        row_ok[g, :len(R)], col_ok[g, :len(C)] = True, True
    padded = not (row_ok.all() and col_ok.all())
    entry_ok = row_ok[:, :, None] & col_ok[:, None, :]
    pair_ok = row_ok[:, :, None] & row_ok[:, None, :]
    h_cols = own = None
    diagonal = False
    if has_kronecker(cell):
        layout = kronecker_layout(cell, "SnAp")
        if not layout.rest:
            unit, h_col = numpy.empty(P, dtype=numpy.int64), numpy.empty(P, dtype=numpy.int64)
            start = 0
            for k, (first, last) in layout.blocks.items():
                size = int(numpy.prod(cell.param_shapes()[k]))
                flat = numpy.arange(size)
                unit[start:start + size] = flat // (last - first)
                h_col[start:start + size] = first + flat % (last - first)
                start += size
            h_cols = h_col[cols]
            own_np = (rows[:, :, None] == unit[cols][:, None, :]) & entry_ok
            own = xp.asarray(own_np.astype(numpy.float64))
            diagonal = (r == 1 and G == N and not padded and bool((rows[:, 0] == numpy.arange(N)).all())
                        and bool((h_cols == numpy.arange(c)[None, :]).all()))
    positions = numpy.flatnonzero(entry_ok.reshape(-1))
    g_of, a_of, j_of = numpy.unravel_index(positions, (G, r, c))
    scatter = (xp.asarray(positions), xp.asarray(rows[g_of, a_of]), xp.asarray(cols[g_of, j_of]))
    col_positions = numpy.flatnonzero(col_ok.reshape(-1))
    valid_cols = (xp.asarray(col_positions), xp.asarray(cols.reshape(-1)[col_positions]))
    as_float = (lambda a: xp.asarray(a.astype(numpy.float64))) if padded else (lambda a: None)
    return SnApPattern(order, mask, exact, xp.asarray(rows), xp.asarray(cols), as_float(pair_ok),
                       as_float(entry_ok), None if h_cols is None else xp.asarray(h_cols), own, diagonal,
                       scatter, valid_cols)


def snap_init(pattern, batch, like):
    """M̃_0 = 0: V of zeros (batch, G, r, c) on the backend and dtype of ``like``.

    Parameters
    ----------
    pattern : SnApPattern
        From :func:`snap_pattern`.
    batch : int
        B, the number of examples, >= 1.
    like : array
        Any floating array on the wanted backend and dtype (finiteness not checked).

    Returns
    -------
    SnApState
        V (B, G, r, c) of zeros.

    Raises
    ------
    TypeError
        ``pattern`` not a SnApPattern; ``batch`` not an int; ``like`` not a floating array.
    ValueError
        ``batch`` < 1.
    """
    if not isinstance(pattern, SnApPattern):
        raise TypeError(f"pattern must be a SnApPattern (from snap_pattern), got {type(pattern).__name__}")
    batch = check_int("batch", batch, 1)
    check_array("like", like, finite=False)
    G, r = pattern.rows.shape
    return SnApState(xp_of(like).zeros((batch, G, r, pattern.cols.shape[1]), dtype=like.dtype))


def snap_update(cell, theta, cache, state, pattern):
    """One SnAp-n step, V_g ← J_s[R_g, R_g] V_g + J_θ[R_g, C_g] (Menick et al. 2021, §3; module docstring).

    The masked recursion M̃_t = (J_s M̃_{t−1} + J_θ) ⊙ 𝟙_n on the kept entries only.
    On a factored cell J_θ's kept entries are read off D ⊗ ĥ; SnAp-1 there is the
    trace update with a = diag(J_s) (:func:`refnet.algorithms.traces.trace_update`).
    Otherwise they are gathered from the cell's dense ``jacobians``.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The cell the pattern was made for (not validated here).
    theta : dict {name: array}
        The cell's parameters (the pattern's θ or any θ with the same zeros).
    cache : NamedTuple
        What ``cell.step`` returned at this step.
    state : SnApState
        V at t − 1.
    pattern : SnApPattern
        From :func:`snap_pattern`.

    Returns
    -------
    SnApState
        V at t.

    Raises
    ------
    AttributeError
        ``state`` or ``pattern`` of the wrong kind, or a cell without the methods the pattern
        needs (``kronecker_factors``/``state_jacobian`` or ``jacobians``).
    IndexError
        A pattern made for a cell with other sizes.
    ValueError
        A state made for another batch size (from broadcasting), or a bad ``REFNET_NUMBA``.
    """
    V = state.V
    dtype = V.dtype
    if pattern.h_cols is not None:                  # factored J_θ: D ⊗ ĥ at the kept entries only
        J_s = state_jacobian(cell, theta, cache)
        D, h_hat = cell.kronecker_factors(theta, cache)
        h_hat = xp_of(V).concatenate(list(h_hat.values()), axis=1)
        if pattern.diagonal:                        # SnAp-1: the trace a ⊙ E + D ⊗ ĥ with a = diag(J_s)
            n = J_s.shape[1]
            a = J_s.reshape(J_s.shape[0], n * n)[:, ::n + 1]
            E = trace_update(a, D, h_hat, V[:, :, 0, :])
            return SnApState(E[:, :, None, :])
        J_theta = (D[:, pattern.rows][:, :, :, None] * h_hat[:, pattern.h_cols][:, :, None, :]
                   * pattern.own.astype(dtype, copy=False))
    else:
        J_s, J_full = cell.jacobians(theta, cache)
        J_theta = J_full[:, pattern.rows[:, :, None], pattern.cols[:, None, :]]
        if pattern.entry_valid is not None:
            J_theta = J_theta * pattern.entry_valid.astype(dtype, copy=False)
    J_rr = J_s[:, pattern.rows[:, :, None], pattern.rows[:, None, :]]        # (B, G, r, r)
    if pattern.pair_valid is not None:
        J_rr = J_rr * pattern.pair_valid.astype(dtype, copy=False)
    if V.shape[2] == 1:
        return SnApState(J_rr * V + J_theta)
    return SnApState(J_rr @ V + J_theta)


def snap_gradient(state, ds, pattern):
    """Σ_b (∂ℓ_t/∂s_t)[b] M̃_t[b] as a flat (P,) vector in ``refnet.params.flatten`` order.

    Parameters
    ----------
    state : SnApState
        V at t.
    ds : (B, n_state) array
        The cotangent ∂ℓ_t/∂s_t.
    pattern : SnApPattern
        The pattern ``state`` was made with.

    Returns
    -------
    (P,) array
        The gradient of every parameter column (zero for columns that keep no entry: frozen or
        unreachable ones).

    Raises
    ------
    IndexError
        ``ds`` narrower than n_state.
    ValueError
        ``ds`` of another batch size (from broadcasting).
    AttributeError
        ``state`` or ``pattern`` of the wrong kind.
    """
    xp = xp_of(state.V)
    per_group = (ds[:, pattern.rows][:, :, :, None] * state.V).sum(axis=(0, 2))     # (G, c)
    out = xp.zeros(pattern.mask.shape[1], dtype=state.V.dtype)
    positions, columns = pattern.valid_cols
    out[columns] = per_group.reshape(-1)[positions]
    return out


def snap_sensitivity(state, pattern):
    """The dense M̃_t (B, n_state, P) with zeros off the mask (for tests and checks).

    Parameters
    ----------
    state : SnApState
        V at t.
    pattern : SnApPattern
        The pattern ``state`` was made with.

    Returns
    -------
    (B, n_state, P) array
        M̃_t, equal to :func:`snap_masked_update`'s dense recursion.

    Raises
    ------
    AttributeError
        ``state`` or ``pattern`` of the wrong kind.
    """
    xp = xp_of(state.V)
    B = state.V.shape[0]
    positions, rows, columns = pattern.scatter
    M = xp.zeros((B,) + pattern.mask.shape, dtype=state.V.dtype)
    M[:, rows, columns] = state.V.reshape(B, -1)[:, positions]
    return M


def snap_masked_update(J_s, J_theta, M, mask):
    """M̃_t = (J_s M̃_{t−1} + J_θ) ⊙ 𝟙 written densely (Menick et al. 2021, §3): O(n²P) per step.

    The plain twin of :func:`snap_update`, which keeps only the kept entries; the
    tests hold the two equal.

    Parameters
    ----------
    J_s : (B, n, n) array
        ∂s_t/∂s_{t−1}.
    J_theta : (B, n, P) array
        ∂s_t/∂θ.
    M : (B, n, P) array
        M̃_{t−1}.
    mask : (n, P) bool array
        The kept entries 𝟙_n, on the arrays' backend or NumPy.

    Returns
    -------
    (B, n, P) array
        M̃_t, in M's dtype.

    Raises
    ------
    ValueError
        Shapes that do not fit (B, n, n) @ (B, n, P) + (B, n, P) and (n, P).
    TypeError
        An argument that is not an array.
    """
    xp = xp_of(M)
    return (J_s @ M + J_theta) * xp.asarray(mask).astype(M.dtype)


def snap(cell, theta, x, s0, head, beta, y, weights=None, *, n, trainable=None):
    """SnAp-n's approximation of L's gradient over a sequence, θ fixed (Menick et al. 2021, §3).

    Builds :func:`snap_pattern` once, carries M̃_t by :func:`snap_update` and sums
    dθ = Σ_t Σ_b (∂L_t/∂s_t)[b] M̃_t[b] (:func:`snap_gradient`): RTRL's gradient when
    the mask is closed (``snap_pattern(...).exact``; a gradcheck matrix relation),
    a biased approximation otherwise.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``jacobian_pattern`` (ElmanRNN, IRNN, LeakyRNN, GRU, LSTM).
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``.
    x : (T, B, I) array-like
        Inputs, T >= 1, B >= 1; ``x[t − 1]`` is x_t.
    s0 : (B, n_state) array-like or None
        Initial state s_0; None for zeros.
    head : refnet.heads.Head or refnet.heads.MLPHead
        The readout and its loss ℓ, on ``cell.output``; ``head.n_in == cell.n_out``.
    beta : dict {name: array}
        The head's parameters.
    y : (T, B) int array or (T, B, O) float array
        Class labels in [0, O) for a label loss, else targets of the head's width O.
    weights : (T, B) array or None
        Loss weights w[t − 1, b]; None for the mean over every step and sequence.
    n : int
        The SnAp order, >= 1 (keyword-only): entries reachable within n steps are kept.
    trainable : collection of str or None
        Names of the parameters that keep entries and appear in ``dtheta`` (default None: all).

    Returns
    -------
    GradResult
        ``dtheta`` SnAp-n's gradient; ``loss`` and ``dbeta`` exact; ``ds0`` None (not carried);
        ``s_T``; ``vjp_steps`` = 0.

    Raises
    ------
    TypeError
        As :func:`refnet.algorithms.bptt.bptt`; a cell without ``jacobian_pattern``; ``n`` not
        an int.
    ValueError
        As :func:`refnet.algorithms.bptt.bptt`; n < 1; a ``trainable`` that leaves no entry.
    refnet.NumericalError
        Names the first non-finite state s_t, loss term L_t or gradient term, checked every
        ``checks.CHECK_EVERY`` steps.
    """
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    names = check_trainable(cell, trainable)
    pattern = snap_pattern(cell, theta, n, names)
    T, B = x.shape[:2]
    state = snap_init(pattern, B, x)
    dtheta_flat = xp_of(x).zeros(pattern.mask.shape[1], dtype=x.dtype)
    dbeta = zeros_like(beta)
    L, s = 0.0, [s0]
    watch = StepWatch("snap")
    for t in range(1, T + 1):
        s_t, cache = cell.step(theta, s[t - 1], x[t - 1], t - 1)
        s.append(s_t)
        state = snap_update(cell, theta, cache, state, pattern)
        L_t, dh, dbeta_t = head.loss_and_grad(beta, cell.output(s_t), y[t - 1], weights[t - 1], check=False)
        g_t = snap_gradient(state, cell.output_vjp(dh), pattern)
        dtheta_flat += g_t
        axpy(1.0, dbeta_t, dbeta)
        L = L + L_t
        watch(t, s_t, L_t, g_t)
    watch.flush()
    dtheta = unflatten(dtheta_flat, {k: theta[k] for k in cell.param_shapes()})
    return GradResult(float(L), restrict(dtheta, names), dbeta, None, s[T], 0)
