"""Text-only recommenders (chapter 11): the recency profile, the bi-encoder's loss, the
cross-encoder reranker, item cold start and the RAG grounding rates."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from genrec_lib.data import load_split
from genrec_lib.data.splits import hold_out_items
from genrec_lib.evaluation import evaluate
from genrec_lib.evaluation.ranking import user_batches
from genrec_lib.models import UserBatch, get_model
from genrec_lib.models.llm.rag import grounding_rates, item_facts
from genrec_lib.models.text_retrieval import recency_profile, training_pairs


@pytest.fixture(scope="module")
def split():
    return load_split("ml-100k", "loo", seed=2020)


@pytest.fixture(scope="module")
def embeddings(split):
    from genrec_lib.models.text_retrieval import item_text_embeddings

    return item_text_embeddings(split)


def test_recency_profile_weights_recent_items_more():
    e = torch.eye(3)  # three orthogonal items; padding id is 3
    seq = torch.tensor([[3, 0, 1], [3, 3, 3]])
    p = recency_profile(e, seq, 0.5)
    expected = F.normalize(torch.tensor([0.5, 1.0, 0.0]), dim=0)
    assert torch.allclose(p[0], expected)
    assert torch.all(p[1] == 0)  # an empty history gives a zero profile, not NaN


def test_training_pairs_are_every_prefix_and_next_item():
    hist, tgt = training_pairs([np.array([4, 5, 6]), np.array([7])], n_items=9, max_len=2)
    assert tgt.tolist() == [5, 6]
    assert hist.tolist() == [[9, 4], [4, 5]]
    with pytest.raises(ValueError, match="two training interactions"):
        training_pairs([np.array([1])], 9, 2)


def test_bad_arguments_fail_clearly(split):
    with pytest.raises(ValueError, match="gamma"):
        get_model("minilm-mean", gamma=1.5)
    with pytest.raises(ValueError, match="rows"):
        get_model("minilm-mean", embeddings=torch.zeros(5, 8)).fit(split)
    with pytest.raises(ValueError, match="n_negatives"):
        get_model("minilm-crossencoder", k=5, n_negatives=5)
    with pytest.raises(ValueError, match="share"):
        hold_out_items(split, share=1.5)


def test_in_batch_loss_matches_the_formula_and_masks_duplicate_targets(split):
    e = F.normalize(torch.randn(split.n_items, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    model = get_model("minilm-biencoder", embeddings=e, logq=False, tau=0.1)
    model.build(split)
    hist = torch.full((3, 20), split.n_items)
    hist[:, -1] = torch.tensor([1, 2, 3])
    targets = torch.tensor([10, 11, 10])  # rows 0 and 2 share a target: neither is the other's negative
    loss = model.training_loss((hist, targets))
    q, k = model.user_vectors(hist), model.item_vectors(targets)
    logits = q @ k.T / 0.1
    logits[0, 2] = logits[2, 0] = float("-inf")
    assert torch.allclose(loss, F.cross_entropy(logits, torch.arange(3)), atol=1e-6)


def test_text_models_on_loo_within_two_sided_bands(split, embeddings):
    """Frozen text profile: above chance (~.001), below Pop-level leaks; the trained bi-encoder beats it."""
    frozen = evaluate(get_model("minilm-mean", gamma=0.7, embeddings=embeddings).fit(split), split, "test")["ndcg@10"]
    assert 0.005 < frozen < 0.06, frozen
    bienc = get_model("minilm-biencoder", epochs=1, embeddings=embeddings).fit(split)
    trained = evaluate(bienc, split, "test", ks=(10, 50))
    assert frozen < trained["ndcg@10"] < 0.2, (frozen, trained.metrics)
    # The reranker keeps the first stage's top k (its recall@k) and puts its own order on top.
    ce = get_model("minilm-crossencoder", first_stage=bienc, k=20, steps=20).fit(split)
    users = np.arange(0, 900, 9)
    (_, batch), = user_batches(split, "test", users, len(users), bienc.max_seq_len, bienc.device)
    scores, top = ce.score(batch), ce.first_stage_top(batch)
    best20 = scores.topk(20, dim=1).indices
    assert torch.equal(best20.sort(1).values, top.sort(1).values)


def test_hold_out_items_is_seeded_independent_of_targets_and_leaves_test_whole(split):
    cold, is_cold = hold_out_items(split, share=0.1, seed=7)
    assert is_cold.sum() == round(0.1 * split.n_items)
    assert not is_cold[cold.train.item].any() and not is_cold[cold.valid.item].any()
    assert len(cold.test) == len(split.test)
    assert np.array_equal(is_cold, hold_out_items(split, 0.1, seed=7)[1])
    assert not np.array_equal(is_cold, hold_out_items(split, 0.1, seed=8)[1])
    # The draw uses only the catalogue size and the seed: another split of the same items gets the same cold set.
    other = load_split("ml-100k", "random", seed=2020)
    assert np.array_equal(is_cold, hold_out_items(other, 0.1, seed=7)[1])


def test_cold_items_id_models_cannot_text_models_can(split, embeddings):
    cold, is_cold = hold_out_items(split, share=0.1, seed=2020)
    users = np.sort(split.test.user[is_cold[split.test.item]])
    pop = evaluate(get_model("pop").fit(cold), cold, "test", ks=(50,), users=users)["recall@50"]
    text = evaluate(get_model("minilm-mean", gamma=0.7, embeddings=embeddings).fit(cold), cold, "test", ks=(50,),
                    users=users)["recall@50"]
    assert pop < 0.02 < text < 0.6, (pop, text)


def test_grounding_rates_and_item_facts(split):
    frame = pd.DataFrame({"mentions_history": [True, False], "mentions_item_genre": [True, True],
                          "grounded": [True, True], "contradicts": [False, True], "empty": [False, False]})
    assert grounding_rates(frame) == {"mentions_history": 0.5, "mentions_item_genre": 1.0, "grounded": 1.0,
                                      "states_false": 0.5, "empty": 0.0}
    with pytest.raises(ValueError):
        grounding_rates(frame.iloc[:0])
    assert item_facts(split.dataset, 0).startswith("1995; ")  # Toy Story
