"""The bundle protocol: observed bundles, held-out last bundle per user, no leakage."""

from dataclasses import replace

import numpy as np
import pytest

from genrec_lib.data import make_split
from genrec_lib.data.bundles import bundle_ids, bundles, split_last_bundle


def _bundle_of(part, user):
    rows = part.user == user
    return part.item[rows], part.timestamp[rows]


def test_bundle_ids_group_one_user_one_second(tiny):
    # Pair consecutive interactions of each user into one second: every group has size 2.
    data = replace(tiny, timestamp=tiny.timestamp // 2000)
    ids = bundle_ids(data)
    for b in np.unique(ids[ids >= 0])[:20]:
        rows = ids == b
        assert len(np.unique(data.user[rows])) == 1 and len(np.unique(data.timestamp[rows])) == 1
        assert rows.sum() >= 2
    # A group of one is not a bundle.
    assert (bundle_ids(tiny) == -1).all()
    with pytest.raises(ValueError, match="min_size"):
        bundle_ids(tiny, min_size=0)


def test_bundle_protocol_holds_out_the_last_two_bundles_without_leakage(ml100k):
    split = make_split(ml100k, "bundle")
    assert split.protocol == "bundle"
    ids = bundle_ids(ml100k)
    assert len(np.unique(split.test.user)) >= 900
    for u in np.unique(split.test.user):
        test_items, test_t = _bundle_of(split.test, u)
        valid_items, valid_t = _bundle_of(split.valid, u)
        train_t = split.train.timestamp[split.train.user == u]
        # Each held-out part is one bundle: one second, at least two items.
        assert len(test_items) >= 2 and len(set(test_t)) == 1
        assert len(valid_items) >= 2 and len(set(valid_t)) == 1
        # Strictly in time: everything the model sees precedes each target.
        assert valid_t[0] < test_t[0]
        assert train_t.size == 0 or train_t.max() < valid_t[0]
        # The test bundle is the user's last bundle: no later second with two or more ratings.
        user_rows = ml100k.user == u
        later = ml100k.timestamp[user_rows & (ml100k.timestamp > test_t[0])]
        assert len(later) == len(np.unique(later))
    # Held-out items never appear in the stage's input.
    assert split.history("valid").multiply(split.targets("valid")).nnz == 0
    assert split.history("test").multiply(split.targets("test")).nnz == 0
    # Nothing is in two parts; only rows after the validation bundle are left out.
    rows = [set(p.row.tolist()) for p in (split.train, split.valid, split.test)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert 0.9 * len(ml100k) < sum(map(len, rows)) <= len(ml100k)


def test_users_with_fewer_than_two_bundles_stay_in_training(tiny):
    data = replace(tiny, timestamp=tiny.timestamp.copy())
    first = np.flatnonzero(data.user == 0)[:2]
    data.timestamp[first] = data.timestamp[first[0]]  # one bundle for user 0 only
    split = split_last_bundle(data)
    assert len(split.test) == len(split.valid) == 0
    assert len(split.train) == len(data)


def test_bundles_lists_item_groups(ml100k):
    groups = bundles(ml100k)
    assert len(groups) == (np.unique(bundle_ids(ml100k)) >= 0).sum()
    assert min(map(len, groups)) >= 2
