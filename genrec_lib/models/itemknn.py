"""ItemKNN: item-based collaborative filtering with cosine similarity.

Sarwar et al., "Item-based collaborative filtering recommendation algorithms", WWW 2001.

Each item keeps its ``k`` most similar items (cosine over user columns, optional
shrinkage); a user's score for item j sums the similarities of j to the user's items.
Deviations from the paper: binary implicit feedback instead of ratings; no normalisation
of the aggregated scores (ranking is unchanged by a per-user constant).
"""

from __future__ import annotations

import torch

from genrec_lib.data import Split
from genrec_lib.models.base import Recommender, UserBatch, check_non_negative, check_positive, register
from genrec_lib.training import default_device


@register("itemknn")
class ItemKNN(Recommender):
    """Cosine item-item neighbourhood model with ``k`` neighbours per item."""

    def __init__(self, k: int = 100, shrink: float = 0.0, device: str | None = None):
        super().__init__()
        check_positive(k=k)
        check_non_negative(shrink=shrink)
        self.k, self.shrink = k, shrink
        self._device = torch.device(device) if device else default_device()

    def fit(self, split: Split) -> "ItemKNN":
        X = split.train.csr()  # (U, I) sparse: only the item x item matrices are dense
        overlap = torch.from_numpy((X.T @ X).toarray()).to(self._device)  # (I, I) co-occurrence counts
        norms = overlap.diagonal().sqrt()
        sim = overlap / (norms[:, None] * norms[None, :] + self.shrink + 1e-8)
        sim.diagonal().zero_()
        # Keep the k largest similarities in each column: item j's neighbours.
        k = min(self.k, sim.shape[0] - 1)
        top = torch.topk(sim, k, dim=0)
        sparse_sim = torch.zeros_like(sim).scatter_(0, top.indices, top.values)
        self.register_buffer("similarity", sparse_sim, persistent=False)
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return batch.history @ self.similarity  # (B, I)
