"""LLaRA: projector, arguments, training on training sequences only, scores, save/reload, a learnable signal."""

import numpy as np
import pytest
import torch

from genrec_lib.models import get_model
from genrec_lib.models.llm import llara


def test_projector_maps_recommender_embeddings_to_the_token_space_at_its_scale():
    M = torch.randn(30, 8)
    projector = llara.Projector(8, 16, seed=1)
    assert projector(M).shape == (30, 16)  # (I, d_r) -> (I, d)
    projector.match_scale(M, 0.05)
    assert abs(float(projector(M).detach().std()) - 0.05) < 1e-4
    assert torch.equal(llara.Projector(8, 16, seed=1).mlp[0].weight, llara.Projector(8, 16, seed=1).mlp[0].weight)


def test_registered_and_bad_arguments_raise_one_line_errors():
    assert isinstance(get_model("llm-llara"), llara.LLaRA)
    with pytest.raises(ValueError, match="unknown mode 'text'; choose one of: hybrid, titles, frozen"):
        llara.LLaRA(mode="text")
    with pytest.raises(ValueError, match="n_history must be > 0"):
        llara.LLaRA(n_history=0)
    with pytest.raises(ValueError, match="fit the model first"):
        llara.LLaRA().item_logits([[1, 2]])
    with pytest.raises(NotImplementedError, match="llmrank"):
        llara.LLaRA().score(None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small LLaRA on the tiny sequential dataset (items follow a fixed order within each taste cluster)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import make_tiny_interactions

    from genrec_lib.data import make_split
    from genrec_lib.models.llm.lm import load_lm
    from genrec_lib.models.sasrec import SASRec

    split = make_split(make_tiny_interactions(), "loo", seed=1)
    lm = load_lm(device="cpu")
    sasrec = SASRec(max_seq_len=10, epochs=20, seed=2020).fit(split)
    model = llara.LLaRA(n_examples=60, n_history=10, epochs=2).fit(split, lm=lm, sasrec=sasrec)
    return split, lm, model


@pytest.mark.slow
def test_trains_on_training_sequences_only_and_scores_every_candidate(trained):
    from genrec_lib.evaluation.llmrank import make_llmrank_task

    split, _, model = trained
    train = split.train.sequences()
    held = set(zip(split.valid.user.tolist(), split.valid.item.tolist())) | set(
        zip(split.test.user.tolist(), split.test.item.tolist()))
    assert len(model.sequences_) == 60
    for u, s in zip(model.users_, model.sequences_):  # every sequence is the end of a training sequence
        assert list(s) == list(train[u][-len(s):]) and not any((int(u), int(i)) in held for i in s)
    assert model.log_.tokens > 0 and np.isfinite(model.log_.losses).all()
    task = make_llmrank_task(split, "test", n_users=12, n_candidates=10, history_len=10, seed=1)
    scores = model.score_candidates(task).numpy()
    assert scores.shape == (12, 10) and np.isfinite(scores).all()
    logits = model.item_logits(task.history)
    assert logits.shape == (12, split.n_items)
    # one user alone scores as in a left-padded batch of users with histories of other lengths
    assert np.allclose(model.item_logits([task.history[3]])[0].numpy(), logits[3].numpy(), atol=1e-3)


@pytest.mark.slow
def test_save_and_reload_give_identical_scores(trained, tmp_path):
    from genrec_lib.evaluation.llmrank import make_llmrank_task

    split, lm, model = trained
    task = make_llmrank_task(split, "test", n_users=6, n_candidates=10, history_len=10, seed=1)
    model.save(tmp_path / "llara")
    reloaded = llara.LLaRA(n_history=10, adapter=str(tmp_path / "llara")).fit(split, lm=lm)
    assert reloaded.log_ is None  # nothing trained
    assert np.allclose(reloaded.score_candidates(task).numpy(), model.score_candidates(task).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="saved with mode='hybrid'"):
        llara.LLaRA(mode="titles", adapter=str(tmp_path / "llara")).fit(split, lm=lm)


@pytest.mark.slow
def test_learns_the_sequence_that_popularity_cannot_see(trained):
    """On the tiny data the next item follows from the last one and popularity is flat:
    LLaRA clears Pop by a wide margin, and scoring it with the histories' order reversed
    (the same items, the wrong last one) loses most of that margin."""
    from genrec_lib.evaluation.llmrank import candidate_metrics, evaluate_llmrank, make_llmrank_task

    split, _, model = trained
    task = make_llmrank_task(split, "test", n_users=40, n_candidates=10, history_len=10, seed=1)
    pop = evaluate_llmrank(get_model("pop").fit(split), task)["ndcg@10"]
    ours = evaluate_llmrank(model, task)["ndcg@10"]
    assert ours > pop + 0.2, (ours, pop)
    reversed_history = model.item_logits([list(h)[::-1] for h in task.history])
    shuffled = candidate_metrics(reversed_history.gather(1, torch.as_tensor(task.candidates)), task)["ndcg@10"]
    assert shuffled < ours - 0.1, (shuffled, ours)
