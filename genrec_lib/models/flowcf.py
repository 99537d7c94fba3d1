"""FlowCF: flow matching for collaborative filtering (Liu, Zhang, Wang, Ying, Caverlee, KDD 2025).

https://arxiv.org/abs/2502.07303

Flow matching learns a path from a source distribution ``X_0`` to the data ``X_1`` and a
network that predicts where a point on the path is heading. FlowCF adapts it to binary
implicit feedback with two ideas:

- **Behaviour-guided prior.** The source is not Gaussian noise but independent Bernoulli
  draws with each item's popularity, ``X_0,i ~ Bernoulli(f_i)``, ``f_i = |U_i| / |U|``:
  a prior sample already looks like a (random) user.
- **Discrete flow.** The interpolation between ``X_0`` and ``X_1`` keeps vectors binary:
  ``X_t = M_t * X_1 + (1 - M_t) * X_0`` with a mask ``M_t,i ~ Bernoulli(t)``, on a grid of
  ``N`` steps ``t_n = n / N``. The network ``f_theta(X_t, t)`` predicts the endpoint ``X_1``
  and is trained with ``|| X_1 - f_theta(X_t, t) ||^2``.

The velocity implied by a prediction is ``v = (X1_hat - X_t) / (1 - t)``. Inference treats the
user's observed history as ``X_t`` at step ``N - S`` (``S = sampling_steps``, 2 in the paper)
and takes ``S`` steps: each predicts ``X1_hat``, moves ``X_t`` along ``v`` to the next grid
time, binarises (an item enters when its probability passes 1/2; only 0 -> 1 moves are
allowed, observed items stay) and feeds the result to the next step; the last ``X1_hat``
is the score vector. So inference costs ``S`` passes of the network, against ``T`` for
DiffRec.

Deviations from the paper: early stopping on validation NDCG@10 checked every
``eval_every`` epochs (the paper checks every epoch); the MLP is one 300-unit hidden layer
with the input dropout of chapter 03's autoencoders (the paper's two 300-unit layers and
dropout 0.1 over-fit ML-100K on validation); batches of 256 users (the paper's 4,096 is a
third of an epoch on ML-1M and more than all 943 ML-100K users).
"""

from __future__ import annotations

import torch

from genrec_lib.data import Split
from genrec_lib.models.base import TrainableRecommender, UserBatch, check_non_negative, check_positive, register
from genrec_lib.models.blocks import StepMLP, shuffled_batches
from genrec_lib.models.layers import SparseRows


@register("flowcf")
class FlowCF(TrainableRecommender):
    """Discrete flow matching from a popularity-Bernoulli prior to users' interaction vectors."""

    def __init__(self, n_steps: int = 9, sampling_steps: int = 2, hidden: int = 300, emb_dim: int = 10,
                 dropout: float = 0.5, batch_size: int = 256, learning_rate: float = 1e-3,
                 weight_decay: float = 0.0, epochs: int = 300, patience: int = 30, eval_every: int = 5,
                 seed: int = 2020):
        super().__init__()
        check_positive(n_steps=n_steps, sampling_steps=sampling_steps, hidden=hidden, emb_dim=emb_dim,
                       batch_size=batch_size, learning_rate=learning_rate, epochs=epochs, patience=patience,
                       eval_every=eval_every)
        check_non_negative(weight_decay=weight_decay)
        if sampling_steps > n_steps:
            raise ValueError(f"sampling_steps must be <= n_steps ({n_steps}), got {sampling_steps!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.n_steps, self.sampling_steps, self.hidden, self.emb_dim = n_steps, sampling_steps, hidden, emb_dim
        self.dropout, self.batch_size = dropout, batch_size
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.epochs, self.patience, self.eval_every, self.seed = epochs, patience, eval_every, seed

    def build(self, split: Split) -> None:
        self.f_theta = StepMLP(split.n_items, self.hidden, self.emb_dim, self.dropout)  # as DiffRec's denoiser
        self.X = SparseRows(split.train.csr())  # (U, I), densified per batch
        f = self.X.item_counts() / split.n_users  # (I,) behaviour-guided prior f_i = |U_i| / |U|
        self.register_buffer("f", f, persistent=False)
        self.register_buffer("t_grid", torch.linspace(0, 1, self.n_steps + 1), persistent=False)  # (N + 1,)

    def predict_x1(self, X_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``f_theta(X_t, t)``: the predicted endpoint ``X1_hat`` (B, I) from ``X_t`` (B, I) and times ``t`` (B,)."""
        # The grid times t in [0, 1] are embedded like diffusion steps, scaled to the grid index.
        return self.f_theta(X_t, t * self.n_steps)

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the behaviour-guided prior: (n, I) binary, ``X_0,i ~ Bernoulli(f_i)``."""
        return torch.bernoulli(self.f.expand(n, -1), generator=generator)

    def interpolate(self, X_0: torch.Tensor, X_1: torch.Tensor, t: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """The discrete path ``X_t = M_t * X_1 + (1 - M_t) * X_0``, ``M_t,i ~ Bernoulli(t)``; ``t`` (B,)."""
        M_t = torch.rand(X_1.shape, generator=generator, device=X_1.device) < t[:, None]
        return torch.where(M_t, X_1, X_0)

    def training_batches(self, split: Split, generator: torch.Generator):
        for rows in shuffled_batches(split.n_users, self.batch_size, generator):
            yield rows, torch.randint(0, self.n_steps, (len(rows),), generator=generator)

    def training_loss(self, batch) -> torch.Tensor:
        rows, n = batch
        X_1 = self.X[rows].to(rows.device)  # (B, I)
        t = self.t_grid[n]  # (B,)
        X_t = self.interpolate(self.prior_sample(len(rows)), X_1, t)
        return (X_1 - self.predict_x1(X_t, t)).pow(2).mean()

    @torch.no_grad()
    def flow(self, X_t: torch.Tensor, start: int, keep: torch.Tensor | None = None):
        """Run the discrete flow from grid step ``start`` to the end; yield ``(t, X_t, X1_hat)`` per step.

        ``keep`` (B, I) are items that stay 1 throughout (the observed history at inference).
        """
        for n in range(start, self.n_steps):
            t = self.t_grid[n].expand(len(X_t))  # (B,)
            X1_hat = self.predict_x1(X_t, t)
            yield self.t_grid[n], X_t, X1_hat
            if n == self.n_steps - 1:
                break
            v = (X1_hat - X_t) / (1 - t[:, None])  # velocity towards the predicted endpoint
            p_one = X_t + v * (self.t_grid[n + 1] - self.t_grid[n])  # probability of a 1 at the next time
            X_t = (p_one > 0.5).float()  # the more likely of 0 and 1
            if keep is not None:
                X_t = torch.maximum(X_t, keep)  # observed items stay: only 0 -> 1 moves for them

    def score(self, batch: UserBatch) -> torch.Tensor:
        X_bar = batch.history  # (B, I) the observed history, read as X_t at step N - S
        for _, _, X1_hat in self.flow(X_bar, self.n_steps - self.sampling_steps, keep=X_bar):
            pass
        return X1_hat  # (B, I)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate ``n`` interaction vectors from the prior through all ``N`` steps: (n, I) binary.

        The final step's ``X1_hat`` is read as Bernoulli probabilities (clipped to [0, 1]).
        """
        X_0 = self.prior_sample(n, generator)
        for _, _, X1_hat in self.flow(X_0, 0):
            pass
        return torch.bernoulli(X1_hat.clamp(0, 1), generator=generator)
