"""Maximal marginal relevance: a diversity-aware re-ranker (Carbonell and Goldstein, SIGIR 1998).

https://doi.org/10.1145/290941.291025

Greedy top-k puts the k best-scored items in a list, however alike they are. MMR builds
the list one item at a time, trading relevance against similarity to what is already in
it:

    next = argmax_{i not in S} [ lambda * rel(i) - (1 - lambda) * max_{j in S} sim(i, j) ].

``lambda = 1`` is greedy top-k; smaller values buy diversity with relevance.

Deviations from the paper: MMR was written for documents and queries; here ``rel`` is a
recommender's score, min-max scaled to [0, 1] over each user's ``n_candidates`` best
unseen items (the only items MMR considers), so that ``lambda`` means the same for every
user and every model. It is a function over score matrices, not a registered model: it
re-ranks any model's output.
"""

from __future__ import annotations

import torch


def mmr_rerank(scores: torch.Tensor, S: torch.Tensor, k: int, lam: float, n_candidates: int = 100,
               seed: int = 0, users: torch.Tensor | None = None) -> torch.Tensor:
    """Re-rank ``scores`` (B, I) (``-inf`` = not allowed) into lists (B, k) with MMR.

    Args:
        S: item-item similarity (I, I), larger = more alike.
        lam: weight of relevance in [0, 1].
        n_candidates: MMR chooses among each user's best ``n_candidates`` items (>= k).
        seed, users: key the random tie-breaking of the candidate pool (as the evaluator's).
    """
    from genrec_lib.evaluation.ranking import topk_random_ties  # here: evaluation imports the models package

    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    if not 0 < k <= n_candidates <= scores.shape[1]:
        raise ValueError(f"need 0 < k ({k}) <= n_candidates ({n_candidates}) <= number of items ({scores.shape[1]})")
    cand = topk_random_ties(scores, n_candidates, seed=seed, users=users)  # (B, C)
    rel = torch.gather(scores, 1, cand)
    finite = torch.isfinite(rel)
    lo = rel.masked_fill(~finite, float("inf")).amin(1, keepdim=True)
    hi = rel.masked_fill(~finite, float("-inf")).amax(1, keepdim=True)
    rel = ((rel - lo) / (hi - lo).clamp(min=1e-12)).masked_fill(~finite, 0.0)  # (B, C) in [0, 1]
    sim = S[cand[:, :, None], cand[:, None, :]]  # (B, C, C)
    B, C = cand.shape
    rows = torch.arange(B, device=scores.device)
    chosen = torch.zeros(B, C, dtype=torch.bool, device=scores.device)
    max_sim = torch.zeros(B, C, device=scores.device)
    picks = []
    for step in range(k):
        gain = lam * rel - (1 - lam) * max_sim
        # Items the model cannot rank (-inf) come only after every rankable one.
        gain = gain.masked_fill(~finite, -1e30).masked_fill(chosen, float("-inf"))
        j = gain.argmax(1)  # (B,) position in the candidate pool
        picks.append(cand[rows, j])
        chosen[rows, j] = True
        max_sim = torch.maximum(max_sim, sim[rows, j])
    return torch.stack(picks, 1)
