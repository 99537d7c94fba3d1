import numpy as np
import torch

from genrec_lib.evaluation import evaluate
from genrec_lib.models import Recommender, UserBatch, get_model


class SeenLover(Recommender):
    """Scores exactly the items a user has already seen highest: masking must hide them."""

    def fit(self, split):
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return batch.history * 100 + torch.rand(batch.history.shape)


class Oracle(Recommender):
    """Knows the held-out test items: every metric should be perfect."""

    def fit(self, split):
        self.targets = torch.from_numpy(split.targets("test").toarray()).float()
        return self

    def score(self, batch):
        return self.targets[batch.users]


def test_masking_never_ranks_a_seen_item(tiny_split, assert_no_seen_item_recommended):
    assert_no_seen_item_recommended(SeenLover().fit(tiny_split), tiny_split)


def test_oracle_is_perfect_and_per_user_arrays_align(ml100k):
    from genrec_lib.data import make_split

    split = make_split(ml100k, "random")
    result = evaluate(Oracle().fit(split), split, "test", ks=(10,))
    assert result["ndcg@10"] == 1.0 and result["hit@10"] == 1.0
    assert len(result.per_user["ndcg@10"]) == len(result.users) == 943


def test_sampled_evaluation_inflates_scores(ml100k):
    from genrec_lib.data import make_split

    split = make_split(ml100k, "random")
    pop = get_model("pop").fit(split)
    full = evaluate(pop, split, "test", ks=(10,))
    sampled = evaluate(pop, split, "test", ks=(10,), n_negatives=100)
    again = evaluate(pop, split, "test", ks=(10,), n_negatives=100)
    assert sampled["ndcg@10"] > full["ndcg@10"] + 0.1
    assert sampled["ndcg@10"] == again["ndcg@10"]  # seeded


def test_sampled_candidates_exclude_seen_items(tiny_split):
    from genrec_lib.evaluation.ranking import _keep_sampled_candidates

    history = torch.from_numpy(tiny_split.history("test").toarray()) > 0
    relevant = torch.from_numpy(tiny_split.targets("test").toarray())
    scores = torch.zeros(history.shape).masked_fill(history, float("-inf"))
    kept = _keep_sampled_candidates(scores, history, relevant, 5, torch.Generator().manual_seed(0))
    finite = torch.isfinite(kept)
    assert not (finite & history).any()
    assert torch.equal(finite.sum(1), (relevant > 0).sum(1) + 5)


def test_evaluation_is_batch_size_invariant(tiny_split):
    model = get_model("itemknn", k=10).fit(tiny_split)
    a = evaluate(model, tiny_split, "test", batch_size=7)
    b = evaluate(model, tiny_split, "test", batch_size=1000)
    assert np.allclose(a.per_user["ndcg@10"], b.per_user["ndcg@10"])
