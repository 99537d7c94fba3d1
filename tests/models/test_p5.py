"""P5: training pairs from the training split only, item texts, constrained generation, adapters."""

import numpy as np
import pytest
import torch

from genrec_lib.data import load_split
from genrec_lib.models.llm import p5


@pytest.fixture(scope="module")
def split():
    return load_split("ml-100k", "loo", 2020)


def test_training_pairs_come_from_the_training_sequences_only(split):
    users, histories, targets = p5.training_pairs(split.train, 200, n_history=4, seed=7)
    sequences = split.train.sequences()
    valid_test = set(zip(split.valid.user.tolist(), split.valid.item.tolist())) | set(
        zip(split.test.user.tolist(), split.test.item.tolist()))
    for u, h, y in zip(users, histories, targets):
        s = list(sequences[u])
        assert 1 <= len(h) <= 4
        # the target is a training interaction and the history the items just before it, in order
        positions = [t for t in range(1, len(s)) if s[t] == y and s[max(0, t - len(h)):t] == list(h)]
        assert positions, (u, h, y)
        assert (int(u), int(y)) not in valid_test and all((int(u), int(i)) not in valid_test for i in h)
    again = p5.training_pairs(split.train, 200, n_history=4, seed=7)
    assert np.array_equal(again[0], users) and np.array_equal(again[2], targets)  # seeded
    assert not np.array_equal(p5.training_pairs(split.train, 200, n_history=4, seed=8)[2], targets)


def test_training_sequences_are_training_suffixes_only(split):
    users, sequences = p5.training_sequences(split.train, 50, seq_len=12, seed=3)
    train = split.train.sequences()
    assert len(users) == len(set(users.tolist())) == 50
    for u, s in zip(users, sequences):
        assert 2 <= len(s) <= 12 and list(s) == list(train[u][-len(s):])  # the most recent training items, in order
    held = set(zip(split.valid.user.tolist(), split.valid.item.tolist())) | set(
        zip(split.test.user.tolist(), split.test.item.tolist()))
    assert not any((int(u), int(i)) in held for u, s in zip(users, sequences) for i in s)
    assert np.array_equal(p5.training_sequences(split.train, 50, seq_len=12, seed=3)[0], users)  # seeded
    everyone, _ = p5.training_sequences(split.train, 10_000, seq_len=12)
    assert len(everyone) == split.n_users  # more than there are: every eligible user once


def test_item_tokens_logits_and_prior():
    E = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    tokens = p5.ItemTokens(E, torch.tensor([0.5, -0.5, 0.0]), log_tau=np.log(2.0))
    h = torch.tensor([[1.0, 2.0]])
    assert torch.allclose(tokens.logits(h), torch.tensor([[2.5, 3.5, 6.0]]))  # tau h.e_i + b_i

    class Tiny:  # an LM with a 4-token vocabulary whose titles are token lists
        model = torch.nn.Module()
        model.get_input_embeddings = lambda: torch.nn.Embedding.from_pretrained(torch.arange(8.0).view(4, 2))
        encode = staticmethod(lambda text: [int(c) for c in text])

    made = p5.ItemTokens.from_titles(Tiny(), ["01", "3"], counts=np.array([9, 0]))
    assert torch.allclose(made.E, torch.tensor([[1.0, 2.0], [6.0, 7.0]]))  # mean of the title's token embeddings
    assert made.b[0] > made.b[1] and abs(float(made.b.detach().sum())) < 1e-6  # centred log counts: popular first
    shuffled = p5.ItemTokens.from_titles(Tiny(), ["01", "3"], counts=np.array([9, 0]), init="random")
    assert not torch.allclose(shuffled.E, made.E) and torch.equal(shuffled.b, made.b)
    with pytest.raises(ValueError, match="unknown init 'zero'"):
        p5.P5(init="zero")


def test_item_texts_and_prompt(split):
    titles, ids = p5.item_texts(split.dataset, "title"), p5.item_texts(split.dataset, "id")
    assert len(titles) == len(ids) == split.n_items
    assert titles[0].endswith(")") and titles[0][-5:-1].isdigit()  # "Toy Story (1995)": title with year
    assert ids[0] == f"item {split.dataset.item_ids[0]}"

    class TemplateOnly:
        def chat(self, user, system=None, examples=()):
            return f"<s>{system}</s><u>{user}</u><a>"

    text = p5.prompt(TemplateOnly(), ids[:3])
    assert "Watched: item " in text and text.endswith("Next?</u><a>")
    assert "nothing yet" in p5.prompt(TemplateOnly(), [])


