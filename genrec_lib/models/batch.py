"""What a model receives when it scores a batch of users.

A leaf module (it imports nothing from the library) so that the evaluator, which builds
these batches, and the models' base class, which consumes them, both depend on it
without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class UserBatch:
    """What a model may look at when scoring a batch of users for one stage.

    Attributes:
        users: dense user indices, (B,).
        history: 0/1 matrix of each user's input items, (B, n_items), float: the known
            items, or under a temporal protocol those strictly before the held-out item.
        sequences: input items in time order, left-padded with ``n_items``, most recent
            last, (B, L); ``None`` unless the model sets ``max_seq_len``.
        seen: 0/1 matrix of every item the user is known to have seen, (B, n_items): the
            items the evaluator removes from the ranking. Defaults to ``history``.
    """

    users: torch.Tensor
    history: torch.Tensor
    sequences: torch.Tensor | None = None
    seen: torch.Tensor | None = None

    def __post_init__(self):
        if self.seen is None:
            self.seen = self.history
