"""Observed bundles and the held-out-last-bundle protocol (chapter 09).

MovieLens-100K records when a rating was *entered*, to the second, and users entered
ratings in bursts: items a user rated in the same second were submitted together. We call
each such group of at least two items an observed **bundle**. It is a proxy: it says the
items were *rated* together, in one page of the rating interface, not that they were bought
or watched together; its order within the second is unknown.

The ``"bundle"`` protocol holds out, for every user with at least two bundles, the last
bundle as the test target and the one before as the validation target. Training keeps
only rows strictly earlier than the validation bundle's second; rows after it that belong to
neither held-out bundle (single ratings between or after them) are left out, so that no
input of either stage is later than its target.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from genrec_lib.data.interactions import Interactions

MIN_BUNDLE_SIZE = 2


def bundle_ids(data: Interactions, min_size: int = MIN_BUNDLE_SIZE) -> np.ndarray:
    """A bundle id per row (rows of one user in one second), ``-1`` for groups under ``min_size``.

    Ids are dense, ordered by (user, timestamp).
    """
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size!r}")
    order = np.lexsort((data.timestamp, data.user))
    u, t = data.user[order], data.timestamp[order]
    new_group = np.r_[True, (u[1:] != u[:-1]) | (t[1:] != t[:-1])]
    group = np.cumsum(new_group) - 1  # (N,) group index in sorted order
    size = np.bincount(group)
    keep = size >= min_size
    dense = np.cumsum(keep) - 1
    ids_sorted = np.where(keep[group], dense[group], -1)
    ids = np.empty(len(data), dtype=np.int64)
    ids[order] = ids_sorted
    return ids


def bundles(data: Interactions, min_size: int = MIN_BUNDLE_SIZE) -> list[np.ndarray]:
    """Every observed bundle as an array of item indices, in (user, time) order."""
    ids = bundle_ids(data, min_size)
    rows = np.flatnonzero(ids >= 0)
    rows = rows[np.argsort(ids[rows], kind="stable")]
    return np.split(data.item[rows], np.flatnonzero(np.diff(ids[rows])) + 1) if len(rows) else []


class BundleParts(NamedTuple):
    """The three parts of the ``"bundle"`` protocol; ``make_split(data, "bundle")`` wraps them in a Split."""

    train: Interactions
    valid: Interactions
    test: Interactions


def split_last_bundle(data: Interactions, seed: int = 2020, min_size: int = MIN_BUNDLE_SIZE) -> BundleParts:
    """The ``"bundle"`` protocol's parts: last bundle per user is test, the one before validation.

    Users with fewer than two bundles keep all their rows in training. ``seed`` is accepted
    for a uniform signature but unused (the protocol is deterministic). This module sits
    below :mod:`genrec_lib.data.splits` (which imports it), so it returns the parts and
    :func:`~genrec_lib.data.splits.make_split` builds the :class:`~genrec_lib.data.Split`.
    """
    ids = bundle_ids(data, min_size)
    n_users = data.n_users
    has = ids >= 0
    # Per user: the timestamps of her bundles, and the last two.
    bundle_user = np.zeros(ids.max() + 1 if has.any() else 0, dtype=np.int64)
    bundle_time = np.zeros_like(bundle_user)
    bundle_user[ids[has]], bundle_time[ids[has]] = data.user[has], data.timestamp[has]
    count = np.bincount(bundle_user, minlength=n_users)
    last = np.full(n_users, -1, dtype=np.int64)
    ends = np.cumsum(count) - 1  # bundles are ordered by (user, time): the user's last id
    eligible = count >= 2
    last[eligible] = ends[eligible]
    previous = np.where(eligible, last - 1, -1)
    valid_t = np.where(eligible, bundle_time[np.maximum(previous, 0)], np.iinfo(np.int64).max)
    is_test = has & (ids == last[data.user])
    is_valid = has & (ids == previous[data.user])
    is_train = ~is_test & ~is_valid & (data.timestamp < valid_t[data.user])
    return BundleParts(data.subset(is_train), data.subset(is_valid), data.subset(is_test))
