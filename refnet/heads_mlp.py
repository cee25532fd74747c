"""A readout with one hidden ReLU layer: the associative-retrieval readout of Ba et al. (2016, §4.1).

    u = relu(W_1 h + b_1),      logits = W u + b,      then the loss ℓ(logits, target)

(Ba et al.: the last state → 100 ReLU units → a 10-way softmax.)  The
interface is :class:`refnet.heads.Head`'s, so every algorithm takes it
unchanged: ``loss_and_grad(beta, h, y, w) -> (L, ∂L/∂h, ∂L/∂β)``,
``loss_value``, ``init``, ``check_params``, ``check_targets``,
``param_shapes``, ``n_in``, ``n_out``.  Parameter names: ``hidden_weight``
(n_hidden, n_in), ``hidden_bias`` (n_hidden,) for the hidden layer, and
``weight`` (n_out, n_hidden), ``bias`` (n_out,) for the logits, so that the
last layer carries :class:`~refnet.heads.Head`'s names.  Backward (Chainer
style, next to the forward): with g = w ⊙ ∂ℓ/∂logits,

    dW = gᵀ u,  db = Σ_b g,  du = g W,  da = du ⊙ [u > 0],
    dW_1 = daᵀ h,  db_1 = Σ_b da,  dh = da W_1.
"""
from dataclasses import dataclass

from .cells.activations import relu
from .heads import Head

__all__ = ["MLPHead"]


@dataclass(frozen=True)
class MLPHead(Head):
    """``n_in`` features → ``n_hidden`` ReLU units → ``n_out`` logits, then ``loss`` (keyword ``n_hidden``).

    u = relu(W_1 h + b_1), logits = W u + b (Ba et al. 2016, §4.1's readout).

    Attributes
    ----------
    n_in : int
        Features per example (the cell's output size n), >= 1.
    n_out : int
        Logits per example O, >= 1.
    loss : refnet.heads.Loss
        One of :data:`refnet.heads.LOSSES`; default softmax cross-entropy.
    n_hidden : int
        Hidden ReLU units, >= 1; default 100 (Ba et al. 2016).

    Raises
    ------
    ValueError
        If ``n_in``, ``n_out`` or ``n_hidden`` is not a positive int.
    TypeError
        If ``loss`` is not a :class:`~refnet.heads.Loss`.
    """

    n_hidden: int = 100

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.n_hidden, bool) or not isinstance(self.n_hidden, int) or self.n_hidden < 1:
            raise ValueError(f"n_hidden must be a positive int, got {self.n_hidden!r}")

    def param_shapes(self):
        """{name: shape} of β: the hidden layer's, then the logits' (PyTorch nn.Linear names).

        hidden_weight (n_hidden, n_in), hidden_bias (n_hidden,), weight
        (n_out, n_hidden), bias (n_out,).

        Returns
        -------
        dict {str: tuple of int}
            The parameter names in flattening order and their shapes.

        Raises
        ------
        None
            Nothing of its own: it only reads the validated size fields.
        """
        return {"hidden_weight": (self.n_hidden, self.n_in), "hidden_bias": (self.n_hidden,),
                "weight": (self.n_out, self.n_hidden), "bias": (self.n_out,)}

    def init(self, rng):
        """PyTorch nn.Linear's init for each layer: U(−1/√fan_in, 1/√fan_in).

        fan_in is n_in for the hidden layer and n_hidden for the logits.

        Parameters
        ----------
        rng : refnet.backend.Rng
            Random source; its dtype and the active backend decide the arrays'.

        Returns
        -------
        dict {name: array}
            β with the shapes of :meth:`param_shapes`.

        Raises
        ------
        AttributeError
            If ``rng`` has no ``uniform`` method (not a :class:`~refnet.backend.Rng`).
        """
        fan_in = {"hidden_weight": self.n_in, "hidden_bias": self.n_in,
                  "weight": self.n_hidden, "bias": self.n_hidden}
        return {k: rng.uniform(shape, -fan_in[k] ** -0.5, fan_in[k] ** -0.5)
                for k, shape in self.param_shapes().items()}

    def hidden(self, beta, h):
        """u = relu(W_1 h + b_1), (B, n_hidden).

        Not validated: the public computations (:meth:`~refnet.heads.Head.loss_and_grad`,
        ``forward``, ``loss_value``) check their arguments before calling it.

        Parameters
        ----------
        beta : dict {name: array}
            The head's params (:meth:`param_shapes`).
        h : (B, n_in) array
            Features.

        Returns
        -------
        (B, n_hidden) array
            The hidden ReLU activations.

        Raises
        ------
        KeyError
            If ``beta`` lacks ``hidden_weight`` or ``hidden_bias``.
        ValueError
            If ``h``'s last dimension is not n_in (from the matrix product).
        """
        return relu.fn(h @ beta["hidden_weight"].T + beta["hidden_bias"])

    def _logits(self, beta, h):
        """Logits W relu(W_1 h + b_1) + b, (B, n_out) (:meth:`Head.forward` validates and calls this)."""
        return self.hidden(beta, h) @ beta["weight"].T + beta["bias"]

    def _loss_and_grad(self, beta, h, y, w):
        """L = Σ_b w_b ℓ(logits_b, y_b); returns (L as a 0-d array, ∂L/∂h (B, n_in), ∂L/∂β).

        :meth:`Head.loss_and_grad` validates the arguments and checks the results around this.
        """
        u = self.hidden(beta, h)
        ell, dlogits = self.loss.value_and_grad(u @ beta["weight"].T + beta["bias"], y)
        dlogits = dlogits * w[:, None]
        da = (dlogits @ beta["weight"]) * relu.grad(u)              # back through the ReLU
        dbeta = {"hidden_weight": da.T @ h, "hidden_bias": da.sum(axis=0),
                 "weight": dlogits.T @ u, "bias": dlogits.sum(axis=0)}
        return (w * ell).sum(), da @ beta["hidden_weight"], dbeta
