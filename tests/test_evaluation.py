import numpy as np
import pytest
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


# --- ties in scores ----------------------------------------------------------------------

class Constant(Recommender):
    """Gives every item the same score (or ``-inf``: 'cannot rank anything')."""

    def __init__(self, value: float = 0.0):
        super().__init__()
        self.value = value

    def fit(self, split):
        return self

    def score(self, batch):
        return torch.full(batch.history.shape, self.value)


def _chance_hit_rate(split, stage: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user probability that k items drawn uniformly from the unseen ones hit a target.

    With N unseen items of which r are held out, P(no hit) = prod_{j<k} (N - r - j) / (N - j).
    """
    targets = split.targets(stage)
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    n_unseen = split.n_items - np.diff(split.seen(stage).indptr)[users]
    r = np.diff(targets.indptr)[users]
    j = np.arange(k)
    miss = np.prod(np.clip(n_unseen[:, None] - r[:, None] - j, 0, None) / (n_unseen[:, None] - j), axis=1)
    return users, 1.0 - miss


@pytest.mark.parametrize("protocol", ["random", "loo"])
@pytest.mark.parametrize("value", [0.0, float("-inf")], ids=["constant", "all-inf"])
def test_a_scorer_without_information_is_at_chance(ml100k, protocol, value):
    """Index-order tie-breaking gave a constant scorer 3x chance on loo (item ids follow
    popularity); random tie-breaking must bring it to chance, within a binomial tolerance."""
    from genrec_lib.data import make_split

    split = make_split(ml100k, protocol, seed=2020)
    users, p = _chance_hit_rate(split, "test", 10)
    seeds = range(5)
    hits = np.mean([evaluate(Constant(value), split, "test", ks=(10,), metrics=("hit",), seed=s)["hit@10"] for s in seeds])
    # Each (user, seed) is an independent Bernoulli(p_u): the mean's standard deviation is
    # sqrt(sum p(1-p)) / (U S); 4.5 of them leave a 1-in-150,000 false alarm.
    sd = np.sqrt(len(seeds) * np.sum(p * (1 - p))) / (len(users) * len(seeds))
    assert abs(hits - p.mean()) < 4.5 * sd, f"hit@10 {hits:.4f} vs chance {p.mean():.4f} (sd {sd:.4f})"


def test_index_order_ties_would_fail_the_chance_test(ml100k):
    """The check above has power: plain torch.topk (ties by index) is far above chance on loo."""
    from genrec_lib.data import make_split

    split = make_split(ml100k, "loo", seed=2020)
    users, p = _chance_hit_rate(split, "test", 10)
    seen = torch.from_numpy(split.seen("test")[users].toarray()) > 0
    top = torch.topk(torch.zeros(seen.shape).masked_fill(seen, float("-inf")), 10, dim=1).indices
    hits = torch.from_numpy(split.targets("test")[users].toarray()).gather(1, top).sum(1).numpy()
    sd = np.sqrt(np.sum(p * (1 - p))) / len(users)
    assert hits.mean() > p.mean() + 4.5 * sd


def test_topk_random_ties_keeps_distinct_scores_in_order_and_shuffles_ties():
    from genrec_lib.evaluation import topk_random_ties

    scores = torch.randn(64, 300)
    assert torch.equal(topk_random_ties(scores, 20, seed=1), torch.topk(scores, 20, dim=1).indices)
    tied = torch.tensor([[1.0, 2.0, 2.0, 3.0, float("-inf"), 0.5, 2.0, 2.0]]).repeat(400, 1)
    top = topk_random_ties(tied, 8, seed=3, users=torch.arange(400))
    assert torch.all(top[:, 0] == 3) and torch.all(top[:, 5] == 0) and torch.all(top[:, 6] == 5) and torch.all(top[:, 7] == 4)
    # The four items tied at 2.0 fill places 1-4 in every order, each first about a quarter of the time.
    assert torch.equal(top[:, 1:5].sort(1).values, torch.tensor([1, 2, 6, 7]).repeat(400, 1))
    first = torch.bincount(top[:, 1], minlength=8)[[1, 2, 6, 7]].float() / 400
    assert torch.all((first - 0.25).abs() < 0.08), first
    # A tie across the k-th place: which tied items get in is a fair draw.
    picks = topk_random_ties(tied, 3, seed=3, users=torch.arange(400))[:, 1:]
    share = torch.bincount(picks.flatten(), minlength=8)[[1, 2, 6, 7]].float() / 800
    assert torch.all((share - 0.25).abs() < 0.06), share
    assert not torch.equal(top, topk_random_ties(tied, 8, seed=4, users=torch.arange(400)))


def test_tie_breaking_is_invariant_to_batching():
    from genrec_lib.evaluation import topk_random_ties

    scores = torch.randint(0, 3, (100, 40)).float()
    whole = topk_random_ties(scores, 10, seed=5, users=torch.arange(100))
    parts = torch.cat([topk_random_ties(scores[i:i + 7], 10, seed=5, users=torch.arange(i, min(i + 7, 100)))
                       for i in range(0, 100, 7)])
    assert torch.equal(whole, parts)


def test_unrankable_items_come_after_ranked_ones(tiny_split):
    """A model that can rank only some items (-inf elsewhere) still fills its top with them."""
    from genrec_lib.evaluation import recommend

    class FirstFive(Recommender):
        def fit(self, split):
            return self

        def score(self, batch):
            scores = torch.full(batch.history.shape, float("-inf"))
            scores[:, :5] = torch.arange(5, 0, -1).float()
            return scores

    top = recommend(FirstFive(), tiny_split, k=12)
    seen = tiny_split.seen("test").toarray()
    for u, row in enumerate(top):
        ranked = [i for i in range(5) if not seen[u, i]]
        assert list(row[: len(ranked)]) == ranked
        assert not seen[u, row].any()


def test_nan_scores_are_a_clear_error(tiny_split):
    model = Constant(float("nan"))
    with pytest.raises(ValueError, match="NaN scores"):
        evaluate(model, tiny_split, "test")


class FixedNoise(Recommender):
    """Fixed random scores per (user, item), plus ``boost`` on every seen item."""

    def __init__(self, n_users, n_items, boost=0.0):
        super().__init__()
        self.noise = torch.rand(n_users, n_items, generator=torch.Generator().manual_seed(0))
        self.boost = boost

    def fit(self, split):
        return self

    def score(self, batch):
        return self.noise[batch.users] + self.boost * batch.seen


@pytest.mark.parametrize("protocol", ["random", "loo"])
def test_evaluate_itself_masks_seen_items(ml100k, protocol):
    from genrec_lib.data import make_split

    split = make_split(ml100k, protocol)
    plain = FixedNoise(split.n_users, split.n_items)
    seen_lover = FixedNoise(split.n_users, split.n_items, boost=100.0)
    masked = evaluate(seen_lover, split, "test", ks=(10,))
    # Masked, a boost on seen items changes nothing: they are out of the ranking.
    assert masked.metrics == evaluate(plain, split, "test", ks=(10,)).metrics
    assert masked["hit@10"] > 0.002  # about chance (10 of ~1,600 unseen items), not zero
    # Unmasked, the seen items fill every top 10 (each user has seen at least 10 items).
    assert evaluate(seen_lover, split, "test", ks=(10,), mask_seen=False)["hit@10"] == 0.0
    with pytest.raises(ValueError, match="full ranking"):
        evaluate(plain, split, "test", ks=(10,), mask_seen=False, n_negatives=10)
