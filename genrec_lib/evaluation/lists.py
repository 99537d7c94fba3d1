"""Metrics of whole lists (slates and bundles), as pure vectorised torch functions (chapter 09).

A ranking metric looks at each position alone; these look at the list as a set:

- accuracy against held-out items: :func:`list_accuracy` (hit rate and NDCG of a slate),
  :func:`set_overlap` (precision, recall and F1 of a bundle);
- what the items have in common: :func:`pairwise_mean` of any item-item similarity, from
  which intra-list diversity ``1 - mean similarity`` (text embeddings, genre Jaccard),
  :func:`redundancy` (share of pairs with identical genres) and :func:`coherence` (share of
  pairs ever consumed together in training);
- :func:`genre_coverage`: the share of all genres that the list touches.

Lists are int64 tensors (B, k) of item indices; ``-1`` marks an empty slot (a bundle
shorter than the widest one), which every function ignores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from genrec_lib.evaluation.metrics import compute_metrics
from genrec_lib.evaluation.metrics import genre_matrix as _genre_matrix


def _valid(lists: torch.Tensor) -> torch.Tensor:
    if lists.dim() != 2:
        raise ValueError(f"lists must be a (B, k) tensor of item indices, got shape {tuple(lists.shape)}")
    return lists >= 0


def genre_matrix(items: pd.DataFrame) -> tuple[torch.Tensor, list[str]]:
    """Multi-hot genres (I, G) float32 from an item table with a ``genres`` column, and the genre names
    (:func:`genrec_lib.evaluation.metrics.genre_matrix` on the table's column)."""
    if "genres" not in items:
        raise ValueError("the item table has no 'genres' column")
    G, names = _genre_matrix(list(items["genres"]))
    return G.float(), names


def jaccard(G: torch.Tensor) -> torch.Tensor:
    """Item-item Jaccard similarity of multi-hot rows ``G`` (I, G) -> (I, I)."""
    inter = G @ G.T
    sizes = G.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def pairwise_mean(lists: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """Mean of ``S[i, j]`` over the unordered pairs of each list: (B,) (NaN for lists under two items)."""
    valid = _valid(lists)
    idx = lists.clamp(min=0)
    sim = S[idx[:, :, None], idx[:, None, :]]  # (B, k, k)
    k = lists.shape[1]
    pair = valid[:, :, None] & valid[:, None, :] & torch.ones(k, k, dtype=torch.bool, device=lists.device).triu(1)
    n = pair.sum((1, 2))
    return torch.where(n > 0, (sim * pair).sum((1, 2)) / n.clamp(min=1), torch.full_like(n, float("nan"), dtype=sim.dtype))


def redundancy(lists: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Share of item pairs of each list with identical genre sets: (B,)."""
    same = (G[:, None, :] == G[None, :, :]).all(-1).float() if len(G) <= 4000 else None
    if same is None:
        raise ValueError("redundancy builds an (I, I) matrix; use at most 4,000 items")
    return pairwise_mean(lists, same)


def genre_coverage(lists: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Share of all genres touched by each list: (B,)."""
    valid = _valid(lists)
    touched = (G[lists.clamp(min=0)] * valid[..., None]).amax(1)  # (B, G)
    return touched.mean(1)


def list_accuracy(lists: torch.Tensor, targets: torch.Tensor, k: int | None = None) -> dict[str, torch.Tensor]:
    """Hit rate and NDCG of ranked lists (B, k) against held-out items ``targets`` (B, I): per-list values."""
    k = lists.shape[1] if k is None else k
    valid = _valid(lists)
    hits = torch.gather(targets, 1, lists.clamp(min=0)) * valid
    out = compute_metrics(hits.float(), targets.sum(1).long(), ks=(k,), metrics=("hit", "ndcg", "recall"))
    return {name.split("@")[0]: value for name, value in out.items()}


def set_overlap(lists: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Precision, recall and F1 of each list, read as a set, against ``targets`` (B, I): per-list values."""
    valid = _valid(lists)
    hits = (torch.gather(targets, 1, lists.clamp(min=0)) * valid).sum(1)
    precision = hits / valid.sum(1).clamp(min=1)
    recall = hits / targets.sum(1).clamp(min=1)
    f1 = torch.where(hits > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), torch.zeros_like(hits))
    return {"precision": precision, "recall": recall, "f1": f1}


def co_occurrence(groups: list[np.ndarray], n_items: int) -> torch.Tensor:
    """(I, I) 0/1 matrix: 1 where two items appear together in at least one of ``groups``."""
    rows = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    cols = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    A = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(groups), n_items))
    C = (A.T @ A).toarray() > 0
    np.fill_diagonal(C, False)
    return torch.from_numpy(C).float()


def coherence(lists: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Share of item pairs of each list that co-occur in ``C`` (from :func:`co_occurrence`): (B,)."""
    return pairwise_mean(lists, C)
