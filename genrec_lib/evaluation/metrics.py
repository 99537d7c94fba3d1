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


# --- beyond accuracy ----------------------------------------------------------------------
#
# These take ``recs``, a (U, K) integer tensor of recommended item indices (best first, as
# :func:`genrec_lib.evaluation.recommend` returns them), and describe the lists themselves
# rather than whether they hit held-out items. Catalogue-level metrics return one number;
# per-user metrics return a (U,) tensor that can be averaged or bootstrapped over users.

BEYOND_ACCURACY = ("coverage", "gini", "arp", "novelty", "ild_genre", "calibration_kl")


def _as_recs(recs, n_items: int | None = None) -> torch.Tensor:
    recs = torch.as_tensor(recs)
    if recs.dim() != 2 or recs.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"recs must be a (users, K) integer tensor of item indices, got {tuple(recs.shape)} {recs.dtype}")
    if recs.numel() and (recs.min() < 0 or (n_items is not None and recs.max() >= n_items)):
        raise ValueError(f"recs holds item indices outside [0, {n_items}); pass dense item indices")
    return recs.long()


def exposure(recs, n_items: int) -> torch.Tensor:
    """How many lists each item appears in: (n_items,) counts."""
    recs = _as_recs(recs, n_items)
    return torch.bincount(recs.reshape(-1), minlength=n_items).double()


def catalogue_coverage(recs, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list (1 = every item is shown)."""
    return float((exposure(recs, n_items) > 0).double().mean())


def gini_index(values) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, -> 1 when one holds everything.

    ``G = sum_i (2 i - n - 1) x_(i) / (n sum_i x_i)`` with the values sorted increasingly
    (``i = 1..n``).
    """
    x = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if x.numel() == 0 or (x < 0).any():
        raise ValueError("gini_index needs a non-empty set of non-negative values")
    if x.sum() == 0:
        return 0.0
    x, _ = torch.sort(x)
    n = x.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


def gini_exposure(recs, n_items: int) -> float:
    """Gini of the exposure every catalogue item receives (items never shown count as 0)."""
    return gini_index(exposure(recs, n_items))


def average_popularity(recs, popularity) -> torch.Tensor:
    """ARP: mean training popularity (interaction count) of each user's list, (U,)."""
    popularity = torch.as_tensor(popularity, dtype=torch.float64)
    return popularity[_as_recs(recs, len(popularity))].mean(1)


def novelty(recs, popularity, n_users: int) -> torch.Tensor:
    """Mean self-information ``-log2 p(i)`` of each list, ``p(i)`` = share of users who saw ``i``: (U,).

    Items nobody saw get the information of one observation, so the value stays finite.
    """
    popularity = torch.as_tensor(popularity, dtype=torch.float64)
    p = popularity.clamp(min=1) / n_users
    return (-torch.log2(p))[_as_recs(recs, len(popularity))].mean(1)


def intra_list_diversity(recs, features) -> torch.Tensor:
    """Mean pairwise cosine distance ``1 - cos(f_i, f_j)`` over the pairs of each list, (U,).

    ``features`` is (n_items, d): genre indicators for diversity over genres, text
    embeddings for diversity over meaning. Items with an all-zero feature row count as
    orthogonal to every other item.
    """
    features = torch.as_tensor(features, dtype=torch.float64)
    recs = _as_recs(recs, features.shape[0])
    k = recs.shape[1]
    if k < 2:
        raise ValueError("intra-list diversity needs lists of at least two items")
    f = torch.nn.functional.normalize(features, dim=1)[recs]  # (U, K, d)
    cos = f @ f.transpose(1, 2)  # (U, K, K)
    off_diagonal = cos.sum((1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(1)
    return 1 - off_diagonal / (k * (k - 1))


def genre_matrix(genres: list, vocabulary: list[str] | None = None) -> tuple[torch.Tensor, list[str]]:
    """Item genre lists -> a (n_items, n_genres) 0/1 matrix and its column names."""
    vocabulary = sorted({g for gs in genres for g in (gs or [])}) if vocabulary is None else list(vocabulary)
    column = {g: j for j, g in enumerate(vocabulary)}
    matrix = torch.zeros(len(genres), len(vocabulary), dtype=torch.float64)
    for i, gs in enumerate(genres):
        for g in gs or []:
            if g in column:
                matrix[i, column[g]] = 1.0
    return matrix, vocabulary


def calibration_kl(recs, history, item_genres, alpha: float = 0.01) -> torch.Tensor:
    """Miscalibration of each list: ``KL(p_u || q~_u)`` over genres, (U,).

    ``p_u(g)`` is the user's genre distribution over their history and ``q_u(g)`` that of
    the list, each item spreading weight 1 evenly over its genres (Steck 2018);
    ``q~ = (1 - alpha) q + alpha p`` keeps the divergence finite. 0 = perfectly calibrated.

    Args:
        history: (U, n_items) 0/1 matrix (dense tensor or scipy sparse) of what each user saw.
        item_genres: (n_items, n_genres) 0/1 matrix, e.g. from :func:`genre_matrix`.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    G = torch.as_tensor(item_genres, dtype=torch.float64)
    G = G / G.sum(1, keepdim=True).clamp(min=1)  # each item spreads weight 1 over its genres
    recs = _as_recs(recs, G.shape[0])
    if hasattr(history, "toarray"):
        history = history.toarray()
    H = torch.as_tensor(history, dtype=torch.float64)
    if H.shape[0] != recs.shape[0]:
        raise ValueError(f"history has {H.shape[0]} users but recs has {recs.shape[0]}")
    p = H @ G
    p = p / p.sum(1, keepdim=True).clamp(min=1e-12)
    q = G[recs].sum(1)
    q = q / q.sum(1, keepdim=True).clamp(min=1e-12)
    q_tilde = (1 - alpha) * q + alpha * p
    terms = torch.where(p > 0, p * torch.log(p / q_tilde.clamp(min=1e-300)), torch.zeros_like(p))
    return terms.sum(1)


def long_tail_share(recs, popularity, head_share: float = 0.2) -> torch.Tensor:
    """Share of each list taken by long-tail items, (U,).

    The head is the most popular items that together hold ``head_share`` of the catalogue
    (by count of items, ties broken by index); the long tail is every other item.
    """
    popularity = torch.as_tensor(popularity, dtype=torch.float64)
    if not 0 < head_share < 1:
        raise ValueError(f"head_share must be in (0, 1), got {head_share!r}")
    n_head = max(1, int(round(head_share * len(popularity))))
    head = torch.zeros(len(popularity), dtype=torch.bool)
    head[torch.argsort(popularity, descending=True, stable=True)[:n_head]] = True
    return (~head[_as_recs(recs, len(popularity))]).double().mean(1)


def beyond_accuracy(recs, n_items: int, popularity, n_users: int, history=None, item_genres=None,
                    text_embeddings=None) -> dict[str, float]:
    """All beyond-accuracy summaries of one set of lists (means over users where per-user)."""
    out = {
        "coverage": catalogue_coverage(recs, n_items),
        "gini": gini_exposure(recs, n_items),
        "arp": float(average_popularity(recs, popularity).mean()),
        "novelty": float(novelty(recs, popularity, n_users).mean()),
        "long_tail_share": float(long_tail_share(recs, popularity).mean()),
    }
    if item_genres is not None:
        out["ild_genre"] = float(intra_list_diversity(recs, item_genres).mean())
        if history is not None:
            out["calibration_kl"] = float(calibration_kl(recs, history, item_genres).mean())
    if text_embeddings is not None:
        out["ild_text"] = float(intra_list_diversity(recs, text_embeddings).mean())
    return out
