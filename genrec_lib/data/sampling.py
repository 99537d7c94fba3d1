"""Negative sampling shared by pairwise and sampled-softmax models."""

from __future__ import annotations

import numpy as np
import torch

from genrec_lib.data.interactions import Interactions


def sample_negatives(data: Interactions, users: torch.Tensor, generator: torch.Generator, max_rounds: int = 20) -> torch.Tensor:
    """One uniformly random item per entry of ``users`` that the user has not interacted with.

    Vectorised rejection sampling: draw for everyone, redraw only the collisions. A
    collision is found by binary search in the sorted (user, item) keys (``np.isin``
    would sort them again in every round: 90% of a BPR epoch's sampling time).
    """
    n_items = data.n_items
    seen = np.unique(data.user.astype(np.int64) * n_items + data.item)  # sorted keys of (user, item)
    negatives = torch.randint(n_items, users.shape, generator=generator)
    redo = torch.ones_like(users, dtype=torch.bool)
    for _ in range(max_rounds):
        keys = (users[redo] * n_items + negatives[redo]).numpy()
        at = np.searchsorted(seen, keys).clip(max=len(seen) - 1)
        clash = torch.from_numpy(seen[at] == keys)
        index = torch.nonzero(redo).squeeze(1)[clash]
        if len(index) == 0:
            break
        negatives[index] = torch.randint(n_items, (len(index),), generator=generator)
        redo = torch.zeros_like(redo)
        redo[index] = True
    return negatives
