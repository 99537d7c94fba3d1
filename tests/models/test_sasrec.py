"""SASRec: windows, shapes, learning, determinism, masking, generation, errors, CLI path."""

import numpy as np
import pytest
import torch

from genrec_lib.evaluation.ranking import evaluate, user_batches
from genrec_lib.models import MODELS, get_model
from genrec_lib.models.sasrec import SASRec, beam_search, sample_continuations, sequence_windows

FAST = dict(dim=16, n_layers=1, n_heads=2, max_seq_len=8, batch_size=32, epochs=3, eval_every=1, patience=5)


@pytest.fixture
def split(tiny_loo):  # two clusters, items in a fixed cyclic order (tests/conftest.py)
    return tiny_loo


def test_windows_cover_every_next_item_pair(split):
    inputs, targets, users = sequence_windows(split.train, 4, shift=1)
    pad = split.n_items
    seqs = split.train.sequences()
    pairs = {(int(u), int(a), int(b)) for u, row_a, row_b in zip(users, inputs, targets) for a, b in zip(row_a, row_b) if b != pad}
    expected = {(u, int(s[t]), int(s[t + 1])) for u, s in enumerate(seqs) for t in range(len(s) - 1)}
    assert pairs == expected
    assert (targets[:, -1] != pad).all()  # windows are aligned at the end: padding only on the left
    newest = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])  # each user's first window is the most recent
    assert all(targets[i, -1] == seqs[users[i]][-1] for i in newest)


def test_registered_and_scores_have_shape(split):
    assert "sasrec" in MODELS
    model = get_model("sasrec", **FAST).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(7), 7, model.max_seq_len, model.device))
    scores = model.score(batch)
    assert scores.shape == (7, split.n_items) and torch.isfinite(scores).all()
    F_, maps = model.encode(batch.sequences, return_attention=True)
    assert maps[0].shape == (7, 2, 8, 8)
    assert torch.allclose(maps[0].sum(-1), torch.ones(7, 2, 8))
    assert (maps[0].triu(1) == 0).all()  # causal: no attention to later positions


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_loss_decreases_and_sequence_is_learned(loss, split):
    model = get_model("sasrec", **{**FAST, "epochs": 30, "patience": 100, "learning_rate": 1e-2, "eval_every": 10, "loss": loss})
    model.fit(split)
    losses = [e["loss"] for e in model.history_.epochs]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2])
    assert evaluate(model, split, "test", ks=(10,))["hit@10"] > 0.5  # the cyclic order is predictable


def test_deterministic_under_seed(split):
    a = evaluate(get_model("sasrec", **FAST, seed=7).fit(split), split, "test").metrics
    b = evaluate(get_model("sasrec", **FAST, seed=7).fit(split), split, "test").metrics
    assert a == b


def test_seen_items_are_masked(split, assert_no_seen_item_recommended):
    assert_no_seen_item_recommended(get_model("sasrec", **FAST).fit(split), split)


def test_generation_is_batched_and_excludes_seen(split):
    model = get_model("sasrec", **FAST).fit(split)
    S = torch.from_numpy(split.sequences("test", model.max_seq_len)[:6])
    g = torch.Generator().manual_seed(0)
    sampled = sample_continuations(model, S, 4, temperature=0.7, top_k=5, generator=g)
    assert sampled.shape == (6, 4)
    for row, gen in zip(S.numpy(), sampled.numpy()):
        assert len(set(gen)) == 4 and not set(gen) & set(row)
    items, logp = beam_search(model, S, 3, beam_width=4)
    assert items.shape == (6, 4, 3) and logp.shape == (6, 4)
    assert (logp[:, :-1] >= logp[:, 1:]).all()  # best first
    greedy = sample_continuations(model, S, 3, temperature=1e-4)
    one_step, _ = beam_search(model, S, 1, beam_width=4)
    assert (one_step[:, 0, 0] == greedy[:, 0]).all()  # a one-step beam's best item is the greedy choice
    # the best beam's score equals the log-probability of its own path, recomputed step by step
    seq, total = S.clone(), torch.zeros(6)
    seen = torch.zeros(6, split.n_items + 1, dtype=torch.bool).scatter(1, S, True)[:, :-1]
    for t in range(3):
        logits = model.next_item_logits(seq).masked_fill(seen, float("-inf"))
        total += logits.log_softmax(-1).gather(1, items[:, 0, t : t + 1]).squeeze(1)
        seen = seen.scatter(1, items[:, 0, t : t + 1], True)
        seq = torch.cat([seq[:, 1:], items[:, 0, t : t + 1]], 1)
    assert torch.allclose(total, logp[:, 0], atol=1e-4)


@pytest.mark.parametrize("kwargs,param", [({"dim": 0}, "dim"), ({"dropout": -0.1}, "dropout"), ({"max_seq_len": 0}, "max_seq_len"),
                                          ({"learning_rate": 0}, "learning_rate"), ({"loss": "mse"}, "loss"),
                                          ({"dim": 10, "n_heads": 3}, "n_heads")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        SASRec(**kwargs)


def test_cli_bench_path(split, bench_record):
    record = bench_record("sasrec", split, "loo", **FAST)
    assert record["seconds_per_epoch"] > 0
