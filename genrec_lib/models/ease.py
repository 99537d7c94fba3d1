"""EASE: Embarrassingly Shallow Autoencoders (Steck, WWW 2019).

https://arxiv.org/abs/1905.03375

A linear item-item autoencoder with a zero diagonal, solved in closed form:
``P = (X^T X + lambda I)^-1``, ``B = I - P / diag(P)`` (off-diagonal), scores ``X B``.

The Gram matrix ``X^T X`` is a sparse product, so memory grows with the interactions and
the I x I inverse, never with users x items.

Deviations from the paper: none; ``l2`` defaults to 250, a value that suits ML-100K
(the paper tunes it per dataset; chapter 02 shows its validation curve as an exercise).
"""

from __future__ import annotations

import torch

from genrec_lib.data import Split
from genrec_lib.models.base import Recommender, UserBatch, check_positive, register
from genrec_lib.training import default_device


@register("ease")
class EASE(Recommender):
    """Closed-form item-item model; ``l2`` is the ridge penalty lambda."""

    def __init__(self, l2: float = 250.0, device: str | None = None):
        super().__init__()
        check_positive(l2=l2)
        self.l2 = l2
        self._device = torch.device(device) if device else default_device()

    def fit(self, split: Split) -> "EASE":
        X = split.train.csr()  # (U, I) sparse: only the item x item Gram matrix is dense
        gram = torch.from_numpy((X.T @ X).toarray()).to(self._device)  # (I, I) co-occurrence counts
        gram.diagonal().add_(self.l2)
        P = torch.linalg.inv(gram.double()).float()
        B = -P / P.diagonal()  # column j divided by P_jj
        B.diagonal().zero_()
        self.register_buffer("B", B, persistent=False)
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return batch.history @ self.B  # (B, I)
