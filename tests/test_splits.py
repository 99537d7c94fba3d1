import numpy as np
import pytest
import torch

from genrec_lib.data import make_split, split_leave_one_out
from genrec_lib.data.splits import hold_out_items
from genrec_lib.evaluation import recommend
from genrec_lib.models.base import Recommender


def _keys(part):
    return set(zip(part.row.tolist()))


@pytest.mark.parametrize("protocol", ["random", "loo"])
def test_parts_are_disjoint_and_cover_everything(ml100k, protocol):
    split = make_split(ml100k, protocol, seed=2020)
    rows = [set(p.row.tolist()) for p in (split.train, split.valid, split.test)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert sum(len(r) for r in rows) == len(ml100k) == 100_000


def test_random_split_sizes_per_user(ml100k):
    split = make_split(ml100k, "random", seed=2020)
    n = np.bincount(ml100k.user, minlength=ml100k.n_users)
    assert np.array_equal(np.bincount(split.valid.user, minlength=ml100k.n_users), np.floor(0.1 * n))
    assert np.array_equal(np.bincount(split.test.user, minlength=ml100k.n_users), np.floor(0.1 * n))
    assert len(split.train) == 80_808


def test_random_split_is_seeded(ml100k):
    a, b, c = (make_split(ml100k, "random", seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.test.row, b.test.row)
    assert not np.array_equal(a.test.row, c.test.row)


def test_loo_holds_out_the_last_two_in_time(ml100k):
    split = make_split(ml100k, "loo")
    assert len(split.test) == len(split.valid) == ml100k.n_users
    last_train = np.full(ml100k.n_users, -1)
    np.maximum.at(last_train, split.train.user, split.train.timestamp)
    valid_t = np.empty(ml100k.n_users, dtype=np.int64)
    valid_t[split.valid.user] = split.valid.timestamp
    test_t = np.empty(ml100k.n_users, dtype=np.int64)
    test_t[split.test.user] = split.test.timestamp
    assert np.all(last_train <= valid_t) and np.all(valid_t <= test_t)


def test_loo_file_ties_keep_the_old_file_order(tiny):
    from dataclasses import replace

    same_time = replace(tiny, timestamp=np.zeros_like(tiny.timestamp))
    split = split_leave_one_out(same_time, ties="file")
    for u in range(same_time.n_users):
        rows = same_time.row[same_time.user == u]
        assert split.test.row[split.test.user == u][0] == rows.max()
        assert split.valid.row[split.valid.user == u][0] == np.sort(rows)[-2]


def test_loo_random_ties_are_a_seeded_fair_draw(tiny):
    """With every timestamp equal, which item is held out follows the seed, not the file."""
    from dataclasses import replace

    same_time = replace(tiny, timestamp=np.zeros_like(tiny.timestamp))
    a, b, c = (split_leave_one_out(same_time, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.test.row, b.test.row) and not np.array_equal(a.test.row, c.test.row)
    # Position of the held-out row within its user's rows (11 = last in the file): roughly uniform over 0..11.
    position = np.array([np.searchsorted(np.sort(same_time.row[same_time.user == u]), a.test.row[a.test.user == u][0])
                         for u in range(same_time.n_users)])
    assert (position == 11).mean() < 0.3 and len(np.unique(position)) >= 6


def test_loo_does_not_depend_on_the_files_row_order(ml100k):
    """Shuffling the source rows gives the same held-out (user, item) pairs."""
    from dataclasses import replace

    perm = np.random.default_rng(0).permutation(len(ml100k))
    shuffled = replace(ml100k, **{f: getattr(ml100k, f)[perm] for f in ("user", "item", "rating", "timestamp")},
                       row=np.arange(len(ml100k)))
    a, b = split_leave_one_out(ml100k, seed=2020), split_leave_one_out(shuffled, seed=2020)
    for part in ("valid", "test"):
        pairs = lambda s: set(zip(getattr(s, part).user.tolist(), getattr(s, part).item.tolist()))  # noqa: E731
        assert pairs(a) == pairs(b)
    # The old rule did depend on it: with file order, shuffling moves held-out items.
    old_a, old_b = split_leave_one_out(ml100k, ties="file"), split_leave_one_out(shuffled, ties="file")
    assert set(zip(old_a.test.user.tolist(), old_a.test.item.tolist())) != set(zip(old_b.test.user.tolist(), old_b.test.item.tolist()))


@pytest.mark.parametrize("stage", ["valid", "test"])
def test_loo_input_is_strictly_before_the_target(ml100k, stage):
    """No input item shares or follows the held-out item's timestamp, for every user."""
    split = make_split(ml100k, "loo", seed=2020)
    held = split.held_out(stage)
    target_t = np.full(ml100k.n_users, np.iinfo(np.int64).max)
    target_t[held.user] = held.timestamp
    given = split.input(stage)
    assert np.all(given.timestamp < target_t[given.user])
    # The same holds for the matrix and the sequences models read.
    history = split.history(stage).tocoo()
    assert history.nnz == len(given)
    seqs = split.sequences(stage, 800)
    ts = {(u, i): t for u, i, t in zip(split.dataset.user, split.dataset.item, split.dataset.timestamp)}
    for u in range(0, ml100k.n_users, 7):
        for i in seqs[u][seqs[u] < ml100k.n_items]:
            assert ts[(u, int(i))] < target_t[u]
    # Only the cut is removed: every known interaction strictly before the target stays.
    known = split.known(stage)
    assert len(given) == int((known.timestamp < target_t[known.user]).sum())
    # Items rated in the target's own second are known (masked) but not input.
    seen = split.seen(stage)
    assert seen.nnz == len(known) > history.nnz
    assert split.history(stage).multiply(seen).nnz == history.nnz


def test_random_protocol_input_is_everything_known(ml100k):
    split = make_split(ml100k, "random", seed=2020)
    assert (split.history("test") != split.seen("test")).nnz == 0
    assert split.seen("test").nnz == len(split.train) + len(split.valid)


@pytest.mark.parametrize("protocol", ["random", "loo"])
def test_no_leakage_into_what_the_model_sees(ml100k, protocol):
    split = make_split(ml100k, protocol)
    seen_valid = split.seen("valid")
    seen_test = split.seen("test")
    # Held-out items of a stage never appear in what the model is given for that stage.
    assert seen_valid.multiply(split.targets("valid")).nnz == _duplicates_across(split.valid, split.train) == 0
    assert seen_test.multiply(split.targets("test")).nnz == _duplicates_across(split.test, split.train.concat(split.valid)) == 0
    # The sequences passed to sequential models hold exactly each user's input.
    seqs = split.sequences("test", 800)
    given = split.input("test")
    for u in range(0, ml100k.n_users, 97):
        known = seqs[u][seqs[u] < ml100k.n_items]
        assert len(known) == (given.user == u).sum()


def _duplicates_across(held_out, known):
    """ML-100K has no repeated (user, item) pairs, so this is 0; kept explicit for other data."""
    return len(set(zip(held_out.user, held_out.item)) & set(zip(known.user, known.item)))


def test_unknown_protocol_lists_choices(tiny):
    with pytest.raises(ValueError, match="random, loo"):
        make_split(tiny, "temporal")
    with pytest.raises(ValueError, match="random, file"):
        split_leave_one_out(tiny, ties="index")


class _ColdFirst(Recommender):
    """Scores cold items above every warm one: the worst case for the seen-item mask."""

    def __init__(self, is_cold):
        super().__init__()
        self.is_cold = torch.as_tensor(is_cold, dtype=torch.float32)

    def fit(self, split):
        return self

    def score(self, batch):
        return self.is_cold.expand(len(batch.users), -1).clone()


@pytest.mark.parametrize("protocol", ["random", "loo"])
def test_hold_out_items_still_masks_what_users_rated(ml100k, protocol):
    split = make_split(ml100k, protocol, seed=2020)
    cold, is_cold = hold_out_items(split, share=0.1, seed=2020)
    # Models read no cold item, but the evaluator masks everything rated in the original train/valid.
    assert not is_cold[cold.history("test").indices].any()
    for stage in ("valid", "test"):
        assert (cold.seen(stage) != split.seen(stage)).nnz == 0
    # A scorer that ranks cold items first never recommends a cold film the user already rated.
    rated_cold = split.train.concat(split.valid)
    users = np.unique(rated_cold.user[is_cold[rated_cold.item]])[:200]
    top = recommend(_ColdFirst(is_cold), cold, "test", k=20, users=users)
    seen = split.seen("test")[users].toarray()
    assert len(users) == 200 and not np.take_along_axis(seen, top, axis=1).any()
