"""Pure content recommendation in a joint image-text space (no collaborative signal).

A user is the mean of the joint embeddings of the items in her history,
``p_u = normalise(sum_{i in H_u} e_i)``, and an item's score is the cosine ``p_u . e_i``.
It needs no training on interactions, so it scores an item nobody has seen as well as any
other: the classic content-based answer to item cold start. With a text request ``r``
(embedded in the same space as ``q``), :meth:`JointContent.score_with_request` mixes the two:
``s_ui = (1 - lambda) p_u . e_i + lambda q . e_i``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from genrec_lib.data import Split
from genrec_lib.models.base import Recommender, UserBatch, register


@register("joint-content")
class JointContent(Recommender):
    """Mean-of-history profile scored against item embeddings.

    Args:
        item_embeddings: (n_items, d) unit vectors in the joint space; ``None`` fits a
            :class:`~genrec_lib.models.multimodal.lit.LiT` on the dataset's images and
            captions (no interactions are used) and embeds its images.
        lit_epochs: epochs of that LiT fit.
    """

    def __init__(self, item_embeddings: torch.Tensor | None = None, lit_epochs: int = 60, seed: int = 2020):
        super().__init__()
        if lit_epochs <= 0:
            raise ValueError(f"lit_epochs must be > 0, got {lit_epochs!r}")
        self.item_embeddings, self.lit_epochs, self.seed = item_embeddings, lit_epochs, seed

    def fit(self, split: Split) -> "JointContent":
        e = self.item_embeddings
        if e is None:
            from genrec_lib.data.stamps import item_captions
            from genrec_lib.image_encoders import item_image_features
            from genrec_lib.models.multimodal.lit import LiT
            from genrec_lib.text_encoders import encode_texts

            x = item_image_features(split.dataset)
            lit = LiT()
            lit.fit(x, encode_texts(item_captions(split.dataset), cache=True), epochs=self.lit_epochs, seed=self.seed)
            with torch.no_grad():
                e = lit.encode_image_features(x)
        if e.shape[0] != split.n_items:
            raise ValueError(f"item_embeddings has {e.shape[0]} rows, the dataset {split.n_items} items")
        self.register_buffer("e", F.normalize(e.float(), dim=-1))  # (I, d)
        return self

    def profile(self, history: torch.Tensor) -> torch.Tensor:
        """p_u from 0/1 history rows (B, I) -> (B, d) unit vectors (zero for an empty history)."""
        return F.normalize(history.to(self.e) @ self.e, dim=-1)

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.profile(batch.history) @ self.e.T  # (B, I)

    def score_with_request(self, batch: UserBatch, q: torch.Tensor, weight: float) -> torch.Tensor:
        """Profile and request mixed: q (B, d) unit vectors, weight lambda in [0, 1]."""
        if not 0 <= weight <= 1:
            raise ValueError(f"weight must lie in [0, 1], got {weight!r}")
        return (1 - weight) * self.score(batch) + weight * (q.to(self.e) @ self.e.T)


class OnlyItems(Recommender):
    """Wrap a fitted model so that it ranks only ``items`` (every other item scores ``-inf``).

    Used to compare models on cold items alone, with the same candidates for every model.
    """

    def __init__(self, model: Recommender, items, n_items: int):
        super().__init__()
        self.model, self.max_seq_len = model, model.max_seq_len
        allowed = torch.zeros(n_items, dtype=torch.bool)
        allowed[torch.as_tensor(items, dtype=torch.long)] = True
        self.register_buffer("allowed", allowed)

    @property
    def device(self):
        return self.model.device

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.model.score(batch).float().masked_fill(~self.allowed.to(batch.users.device), float("-inf"))


class WithRequest(Recommender):
    """A :class:`JointContent` model that also reads each user's text request (``q``: (n_users, d))."""

    def __init__(self, content: JointContent, q: torch.Tensor, weight: float):
        super().__init__()
        self.content, self.weight = content, weight
        self.register_buffer("q", F.normalize(q.float(), dim=-1))

    @property
    def device(self):
        return self.content.device

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.content.score_with_request(batch, self.q[batch.users], self.weight)
