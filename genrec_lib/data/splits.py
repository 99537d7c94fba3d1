"""Evaluation protocols: per-user random 80/10/10 and per-user temporal leave-one-out.

Both return a :class:`Split` whose three parts share the dataset's id maps, so a model
trained on ``split.train`` scores the same item indices the evaluator ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from genrec_lib.data.interactions import Interactions, pad_sequences

PROTOCOLS = ("random", "loo", "bundle")
STAGES = ("valid", "test")
TIES = ("random", "file")


@dataclass(frozen=True)
class Split:
    """Train / validation / test parts of one dataset under one protocol.

    For stage ``"valid"`` the known interactions are ``train``; for ``"test"`` they are
    train + valid (validation items enter only as history: nothing is retrained). The
    evaluator masks every known item (:meth:`seen`). What a model reads as input
    (:meth:`history`, :meth:`sequences`) is the known interactions, except under a
    temporal protocol (``strict_input``): then only those strictly earlier than the
    user's held-out item, because a deployed system would not yet have the items rated
    in the same second as the one it must predict.
    """

    dataset: Interactions
    train: Interactions
    valid: Interactions
    test: Interactions
    protocol: str
    seed: int
    strict_input: bool = False
    # The split this one was derived from by removing interactions (:func:`hold_out_items`):
    # what a user rated there stays masked here, though no model reads it (see :meth:`seen`).
    original: "Split | None" = field(default=None, repr=False, compare=False)
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

    def held_out(self, stage: str) -> Interactions:
        """The held-out interactions of ``stage``: ``valid`` or ``test``."""
        self._check(stage)
        return self.valid if stage == "valid" else self.test

    def input(self, stage: str) -> Interactions:
        """The known interactions a model may read when predicting ``stage``.

        With ``strict_input`` (temporal protocols) a user's input holds only interactions
        strictly earlier than the earliest timestamp among her held-out items of
        ``stage``; users without held-out items keep everything known.
        """
        known = self.known(stage)
        if not self.strict_input:
            return known

        def compute():
            held = self.held_out(stage)
            cutoff = np.full(self.n_users, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(cutoff, held.user, held.timestamp)
            return known.subset(known.timestamp < cutoff[known.user])

        return self._cached(("input", stage), compute)

    def history(self, stage: str) -> sp.csr_matrix:
        """Binary matrix of each user's input items for ``stage`` (see :meth:`input`)."""
        return self._cached(("history", stage), lambda: self.input(stage).csr())

    def seen(self, stage: str) -> sp.csr_matrix:
        """Binary matrix of every item each user is known to have seen before ``stage``:
        the items the evaluator removes from the ranking (a superset of :meth:`history`).

        A split derived by removing interactions (``original`` set, :func:`hold_out_items`)
        masks everything known in the original split: a film the user rated is not
        recommended to her again just because the models were not shown that rating."""
        if self.original is not None:
            return self._cached(("seen", stage), lambda: self.original.seen(stage))
        if not self.strict_input:
            return self.history(stage)
        return self._cached(("seen", stage), lambda: self.known(stage).csr())

    def targets(self, stage: str) -> sp.csr_matrix:
        """Binary matrix of the held-out items of ``stage``."""
        self._check(stage)
        return self._cached(("targets", stage), lambda: self.held_out(stage).csr())

    def sequences(self, stage: str, max_len: int) -> np.ndarray:
        """Input items per user in time order, left-padded with ``n_items``: (n_users, max_len)."""
        return self._cached(("sequences", stage, max_len),
                            lambda: pad_sequences(self.input(stage).sequences(), max_len, pad=self.n_items))


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


def random_tiebreak(data: Interactions, seed: int) -> np.ndarray:
    """A seeded random key per interaction that orders equal timestamps.

    The key is drawn in a canonical order of the rows' contents (user, item, timestamp,
    rating), so it does not depend on the order of the rows in the source file.
    """
    canonical = np.lexsort((data.rating, data.timestamp, data.item, data.user))
    key = np.empty(len(data), dtype=np.float64)
    key[canonical] = np.random.default_rng(seed).random(len(data))
    return key


def split_leave_one_out(data: Interactions, seed: int = 2020, ties: str = "random",
                        strict_input: bool = True) -> Split:
    """Per-user temporal leave-one-out: last interaction is test, second-to-last validation.

    MovieLens records seconds and users rate in bursts, so "the last interaction" is often
    one of several with the same timestamp. ``ties="random"`` (the default) orders such
    interactions by a seeded random key (:func:`random_tiebreak`, driven by ``seed``), so
    the held-out item is a fair draw from the last second rather than an artefact of the
    file; ``ties="file"`` keeps the source file's order (the behaviour of many libraries,
    kept for comparison). With ``strict_input`` (default) a model's input for a stage holds
    only interactions strictly earlier than the held-out item (see :meth:`Split.input`);
    every known item is still masked from the ranking. Users with fewer than three
    interactions keep everything in training.
    """
    if ties not in TIES:
        raise ValueError(f"unknown tie rule {ties!r}; choose one of: {', '.join(TIES)}")
    if ties == "random":
        data = replace(data, tiebreak=random_tiebreak(data, seed))
    order = data.temporal_order()
    users = data.user[order]
    counts = np.bincount(users, minlength=data.n_users)
    ends = np.cumsum(counts)
    from_end = ends[users] - np.arange(len(order))  # 1 for the last interaction
    eligible = counts[users] >= 3
    part = np.where(eligible & (from_end == 1), 2, np.where(eligible & (from_end == 2), 1, 0))
    labels = np.empty(len(data), dtype=int)
    labels[order] = part
    return Split(data, data.subset(labels == 0), data.subset(labels == 1), data.subset(labels == 2), "loo", seed,
                 strict_input=strict_input)


def hold_out_items(split: Split, share: float = 0.1, seed: int = 2020) -> tuple[Split, np.ndarray]:
    """Item cold start: a seeded share of the catalogue removed from all training data.

    The cold items are drawn uniformly from the whole catalogue with ``seed``, independently
    of which items are test targets (a pool drawn from the targets would flatter any
    cold-item heuristic). Their interactions leave ``train`` and ``valid``, so no model is
    fitted on them and no history mentions them; ``test`` is kept whole, so some users'
    held-out item is a cold item that no model has seen. The evaluator still masks every
    item a user rated in the original ``train`` and ``valid`` (:meth:`Split.seen`), cold
    ones included: a film she already rated is neither recommended again nor a hit.

    Returns:
        ``(cold_split, is_cold)`` with ``is_cold`` a boolean array (n_items,).
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share!r}")
    n = split.n_items
    is_cold = np.zeros(n, dtype=bool)
    is_cold[np.random.default_rng(seed).choice(n, int(round(share * n)), replace=False)] = True
    cold = Split(split.dataset, split.train.subset(~is_cold[split.train.item]), split.valid.subset(~is_cold[split.valid.item]),
                 split.test, split.protocol, split.seed, strict_input=split.strict_input,
                 original=split.original if split.original is not None else split)
    return cold, is_cold


def make_split(data: Interactions, protocol: str, seed: int = 2020) -> Split:
    """Split ``data`` with a protocol by name: ``"random"``, ``"loo"`` or ``"bundle"`` (chapter 09)."""
    if protocol == "random":
        return split_random(data, seed)
    if protocol == "loo":
        return split_leave_one_out(data, seed)
    if protocol == "bundle":
        from genrec_lib.data.bundles import split_last_bundle

        return Split(data, *split_last_bundle(data, seed), "bundle", seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
