import numpy as np
import pytest

from genrec_lib.data import make_split


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


def test_loo_breaks_ties_by_file_order(tiny):
    from dataclasses import replace

    same_time = replace(tiny, timestamp=np.zeros_like(tiny.timestamp))
    split = make_split(same_time, "loo")
    for u in range(same_time.n_users):
        rows = same_time.row[same_time.user == u]
        assert split.test.row[split.test.user == u][0] == rows.max()
        assert split.valid.row[split.valid.user == u][0] == np.sort(rows)[-2]


@pytest.mark.parametrize("protocol", ["random", "loo"])
def test_no_leakage_into_what_the_model_sees(ml100k, protocol):
    split = make_split(ml100k, protocol)
    seen_valid = split.history("valid")
    seen_test = split.history("test")
    # Held-out items of a stage never appear in what the model is given for that stage.
    assert seen_valid.multiply(split.targets("valid")).nnz == _duplicates_across(split.valid, split.train) == 0
    assert seen_test.multiply(split.targets("test")).nnz == _duplicates_across(split.test, split.train.concat(split.valid)) == 0
    # The sequences passed to sequential models end before the held-out interaction.
    seqs = split.sequences("test", 800)
    for u in range(0, ml100k.n_users, 97):
        known = seqs[u][seqs[u] < ml100k.n_items]
        assert len(known) == (split.train.user == u).sum() + (split.valid.user == u).sum()


def _duplicates_across(held_out, known):
    """ML-100K has no repeated (user, item) pairs, so this is 0; kept explicit for other data."""
    return len(set(zip(held_out.user, held_out.item)) & set(zip(known.user, known.item)))


def test_unknown_protocol_lists_choices(tiny):
    with pytest.raises(ValueError, match="random, loo"):
        make_split(tiny, "temporal")
