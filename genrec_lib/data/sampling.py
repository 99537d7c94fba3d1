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
    seen = data.pair_keys  # sorted keys user * n_items + item, computed once per dataset
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


def bpr_triples(data: Interactions, batch_size: int, generator: torch.Generator):
    """One epoch of (user, positive item, negative item) batches for pairwise (BPR) losses.

    Every interaction of ``data`` appears once, in a seeded random order, with one sampled
    negative (:func:`sample_negatives`).

    Yields:
        three int64 tensors of shape (B,).
    """
    users = torch.from_numpy(data.user)
    items = torch.from_numpy(data.item)
    order = torch.randperm(len(users), generator=generator)
    negatives = sample_negatives(data, users[order], generator)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        yield users[index], items[index], negatives[start : start + batch_size]
