"""Random: the chance baseline, a constant score for every item.

The evaluator breaks ties in score uniformly at random
(:func:`~genrec_lib.evaluation.ranking.topk_random_ties`), so a constant scorer *is* a
uniformly random ranking, seeded and reproducible. Its measured metrics should sit on the
formula for chance (e.g. :func:`genrec_lib.evaluation.llmrank.random_expectation`); a
constant scorer that beats chance reveals an evaluator that breaks ties by item index.
"""

from __future__ import annotations

import torch

from genrec_lib.data import Split
from genrec_lib.models.base import Recommender, UserBatch, register


@register("random")
class RandomRanker(Recommender):
    """Scores every item 0; the evaluator's random tie-breaking does the rest."""

    def fit(self, split: Split) -> "RandomRanker":
        self.n_items = split.n_items
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return torch.zeros(len(batch.users), self.n_items, device=batch.history.device)  # (B, n_items)
