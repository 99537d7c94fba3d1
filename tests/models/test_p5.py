"""P5: training pairs from the training split only, item texts, constrained generation, adapters."""

import numpy as np
import pytest

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
    with pytest.raises(ValueError, match="unknown item_repr 'ids'; choose one of: title, id"):
        p5.P5(item_repr="ids")
    with pytest.raises(ValueError, match="unknown reduce"):
        p5.P5(reduce="max")
    with pytest.raises(ValueError, match="n_examples must be > 0"):
        p5.P5(n_examples=0)
    with pytest.raises(ValueError, match="fit the model first"):
        p5.P5().user_prompt([1, 2])
    with pytest.raises(NotImplementedError, match="llmrank"):
        p5.P5().score(None)


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
