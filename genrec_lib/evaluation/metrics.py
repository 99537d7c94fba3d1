"""Top-K ranking metrics as pure, vectorised torch functions.

Every metric takes ``hits``, a (B, K) 0/1 tensor saying whether the item ranked at
position ``k`` is relevant, and ``n_relevant``, a (B,) tensor with each user's number of
relevant items, and returns a per-user (B,) tensor. Definitions follow the common
full-ranking conventions (as in RecBole), so numbers are comparable:

- Recall@K = hits in top K / number of relevant items
- Precision@K = hits in top K / K
- HR@K (``hit``) = 1 if any relevant item is in the top K
- MRR@K = 1 / rank of the first relevant item in the top K (0 if none)
- NDCG@K = DCG@K / IDCG@K with binary gains and IDCG over min(n_relevant, K) items
"""

from __future__ import annotations

import torch

METRICS = ("recall", "precision", "hit", "ndcg", "mrr")


def _discounts(k: int, device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


def recall_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].sum(1).double() / n_relevant.clamp(min=1).double()


def precision_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].sum(1).double() / k


def hit_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return (hits[:, :k].sum(1) > 0).double()


def mrr_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    top = hits[:, :k].double()
    first = top.argmax(1)  # first hit position (0 when there is none; masked below)
    return torch.where(top.sum(1) > 0, 1.0 / (first.double() + 1), torch.zeros_like(first, dtype=torch.float64))


def ndcg_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    discount = _discounts(k, hits.device)
    dcg = (hits[:, :k].double() * discount[: hits[:, :k].shape[1]]).sum(1)
    ideal_len = n_relevant.clamp(max=k, min=1)
    idcg = torch.cumsum(discount, 0)[ideal_len - 1]
    return dcg / idcg


METRIC_FUNCTIONS = {
    "recall": recall_at_k,
    "precision": precision_at_k,
    "hit": hit_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
}


def compute_metrics(hits: torch.Tensor, n_relevant: torch.Tensor, ks=(10,), metrics=METRICS) -> dict[str, torch.Tensor]:
    """All ``metric@k`` per user, e.g. ``{"ndcg@10": (B,) tensor}``."""
    unknown = set(metrics) - set(METRIC_FUNCTIONS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from: {', '.join(METRICS)}")
    if hits.shape[1] < max(ks):
        raise ValueError(f"hits has {hits.shape[1]} columns but K={max(ks)} was asked for")
    return {f"{m}@{k}": METRIC_FUNCTIONS[m](hits, n_relevant, k) for m in metrics for k in ks}
