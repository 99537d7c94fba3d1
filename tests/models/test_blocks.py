"""Shared model blocks: shuffled mini-batches, item tables, the step-conditioned MLP."""

import pytest
import torch

from genrec_lib.models.blocks import StepMLP, init_embeddings, item_embedding, shuffled_batches, step_embedding


@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (5, 8), (1, 1)])
def test_every_index_once_per_epoch_and_last_short_batch_kept(n, batch_size):
    batches = list(shuffled_batches(n, batch_size, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert len(batches[-1]) == (n % batch_size or batch_size)
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(n))
    assert all(b.dtype == torch.int64 for b in batches)


def test_batches_are_shuffled_and_follow_the_generator():
    def epoch(seed):
        return torch.cat(list(shuffled_batches(50, 7, torch.Generator().manual_seed(seed))))

    assert torch.equal(epoch(1), epoch(1))
    assert not torch.equal(epoch(1), epoch(2))
    assert not torch.equal(epoch(1), torch.arange(50))
    # one randperm draw per epoch: the generator is left where randperm(n) leaves it
    g, h = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    list(shuffled_batches(50, 7, g))
    torch.randperm(50, generator=h)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=h))


def test_empty_epoch_and_bad_batch_size():
    assert list(shuffled_batches(0, 4, torch.Generator())) == []
    with pytest.raises(ValueError, match="batch_size"):
        list(shuffled_batches(5, 0, torch.Generator()))


def test_item_table_rows_padding_and_init():
    torch.manual_seed(0)
    E = item_embedding(10, 6, n_special=1)  # items, pad, [mask]
    P = torch.nn.Embedding(4, 6)
    assert E.weight.shape == (12, 6) and E.padding_idx == 10
    init_embeddings(E, P)
    assert torch.all(E.weight[10] == 0) and E.weight[11].abs().sum() > 0
    assert 0.005 < E.weight[:10].std() < 0.05 and 0.005 < P.weight.std() < 0.05  # N(0, 0.02^2)
    E(torch.tensor([[10, 3]])).sum().backward()
    assert torch.all(E.weight.grad[10] == 0) and torch.all(E.weight.grad[3] == 1)  # no gradient to padding
    with pytest.raises(ValueError, match="n_items"):
        item_embedding(0, 6)


def test_step_embedding_shape_and_values():
    t = torch.tensor([0, 1, 4])
    e = step_embedding(t, 5)  # odd width: one zero column of padding
    assert e.shape == (3, 5) and torch.all(e[:, -1] == 0)
    assert torch.allclose(e[0, :2], torch.ones(2)) and torch.allclose(e[0, 2:4], torch.zeros(2))


def test_step_mlp_shape_and_depends_on_the_step():
    torch.manual_seed(0)
    f = StepMLP(n_items=7, hidden=16, emb_dim=4, dropout=0.5).eval()
    x = torch.bernoulli(torch.full((3, 7), 0.3))
    out_0, out_3 = f(x, torch.zeros(3, dtype=torch.long)), f(x, torch.full((3,), 3))
    assert out_0.shape == (3, 7)
    assert not torch.allclose(out_0, out_3)
    assert torch.equal(f(x, torch.full((3,), 3)), out_3)  # eval: no dropout, deterministic
    assert torch.allclose(f(x, torch.full((3,), 1.5)), f(x, torch.tensor([1.5, 1.5, 1.5])))  # fractional steps work
    f.train()
    torch.manual_seed(1)
    assert not torch.equal(f(x, torch.full((3,), 3)), out_3)  # training: input dropout


def test_step_mlp_bad_arguments():
    with pytest.raises(ValueError, match="dropout"):
        StepMLP(n_items=7, hidden=16, emb_dim=4, dropout=1.0)
    with pytest.raises(ValueError, match="hidden"):
        StepMLP(n_items=7, hidden=0, emb_dim=4, dropout=0.1)
