"""The ``llmrank`` protocol: rank 20 candidates per user, as LLM rankers are evaluated.

After LLMRank (Hou et al., "Large Language Models are Zero-Shot Rankers for Recommender
Systems", ECIR 2024, https://arxiv.org/abs/2305.08845). A language model cannot score a
whole catalogue per user at a reasonable cost, so every model, LLM or not, ranks the same
small candidate set:

- the split is temporal leave-one-out (``loo``, with its seeded tie-breaking); the target
  of stage ``"test"`` is each user's last interaction, of ``"valid"`` the one before;
- ``n_users`` (200) test users are drawn with the seed;
- candidates: the target plus ``n_candidates - 1`` (19) negatives, shuffled so that the
  target's position carries no information. A negative is never an item the user
  interacted with (in the whole dataset, so that no negative is a future positive). Three
  constructions (``candidates=``), each recorded in :attr:`LLMRankTask.provenance`:

  - ``"uniform"`` (LLMRank's protocol, kept for comparability): negatives drawn uniformly.
    Popular targets then stand out among mostly obscure negatives, so popularity alone
    ranks well (Pop far above chance).
  - ``"popularity"``: negatives drawn uniformly from the unseen items of the target's
    training-popularity bin (items ordered by their number of ``train`` interactions, ties
    in seeded random order, cut into ``n_bins`` equal-size bins); when a bin holds fewer
    than 19 unseen items, the unseen items nearest to the target in that order fill the
    rest. This construction *uses the test target* (its popularity), which a deployed
    system could not: it is a diagnostic that removes popularity as a signal (Pop falls
    to about chance), not a serving scenario.
  - ``"retrieved"``: a first-stage recommender (``first_stage``, trained on the training
    split; its own early stopping reads ``valid``) ranks the whole catalogue for the user
    as the evaluator does, and its 19 best items she never interacted with become the
    negatives; the target is added whether or not the first stage found it (as LLMRank
    does). The target is not used to pick the negatives. The first stage's scores of the
    candidates are kept (:attr:`LLMRankTask.first_stage_scores`), so the first stage is a
    row of every table: a reranker must beat the order it was handed.
- the history a model reads is what ``loo`` allows (interactions strictly before the
  target's timestamp); prompts show the last ``history_len`` (20) of them by title.

Models rank through one interface (:func:`candidate_scores`): a model with a
``score_candidates(task)`` method (the LLM rankers) scores the candidate texts; any other
:class:`~genrec_lib.models.base.Recommender` scores all items with its usual ``score`` and
the candidates' columns are read off, so ``pop``, ``bpr`` or ``sasrec`` need no change.
Ties are broken uniformly at random (:func:`~genrec_lib.evaluation.ranking.topk_random_ties`).
Metrics: NDCG@10, HR@1/5/10 and MRR over the candidates, with bootstrap intervals over
users (:mod:`genrec_lib.evaluation.stats`). A random ranking has
``E[NDCG@10] = (1/20) sum_{r<=10} 1/log2(r+1) = 0.227`` (:func:`random_expectation`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from genrec_lib.data import Split
from genrec_lib.evaluation.metrics import compute_metrics
from genrec_lib.evaluation.ranking import EvalResult, masked_scores, topk_random_ties, user_batches
from genrec_lib.evaluation.stats import bootstrap_ci

#: The metrics the protocol reports, in table order ("mrr" is MRR over all candidates).
LLMRANK_METRICS = ("ndcg@10", "hit@1", "hit@5", "hit@10", "mrr")


@dataclass(frozen=True)
class LLMRankTask:
    """Candidates and histories of one stage for a seeded set of users.

    Attributes:
        split: the ``loo`` split the task was drawn from.
        stage: ``"valid"`` or ``"test"``.
        users: dense user indices, (U,).
        candidates: item indices, (U, C), in the (shuffled) order a prompt lists them.
        targets: each user's held-out item, (U,).
        history: per user, up to ``history_len`` item indices strictly before the target,
            oldest first (what prompts show).
        seed: the seed the task was drawn with (also keys the random tie-breaking).
        kind: how the negatives were made: ``"uniform"``, ``"popularity"`` or ``"retrieved"``.
        provenance: a JSON-able description of the construction (kind, sizes, seed, and for
            ``"retrieved"`` the first stage's name and settings).
        first_stage_scores: for ``"retrieved"``, the first stage's scores of the candidates,
            (U, C) float32 (rank them with :func:`candidate_metrics` for the first stage's row);
            ``None`` otherwise.
    """

    split: Split
    stage: str
    users: np.ndarray
    candidates: np.ndarray
    targets: np.ndarray
    history: list = field(repr=False)
    seed: int = 2020
    kind: str = "uniform"
    provenance: dict = field(default_factory=dict, repr=False)
    first_stage_scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_candidates(self) -> int:
        return self.candidates.shape[1]

    @property
    def target_column(self) -> np.ndarray:
        """Position of the target among each user's candidates, (U,)."""
        return (self.candidates == self.targets[:, None]).argmax(1)

    def subset(self, rows) -> "LLMRankTask":
        """The same task for a subset of its users (``rows`` index into ``users``)."""
        rows = np.asarray(rows)
        first = None if self.first_stage_scores is None else self.first_stage_scores[rows]
        return LLMRankTask(self.split, self.stage, self.users[rows], self.candidates[rows], self.targets[rows],
                           [self.history[r] for r in rows], self.seed, self.kind, dict(self.provenance), first)


CANDIDATE_KINDS = ("uniform", "popularity", "retrieved")


def make_llmrank_task(split: Split, stage: str = "test", n_users: int = 200, n_candidates: int = 20,
                      history_len: int = 20, seed: int = 2020, candidates: str = "uniform",
                      first_stage=None, n_bins: int = 40) -> LLMRankTask:
    """Draw the ``llmrank`` task of ``stage`` from a ``loo`` split (see the module docstring).

    Args:
        candidates: ``"uniform"`` (LLMRank's protocol), ``"popularity"`` (negatives from the
            target's training-popularity bin; uses the target's popularity) or ``"retrieved"``
            (the first stage's 19 best unseen items plus the target).
        first_stage: for ``"retrieved"`` only: a fitted recommender (any model the evaluator
            ranks with), or a registered model name, which is then fitted here on ``split``
            with its defaults (its early stopping reads ``valid``: a ``"valid"`` task's first
            stage has had its epoch chosen on those very targets, so use test tasks for
            reported numbers and valid tasks to choose settings only).
        n_bins: for ``"popularity"``: number of equal-size popularity bins.

    The users (and, for ``"uniform"``, everything) are drawn exactly as before the other
    kinds existed: the three kinds share their ``n_users`` users, targets and histories.
    """
    if split.protocol != "loo":
        raise ValueError(f"llmrank is defined on a temporal leave-one-out split; got protocol {split.protocol!r}. "
                         "Build it with load_split(dataset, 'loo', seed)")
    if stage not in ("valid", "test"):
        raise ValueError(f"unknown stage {stage!r}; choose one of: valid, test")
    if candidates not in CANDIDATE_KINDS:
        raise ValueError(f"unknown candidates {candidates!r}; choose one of: {', '.join(CANDIDATE_KINDS)}")
    if (first_stage is None) != (candidates != "retrieved"):
        raise ValueError("first_stage is needed for candidates='retrieved' (a fitted model or a model name) "
                         "and only for it")
    for name, value in (("n_users", n_users), ("history_len", history_len), ("n_bins", n_bins)):
        if not (isinstance(value, (int, np.integer)) and value > 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(n_candidates, (int, np.integer)) and 2 <= n_candidates <= split.n_items):
        raise ValueError(f"n_candidates must be an integer in [2, {split.n_items}], got {n_candidates!r}")
    targets = split.targets(stage)
    sequences = split.input(stage).sequences()
    has_target = np.diff(targets.indptr) == 1
    has_history = np.array([len(s) > 0 for s in sequences])
    eligible = np.flatnonzero(has_target & has_history)
    if n_users > len(eligible):
        raise ValueError(f"n_users={n_users} but only {len(eligible)} users have a {stage} target and a history; "
                         f"ask for at most {len(eligible)}")
    rng = np.random.default_rng([seed, 0 if stage == "valid" else 1])
    users = np.sort(rng.choice(eligible, n_users, replace=False))
    target = targets.indices[targets.indptr[users]]  # one held-out item per eligible user
    interacted = split.dataset.csr()[users]  # (U, n_items) sparse: every item each user ever rated
    n_neg = n_candidates - 1
    if (split.n_items - np.diff(interacted.indptr)).min() < n_neg:
        raise ValueError(f"some user has fewer than {n_neg} items left to sample as negatives")
    provenance = {"kind": candidates, "stage": stage, "n_users": int(n_users), "n_candidates": int(n_candidates),
                  "history_len": int(history_len), "seed": int(seed)}
    first_scores = None
    if candidates == "uniform":
        # Negatives: uniform among items the user never interacted with (top of uniform noise).
        # (The dense (U, n_items) noise keeps the draws of the recorded benchmarks.)
        noise = rng.random((n_users, split.n_items))
        noise[interacted.nonzero()] = -1.0
        negatives = np.argpartition(-noise, n_neg - 1, axis=1)[:, :n_neg]
        candidates_ = rng.permuted(np.concatenate([target[:, None], negatives], 1), axis=1)
    elif candidates == "popularity":
        draw = np.random.default_rng([seed, 0 if stage == "valid" else 1, 1])
        counts = split.train.item_popularity()
        order = np.lexsort((draw.random(split.n_items), counts))  # least popular first, ties at random
        rank = np.empty(split.n_items, dtype=np.int64)
        rank[order] = np.arange(split.n_items)
        bin_of = rank * n_bins // split.n_items
        negatives, filled = np.empty((n_users, n_neg), dtype=np.int64), 0
        for row, (t, seen) in enumerate(zip(target, np.split(interacted.indices, interacted.indptr[1:-1]))):
            free = np.ones(split.n_items, dtype=bool)
            free[seen] = False
            free[t] = False
            pool = np.flatnonzero(free & (bin_of == bin_of[t]))
            if len(pool) >= n_neg:
                negatives[row] = draw.choice(pool, n_neg, replace=False)
            else:  # a heavy user has seen most of the bin: the nearest unseen items by popularity rank fill it
                filled += 1
                rest = np.flatnonzero(free & (bin_of != bin_of[t]))
                nearest = rest[np.argsort(np.abs(rank[rest] - rank[t]), kind="stable")[: n_neg - len(pool)]]
                negatives[row] = np.concatenate([pool, nearest])
        candidates_ = draw.permuted(np.concatenate([target[:, None], negatives], 1), axis=1)
        provenance.update(popularity="train interactions per item", n_bins=int(n_bins), users_filled_outside_bin=filled,
                          uses_target="the target's popularity bin chooses the negatives")
    else:
        from genrec_lib.models.base import get_model

        if isinstance(first_stage, str):
            first_stage = get_model(first_stage).fit(split)
        full = _masked_scores_of(first_stage, split, stage, users)  # (U, n_items), seen-in-input at -inf
        blocked = full.clone()
        rows, cols = interacted.nonzero()
        blocked[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")
        blocked[torch.arange(n_users), torch.from_numpy(target)] = float("-inf")
        negatives = topk_random_ties(blocked, n_neg, seed=seed, users=torch.from_numpy(users)).numpy()
        if (negatives == target[:, None]).any() or not torch.isfinite(blocked.gather(1, torch.from_numpy(negatives))).all():
            raise ValueError("the first stage left fewer than 19 rankable unseen items for some user")
        draw = np.random.default_rng([seed, 0 if stage == "valid" else 1, 2])
        candidates_ = draw.permuted(np.concatenate([target[:, None], negatives], 1), axis=1)
        first_scores = full.gather(1, torch.from_numpy(candidates_.astype(np.int64))).numpy().astype(np.float32)
        provenance.update(first_stage=getattr(first_stage, "name", type(first_stage).__name__),
                          first_stage_settings=_settings(first_stage),
                          first_stage_trained_on="train (early stopping on valid, as its fit does)",
                          uses_target="no: the target is only added to the first stage's list")
    history = [sequences[u][-history_len:] for u in users]
    return LLMRankTask(split, stage, users, candidates_.astype(np.int64), target.astype(np.int64), history, seed,
                       candidates, provenance, first_scores)


def _settings(model) -> dict:
    """The model's scalar constructor settings (what its ``__init__`` stored), JSON-able."""
    import inspect

    out = {}
    for name in inspect.signature(type(model).__init__).parameters:
        value = getattr(model, name, None)
        if isinstance(value, (bool, int, float, str)) and name != "self":
            out[name] = value
    return out


@torch.no_grad()
def _masked_scores_of(model, split: Split, stage: str, users: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """A recommender's scores of every item for ``users`` as the evaluator sees them (seen items ``-inf``)."""
    was_training = model.training
    model.eval()
    chunks = [masked_scores(model, batch).float().cpu()
              for _, batch in user_batches(split, stage, users, batch_size, model.max_seq_len, model.device)]
    model.train(was_training)
    return torch.cat(chunks)


@torch.no_grad()
def candidate_scores(model, task: LLMRankTask, batch_size: int = 256) -> torch.Tensor:
    """Scores of each user's candidates, (U, C), higher is better.

    A model with ``score_candidates(task)`` scores the candidates itself (LLM rankers);
    any other recommender scores all items (``score``, through the evaluator's
    :func:`~genrec_lib.evaluation.ranking.masked_scores`) and the candidate columns are kept.
    """
    if hasattr(model, "score_candidates"):
        scores = torch.as_tensor(model.score_candidates(task)).float().cpu()
    else:
        full = _masked_scores_of(model, task.split, task.stage, task.users, batch_size)
        scores = full.gather(1, torch.from_numpy(task.candidates))
    if scores.shape != task.candidates.shape:
        raise ValueError(f"{getattr(model, 'name', model)!r} returned scores of shape {tuple(scores.shape)}; "
                         f"expected {task.candidates.shape} (users x candidates)")
    if torch.isnan(scores).any():
        raise ValueError(f"{getattr(model, 'name', model)!r} returned NaN candidate scores")
    return scores


def candidate_metrics(scores, task: LLMRankTask, seed: int | None = None) -> EvalResult:
    """Rank each user's candidates by ``scores`` (U, C) with random tie-breaking; per-user metrics.

    ``-inf`` marks a candidate a model could not rank (an unparsed answer): it comes after
    every scored candidate, in random order.
    """
    start = time.perf_counter()
    scores = torch.as_tensor(np.asarray(scores, dtype=np.float32) if not torch.is_tensor(scores) else scores).float()
    if scores.shape != task.candidates.shape:
        raise ValueError(f"scores have shape {tuple(scores.shape)}; expected {task.candidates.shape} (users x candidates)")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; mark a candidate a model cannot rank with -inf instead")
    # Infinite scores become the extreme finite ones, so that ties among them are shuffled too.
    scores = scores.clamp(-3e38, 3e38)
    C = task.n_candidates
    order = topk_random_ties(scores, C, seed=task.seed if seed is None else seed, users=torch.from_numpy(task.users))
    hits = (order == torch.from_numpy(task.target_column)[:, None]).float()  # (U, C)
    ks = sorted({1, 5, 10, C} & set(range(1, C + 1)))
    raw = compute_metrics(hits, torch.ones(len(hits), dtype=torch.long), ks=ks, metrics=("hit", "ndcg", "mrr"))
    per_user = {name: raw[name].numpy() for name in raw}
    per_user["mrr"] = raw[f"mrr@{C}"].numpy()
    per_user["rank"] = hits.argmax(1).numpy() + 1
    return EvalResult(metrics={k: float(v.mean()) for k, v in per_user.items()}, per_user=per_user,
                      users=task.users, seconds=time.perf_counter() - start)


def evaluate_llmrank(model, task: LLMRankTask, seed: int | None = None) -> EvalResult:
    """Score ``task``'s candidates with ``model`` and evaluate them (see :func:`candidate_metrics`)."""
    start = time.perf_counter()
    result = candidate_metrics(candidate_scores(model, task), task, seed)
    result.seconds = time.perf_counter() - start
    return result


def intervals(result: EvalResult, metrics=LLMRANK_METRICS, n_boot: int = 2000, seed: int = 0) -> dict:
    """``{metric: (mean, low, high)}``: bootstrap 95% intervals over the evaluated users."""
    return {m: bootstrap_ci(result.per_user[m], n_boot=n_boot, seed=seed) for m in metrics}


def random_expectation(n_candidates: int = 20, k: int = 10) -> dict:
    """Expected metrics of a uniformly random ranking of ``n_candidates`` with one relevant item."""
    ranks = np.arange(1, n_candidates + 1)
    gains = 1 / np.log2(ranks + 1)
    return {
        f"ndcg@{k}": float(gains[:k].sum() / n_candidates),
        "hit@1": 1 / n_candidates,
        "hit@5": min(5, n_candidates) / n_candidates,
        "hit@10": min(10, n_candidates) / n_candidates,
        "mrr": float((1 / ranks).mean()),
    }
