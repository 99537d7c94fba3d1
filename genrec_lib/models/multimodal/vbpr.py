"""VBPR: Visual Bayesian Personalized Ranking (He & McAuley, AAAI 2016).

https://arxiv.org/abs/1510.01784

BPR-MF plus a visual term: ``x_ui = beta_i + gamma_u . gamma_i + theta_u . (E f_i) + beta' . f_i``,
where ``f_i`` are locked CNN features of item i's image, ``E`` (D x F) projects them to a
D-dimensional visual style space, ``theta_u`` is user u's visual taste and ``beta'`` a
visual bias (the global and user biases cancel in the pairwise loss and are dropped).
Trained with the BPR loss on (u, i, j) triples.

Deviations from the paper: EfficientNet-Lite0 features instead of Caffe AlexNet's 4096-d
layer, standardised per dimension and divided by sqrt(F) so that a feature vector has about
unit norm; Adam instead of SGD, with a smaller learning rate for the visual part
(``visual_learning_rate``, a tenth of the ID part's by default); early stopping on
validation NDCG@10. The ID part is set up as in :class:`~genrec_lib.models.bpr.BPRMF`
(Xavier-normal factors, the same batch size and L2 default), so that the two differ only by
the visual terms. Why: Adam moves every weight by about the learning rate per step whatever
its gradient's size, so with standardised 1280-d features the visual score ``theta_u . (E f_i)``
moved about sqrt(F) times faster than the ID score and overfitted within a few epochs; with
those settings and a larger initialisation of the ID factors, VBPR lost to BPR on warm items
(chapter 14 measures the difference). An item
never seen in training (a cold item) is scored by its visual terms only: its ID terms
``beta_i, gamma_i`` were only ever pushed down as sampled negatives, so they are set to zero,
the cold-start setting the paper evaluates.
"""

from __future__ import annotations

import torch
from torch import nn

from genrec_lib.data import Split
from genrec_lib.data.sampling import bpr_triples
from genrec_lib.models.base import TrainableRecommender, UserBatch, check_non_negative, check_positive, register


@register("vbpr")
class VBPR(TrainableRecommender):
    """Visually-aware BPR on locked image features (``item_features`` or the dataset's images).

    Args:
        dim: K, width of the ID factors gamma.
        visual_dim: D, width of the visual style space.
        item_features: (n_items, F) features; ``None`` reads the dataset's item images
            (:func:`genrec_lib.image_encoders.item_image_features`).
    """

    def __init__(self, dim: int = 32, visual_dim: int = 32, reg: float = 0.0, batch_size: int = 2048,
                 learning_rate: float = 3e-3, epochs: int = 100, patience: int = 10, eval_every: int = 1,
                 seed: int = 2020, item_features: torch.Tensor | None = None,
                 visual_learning_rate: float | None = None):
        super().__init__()
        check_positive(dim=dim, visual_dim=visual_dim, batch_size=batch_size, learning_rate=learning_rate, epochs=epochs)
        check_non_negative(reg=reg)
        if visual_learning_rate is not None:
            check_positive(visual_learning_rate=visual_learning_rate)
        self.visual_learning_rate = learning_rate / 10 if visual_learning_rate is None else visual_learning_rate
        self.dim, self.visual_dim, self.reg, self.batch_size = dim, visual_dim, reg, batch_size
        self.learning_rate, self.epochs, self.patience, self.eval_every, self.seed = learning_rate, epochs, patience, eval_every, seed
        self.item_features = item_features

    def build(self, split: Split) -> None:
        if self.item_features is None:
            from genrec_lib.image_encoders import item_image_features

            self.item_features = item_image_features(split.dataset)
        f = self.item_features.float()
        if f.shape[0] != split.n_items:
            raise ValueError(f"item_features has {f.shape[0]} rows, the dataset {split.n_items} items")
        # (I, F) standardised, then scaled to about unit norm per item
        self.register_buffer("f", (f - f.mean(0)) / (f.std(0) + 1e-6) / f.shape[1] ** 0.5)
        self.register_buffer("warm", torch.from_numpy(split.train.item_popularity() > 0))  # (I,)
        self.gamma_u = nn.Embedding(split.n_users, self.dim)  # (U, K)
        self.gamma_i = nn.Embedding(split.n_items, self.dim)  # (I, K)
        self.theta_u = nn.Embedding(split.n_users, self.visual_dim)  # (U, D)
        self.beta_i = nn.Embedding(split.n_items, 1)  # (I, 1)
        self.E = nn.Linear(f.shape[1], self.visual_dim, bias=False)  # (F -> D)
        self.beta_prime = nn.Linear(f.shape[1], 1, bias=False)  # visual bias
        for table in (self.gamma_u, self.gamma_i, self.theta_u):
            nn.init.xavier_normal_(table.weight)  # as BPRMF's factors
        nn.init.zeros_(self.beta_i.weight)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        visual = [self.theta_u.weight, self.E.weight, self.beta_prime.weight]
        ids = [self.gamma_u.weight, self.gamma_i.weight, self.beta_i.weight]
        return torch.optim.Adam([{"params": ids}, {"params": visual, "lr": self.visual_learning_rate}],
                                lr=self.learning_rate, weight_decay=self.weight_decay)

    def training_batches(self, split: Split, generator: torch.Generator):
        return bpr_triples(split.train, self.batch_size, generator)

    def _x(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """x_ui for aligned vectors u, i: (B,)."""
        f_i = self.f[i]  # (B, F)
        return (self.beta_i(i).squeeze(1) + (self.gamma_u(u) * self.gamma_i(i)).sum(1)
                + (self.theta_u(u) * self.E(f_i)).sum(1) + self.beta_prime(f_i).squeeze(1))

    def training_loss(self, batch) -> torch.Tensor:
        u, i, j = batch
        x_uij = self._x(u, i) - self._x(u, j)
        params = [self.gamma_u(u), self.theta_u(u), self.gamma_i(i), self.gamma_i(j), self.beta_i(i), self.beta_i(j)]
        loss = -nn.functional.logsigmoid(x_uij).mean()
        if self.reg > 0:
            loss = loss + self.reg * sum(p.pow(2).sum() for p in params) / len(u)
        return loss

    def score(self, batch: UserBatch) -> torch.Tensor:
        warm = self.warm.float()  # cold items keep only their visual terms
        id_part = self.gamma_u(batch.users) @ (self.gamma_i.weight * warm[:, None]).T + (self.beta_i.weight.squeeze(1) * warm)
        visual = self.theta_u(batch.users) @ self.E(self.f).T + self.beta_prime(self.f).squeeze(1)  # (B, I)
        return id_part + visual
