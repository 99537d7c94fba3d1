"""Full-catalogue (and sampled-negative) ranking evaluation in user batches.

For each batch of users the model scores every item; items the user is known to have
seen (train for validation, train + valid for test) are set to ``-inf``; ``torch.topk``
takes the top K; the hits feed the pure metric functions in
:mod:`genrec_lib.evaluation.metrics`.

Sampled evaluation (``n_negatives=100``) keeps only the held-out items plus that many
random unseen items per user and ranks among those: it is cheaper but inflates scores
and can reorder models, which chapter 02 measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from genrec_lib.data import Split
from genrec_lib.evaluation.metrics import METRICS, compute_metrics
from genrec_lib.models.base import Recommender, UserBatch


@dataclass
class EvalResult:
    """Mean metrics, per-user values (for significance tests) and the evaluated users."""

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray] = field(repr=False)
    users: np.ndarray = field(repr=False)
    seconds: float = 0.0

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]


def _dense_rows(matrix: sp.csr_matrix, rows: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(matrix[rows].toarray()).to(device=device, dtype=torch.float32)


def user_batches(split: Split, stage: str, users: np.ndarray, batch_size: int, max_seq_len: int | None, device):
    """Yield ``(rows, UserBatch)`` for ``users`` in batches, on ``device``."""
    history = split.history(stage)
    sequences = split.sequences(stage, max_seq_len) if max_seq_len else None
    for start in range(0, len(users), batch_size):
        rows = users[start : start + batch_size]
        yield rows, UserBatch(
            users=torch.from_numpy(rows).to(device),
            history=_dense_rows(history, rows, device),
            sequences=None if sequences is None else torch.from_numpy(sequences[rows]).to(device),
        )


def masked_scores(model: Recommender, batch: UserBatch) -> torch.Tensor:
    """The model's scores with every item the user has seen set to ``-inf``: (B, n_items)."""
    return model.score(batch).float().masked_fill(batch.history > 0, float("-inf"))


@torch.no_grad()
def recommend(model: Recommender, split: Split, stage: str = "test", k: int = 10,
              users: np.ndarray | None = None, batch_size: int = 1024) -> np.ndarray:
    """Top-``k`` unseen items for ``users`` (default: all users), as the evaluator ranks them.

    Returns:
        int64 array (len(users), k) of dense item indices, best first.
    """
    users = np.arange(split.n_users) if users is None else np.asarray(users)
    was_training = model.training
    model.eval()
    out = [torch.topk(masked_scores(model, batch), k, dim=1).indices.cpu()
           for _, batch in user_batches(split, stage, users, batch_size, model.max_seq_len, model.device)]
    model.train(was_training)
    return torch.cat(out).numpy()


@torch.no_grad()
def evaluate(
    model: Recommender,
    split: Split,
    stage: str = "test",
    ks=(5, 10, 20),
    metrics=METRICS,
    batch_size: int = 1024,
    n_negatives: int | None = None,
    seed: int = 2020,
    users: np.ndarray | None = None,
) -> EvalResult:
    """Rank all items (or sampled candidates) for every user with held-out items in ``stage``.

    Args:
        model: a fitted :class:`Recommender`.
        stage: ``"valid"`` or ``"test"``.
        ks: cut-offs; metrics are named ``"ndcg@10"`` and so on.
        n_negatives: ``None`` for full ranking; else rank each user's held-out items
            among this many random items the user has not seen (sampled evaluation).
        users: evaluate only these users (default: all with at least one held-out item).
    """
    import time

    start = time.perf_counter()
    targets = split.targets(stage)
    if users is None:
        users = np.flatnonzero(np.diff(targets.indptr) > 0)
    device = model.device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    k_max = max(ks)
    per_user: dict[str, list[torch.Tensor]] = {}
    for rows, batch in user_batches(split, stage, users, batch_size, model.max_seq_len, device):
        scores = masked_scores(model, batch)
        relevant = _dense_rows(targets, rows, device)
        seen = batch.history > 0
        if n_negatives is not None:
            scores = _keep_sampled_candidates(scores, seen, relevant, n_negatives, generator)
        top = torch.topk(scores, k_max, dim=1).indices
        hits = torch.gather(relevant, 1, top)
        for key, value in compute_metrics(hits, relevant.sum(1).long(), ks, metrics).items():
            per_user.setdefault(key, []).append(value.cpu())
    model.train(was_training)
    arrays = {k: torch.cat(v).numpy() for k, v in per_user.items()}
    return EvalResult(
        metrics={k: float(v.mean()) for k, v in arrays.items()},
        per_user=arrays,
        users=users,
        seconds=time.perf_counter() - start,
    )


def _keep_sampled_candidates(scores, seen, relevant, n_negatives, generator):
    """Keep held-out items plus ``n_negatives`` uniformly sampled unseen items per user."""
    # Uniform noise, with seen and held-out items excluded, then top-k of the noise:
    # a vectorised sample without replacement.
    noise = torch.rand(scores.shape, generator=generator, device=scores.device)
    noise = noise.masked_fill(seen | (relevant > 0), -1.0)
    negatives = torch.topk(noise, n_negatives, dim=1).indices
    keep = relevant > 0
    keep.scatter_(1, negatives, True)
    return scores.masked_fill(~keep, float("-inf"))
