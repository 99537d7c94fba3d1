"""BGN: bundle examples without leakage, set loss, generation, errors, CLI path on the bundle protocol."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from genrec_lib.data import make_split
from genrec_lib.evaluation.ranking import user_batches
from genrec_lib.models import MODELS, get_model
from genrec_lib.models.bgn import BGN, bundle_examples

FAST = dict(dim=16, n_layers=1, n_heads=2, max_seq_len=8, max_bundle=4, batch_size=16, epochs=3, eval_every=1,
            patience=5)


@pytest.fixture
def bundled(tiny):
    """The tiny data with every two consecutive interactions of a user in one second (bundles of 2)."""
    return replace(tiny, timestamp=tiny.timestamp // 2000)


@pytest.fixture
def bsplit(bundled):
    return make_split(bundled, "bundle")


def test_examples_hold_only_earlier_history(bundled):
    H, Bd, users = bundle_examples(bundled, history_len=8, max_bundle=4, pad=bundled.n_items)
    assert len(H) == len(Bd) == len(users) == len(bundled) // 2
    times = {(u, i): t for u, i, t in zip(bundled.user, bundled.item, bundled.timestamp)}
    for h, b, u in zip(H[:50], Bd[:50], users[:50]):
        t_b = {times[(u, i)] for i in b if i != bundled.n_items}
        assert len(t_b) == 1 and (b != bundled.n_items).sum() == 2
        assert all(times[(u, i)] < min(t_b) for i in h if i != bundled.n_items)


def test_generates_distinct_unseen_items(bsplit):
    model = get_model("bgn", **FAST).fit(bsplit)
    users = np.flatnonzero(np.diff(bsplit.targets("test").indptr) > 0)[:9]
    _, batch = next(user_batches(bsplit, "test", users, 9, model.max_seq_len, model.device))
    out = model.generate(batch.sequences, torch.tensor([3] * 8 + [1]), exclude=batch.seen)
    assert out.shape == (9, 3) and (out[-1, 1:] == -1).all()
    for row in out[:8]:
        assert len(set(row.tolist())) == 3
    assert not torch.gather(batch.seen, 1, out[:8]).any()
    with pytest.raises(ValueError, match="bundle sizes"):
        model.generate(batch.sequences, torch.tensor([9] * 9))


def test_set_loss_decreases(bsplit):
    model = get_model("bgn", **{**FAST, "epochs": 30, "patience": 100, "eval_every": 10}).fit(bsplit)
    losses = [e["loss"] for e in model.history_.epochs]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:2])


def test_registered_and_masked(bsplit, assert_no_seen_item_recommended):
    assert "bgn" in MODELS
    assert_no_seen_item_recommended(get_model("bgn", **FAST).fit(bsplit), bsplit)


def test_no_bundles_is_a_clear_error(tiny_split):
    with pytest.raises(ValueError, match="no bundle"):
        get_model("bgn", **FAST).fit(tiny_split)


@pytest.mark.parametrize("kwargs,param", [({"max_bundle": 1}, "max_bundle"), ({"dim": 15}, "dim"),
                                          ({"max_seq_len": 0}, "max_seq_len")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        BGN(**kwargs)


def test_cli_bench_path(bsplit, bench_record):
    bench_record("bgn", bsplit, "bundle", **FAST)
