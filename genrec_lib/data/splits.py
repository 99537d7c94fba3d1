"""Evaluation protocols: per-user random 80/10/10 and per-user temporal leave-one-out.

Both return a :class:`Split` whose three parts share the dataset's id maps, so a model
trained on ``split.train`` scores the same item indices the evaluator ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from genrec_lib.data.interactions import Interactions, pad_sequences

PROTOCOLS = ("random", "loo")
STAGES = ("valid", "test")


@dataclass(frozen=True)
class Split:
    """Train / validation / test parts of one dataset under one protocol.

    For stage ``"valid"`` a model sees ``train``; for ``"test"`` it sees train + valid.
    The evaluator masks exactly those seen items.
    """

    dataset: Interactions
    train: Interactions
    valid: Interactions
    test: Interactions
    protocol: str
    seed: int
    # Derived matrices and sequences, computed once: the training loop asks for them every epoch.
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _cached(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def n_users(self) -> int:
        return self.dataset.n_users

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def _check(self, stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of: {', '.join(STAGES)}")

    def known(self, stage: str) -> Interactions:
        """What a model may use when predicting ``stage``: train, or train + valid."""
        self._check(stage)
        if stage == "valid":
            return self.train
        return self._cached("known-test", lambda: self.train.concat(self.valid))

    def history(self, stage: str) -> sp.csr_matrix:
        """Binary matrix of the items each user is known to have seen before ``stage``."""
        return self._cached(("history", stage), lambda: self.known(stage).csr())

    def targets(self, stage: str) -> sp.csr_matrix:
        """Binary matrix of the held-out items of ``stage``."""
        self._check(stage)
        return self._cached(("targets", stage), lambda: (self.valid if stage == "valid" else self.test).csr())

    def sequences(self, stage: str, max_len: int) -> np.ndarray:
        """Known items per user in time order, left-padded with ``n_items``: (n_users, max_len)."""
        return self._cached(("sequences", stage, max_len),
                            lambda: pad_sequences(self.known(stage).sequences(), max_len, pad=self.n_items))


def split_random(data: Interactions, seed: int = 2020, ratios=(0.8, 0.1, 0.1)) -> Split:
    """Per-user random split: each user's interactions are shuffled (seeded) and cut 80/10/10.

    A user with ``n`` interactions gives ``floor(0.1 n)`` to validation and to test, at
    least one each when ``n >= 3``; the rest is training data.
    """
    if len(ratios) != 3 or abs(sum(ratios) - 1) > 1e-9 or min(ratios) <= 0:
        raise ValueError(f"ratios must be three positive numbers summing to 1, got {ratios}")
    rng = np.random.default_rng(seed)
    # A random key per row, sorted within user, is a vectorised per-user shuffle.
    order = np.lexsort((rng.random(len(data)), data.user))
    users = data.user[order]
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(order)) - starts[users]
    n = counts[users]
    n_valid = np.floor(ratios[1] * n).astype(int)
    n_test = np.floor(ratios[2] * n).astype(int)
    n_valid = np.where((n >= 3) & (n_valid == 0), 1, n_valid)
    n_test = np.where((n >= 3) & (n_test == 0), 1, n_test)
    part = np.where(rank < n - n_valid - n_test, 0, np.where(rank < n - n_test, 1, 2))
    labels = np.empty(len(data), dtype=int)
    labels[order] = part
    return Split(data, data.subset(labels == 0), data.subset(labels == 1), data.subset(labels == 2), "random", seed)


def split_leave_one_out(data: Interactions, seed: int = 2020) -> Split:
    """Per-user temporal leave-one-out: last interaction is test, second-to-last validation.

    Ties in timestamp are broken by the original file order. Users with fewer than three
    interactions keep everything in training. ``seed`` is recorded but unused (deterministic).
    """
    order = data.temporal_order()
    users = data.user[order]
    counts = np.bincount(users, minlength=data.n_users)
    ends = np.cumsum(counts)
    from_end = ends[users] - np.arange(len(order))  # 1 for the last interaction
    eligible = counts[users] >= 3
    part = np.where(eligible & (from_end == 1), 2, np.where(eligible & (from_end == 2), 1, 0))
    labels = np.empty(len(data), dtype=int)
    labels[order] = part
    return Split(data, data.subset(labels == 0), data.subset(labels == 1), data.subset(labels == 2), "loo", seed)


def make_split(data: Interactions, protocol: str, seed: int = 2020) -> Split:
    """Split ``data`` with a protocol by name: ``"random"`` or ``"loo"``."""
    if protocol == "random":
        return split_random(data, seed)
    if protocol == "loo":
        return split_leave_one_out(data, seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