def test_bad_arguments_raise_one_line_errors():
    with pytest.raises(ValueError, match="unknown item_repr 'ids'; choose one of: title, id, token"):
        p5.P5(item_repr="ids")
    with pytest.raises(ValueError, match="unknown reduce"):
        p5.P5(reduce="max")
    with pytest.raises(ValueError, match="n_examples must be > 0"):
        p5.P5(n_examples=0)
    with pytest.raises(ValueError, match="fit the model first"):
        p5.P5().user_prompt([1, 2])
    with pytest.raises(NotImplementedError, match="llmrank"):
        p5.P5().score(None)
    with pytest.raises(ValueError, match="item_learning_rate must be > 0"):
        p5.P5(item_learning_rate=0)
    assert (p5.P5().n_examples, p5.P5().n_history) == (300, 40)  # item tokens: whole sequences
    assert (p5.P5(item_repr="id").n_examples, p5.P5(item_repr="id").n_history) == (256, 5)


@pytest.mark.slow
def test_generation_is_constrained_to_the_catalogue_and_adapters_reload(split, tmp_path):
    from genrec_lib.evaluation.llmrank import make_llmrank_task
    from genrec_lib.models.llm.lm import load_lm

    lm = load_lm(device="cpu")
    model = p5.P5(item_repr="id", n_examples=8, batch_size=4, n_history=3).fit(split, lm=lm)
    assert model.log_.tokens > 0 and np.isfinite(model.log_.losses).all()
    task = make_llmrank_task(split, "valid", n_users=2, seed=2020)
    seen = [split.seen("valid")[u].indices for u in task.users]
    lists = model.generate(task.history, n=3, exclude=seen)
    for items, skip in zip(lists, seen):
        assert 1 <= len(items) <= 3 and len(set(items)) == len(items)
        assert all(0 <= i < split.n_items for i in items) and not set(items) & set(skip.tolist())
    scores = model.score_candidates(task).numpy()
    assert scores.shape == (2, 20) and np.isfinite(scores).all()
    model.save(tmp_path / "adapter")
    reloaded = p5.P5(item_repr="id", n_history=3, adapter=str(tmp_path / "adapter")).fit(split, lm=lm)
    assert reloaded.log_ is None  # nothing trained
    assert np.allclose(reloaded.score_candidates(task).numpy(), scores, atol=1e-4)
    untuned = p5.P5(item_repr="id", n_history=3).fit(split, lm=lm, peft_model=lm.model)
    assert not np.allclose(untuned.score_candidates(task).numpy(), scores, atol=1e-4)  # the adapters changed something


@pytest.mark.slow
def test_item_token_p5_ranks_exactly_and_reloads(split, tmp_path):
    from genrec_lib.evaluation.llmrank import make_llmrank_task
    from genrec_lib.models.llm.lm import load_lm

    lm = load_lm(device="cpu")
    model = p5.P5(n_examples=8, n_history=6, batch_size=4).fit(split, lm=lm)
    assert model.log_.tokens > 0 and np.isfinite(model.log_.losses).all() and len(model.log_.losses) == 2
    task = make_llmrank_task(split, "valid", n_users=3, seed=2020)
    scores = model.score_candidates(task).numpy()
    assert scores.shape == (3, 20) and np.isfinite(scores).all()
    # one user's scores are the same alone as in a left-padded batch, and are the catalogue logits
    assert np.allclose(model.score_user(task.history[1], task.candidates[1]), scores[1], atol=1e-3)
    seen = [split.seen("valid")[u].indices for u in task.users]
    lists = model.generate(task.history, n=4, exclude=seen)
    logits = model.item_logits(task.history)
    for row, (items, skip) in enumerate(zip(lists, seen)):
        assert len(items) == 4 and not set(items) & set(skip.tolist())
        unseen = np.setdiff1d(np.arange(split.n_items), skip)
        assert set(items) == set(unseen[np.argsort(-logits[row, unseen].numpy())[:4]].tolist())  # exact top 4
    model.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / p5.ITEM_TOKENS_FILE).is_file()
    reloaded = p5.P5(n_history=6, adapter=str(tmp_path / "adapter")).fit(split, lm=lm)
    assert reloaded.log_ is None and np.allclose(reloaded.score_candidates(task).numpy(), scores, atol=1e-4)
    model.tuned.model.save_pretrained(str(tmp_path / "plain"), save_embedding_layers=False)  # adapters only
    with pytest.raises(FileNotFoundError, match="item_tokens.safetensors"):
        p5.P5(adapter=str(tmp_path / "plain")).fit(split, lm=lm)
