"""Pop: recommend the most popular items, the same list for everyone.

Not generative and not personalised, it is the floor every chapter's model must beat,
and a strong one on MovieLens under full ranking.
"""

from __future__ import annotations

import torch

from genrec_lib.data import Split
from genrec_lib.models.base import Recommender, UserBatch, register


@register("pop")
class Pop(Recommender):
    """Score every item by its number of training interactions."""

    def fit(self, split: Split) -> "Pop":
        counts = torch.from_numpy(split.train.item_popularity()).float()
        self.register_buffer("popularity", counts, persistent=False)
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.popularity.to(batch.history.device).expand(len(batch.users), -1)  # (B, n_items)
