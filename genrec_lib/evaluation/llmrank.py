"""The ``llmrank`` protocol: rank 20 candidates per user, as LLM rankers are evaluated.

After LLMRank (Hou et al., "Large Language Models are Zero-Shot Rankers for Recommender
Systems", ECIR 2024, https://arxiv.org/abs/2305.08845). A language model cannot score a
whole catalogue per user at a reasonable cost, so every model, LLM or not, ranks the same
small candidate set:

- the split is temporal leave-one-out (``loo``, with its seeded tie-breaking); the target
  of stage ``"test"`` is each user's last interaction, of ``"valid"`` the one before;
- ``n_users`` (200) test users are drawn with the seed;
- candidates: the target plus ``n_candidates - 1`` (19) items drawn uniformly from the items
  the user never interacted with (in the whole dataset, so that no negative is a future
  positive), shuffled so that the target's position carries no information;
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
    """

    split: Split
    stage: str
    users: np.ndarray
    candidates: np.ndarray
    targets: np.ndarray
    history: list = field(repr=False)
    seed: int = 2020

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
        return LLMRankTask(self.split, self.stage, self.users[rows], self.candidates[rows], self.targets[rows],
                           [self.history[r] for r in rows], self.seed)


def make_llmrank_task(split: Split, stage: str = "test", n_users: int = 200, n_candidates: int = 20,
                      history_len: int = 20, seed: int = 2020) -> LLMRankTask:
    """Draw the ``llmrank`` task of ``stage`` from a ``loo`` split (see the module docstring)."""
    if split.protocol != "loo":
        raise ValueError(f"llmrank is defined on a temporal leave-one-out split; got protocol {split.protocol!r}. "
                         "Build it with load_split(dataset, 'loo', seed)")
    if stage not in ("valid", "test"):
        raise ValueError(f"unknown stage {stage!r}; choose one of: valid, test")
    for name, value in (("n_users", n_users), ("history_len", history_len)):
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
    # Negatives: uniform among items the user never interacted with (top of uniform noise).
    interacted = split.dataset.csr()[users].toarray() > 0  # (U, n_items)
    noise = rng.random(interacted.shape)
    noise[interacted] = -1.0
    if (~interacted).sum(1).min() < n_candidates - 1:
        raise ValueError(f"some user has fewer than {n_candidates - 1} items left to sample as negatives")
    negatives = np.argpartition(-noise, n_candidates - 2, axis=1)[:, : n_candidates - 1]
    candidates = rng.permuted(np.concatenate([target[:, None], negatives], 1), axis=1)
    history = [sequences[u][-history_len:] for u in users]
    return LLMRankTask(split, stage, users, candidates.astype(np.int64), target.astype(np.int64), history, seed)


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
        was_training = model.training
        model.eval()
        chunks = []
        rows_seen = 0
        for rows, batch in user_batches(task.split, task.stage, task.users, batch_size, model.max_seq_len, model.device):
            columns = torch.from_numpy(task.candidates[rows_seen : rows_seen + len(rows)]).to(model.device)
            chunks.append(masked_scores(model, batch).gather(1, columns).cpu())
            rows_seen += len(rows)
        model.train(was_training)
        scores = torch.cat(chunks)
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
