"""A reference evaluator in plain numpy that shares no code with ``genrec_lib.evaluation``.

It exists to check the library's evaluator (``tests/test_reference_evaluation.py``) and to
score every library's models with one and the same procedure (``side_by_side.py``).

Ties are handled exactly rather than by drawing a random order: when a held-out item's
score equals that of ``g - 1`` other candidates and ``a`` candidates score strictly higher,
a uniformly random tie-break puts it at a rank uniform on ``a + 1 .. a + g``. Metrics that
are sums over held-out items (NDCG, Recall, Precision; HR and MRR when a user has one
held-out item) then have an exact expectation, which is what this module returns, with a
bound on how far one random draw can stray from it (half the range of each user's value).
A model without ties gets its exact metric and a bound of zero.

Inputs are dense numpy arrays over the same user and item indices:

- ``scores`` (U, I) float: higher is better; ``-inf`` means "cannot rank" (after every
  finite score, tied among themselves);
- ``seen`` (U, I) bool: items removed from the ranking (all ``False`` for the unmasked
  convention);
- ``targets`` (U, I) bool: the held-out items.
"""

from __future__ import annotations

import numpy as np


def _discount(rank: np.ndarray) -> np.ndarray:
    return 1.0 / np.log2(rank + 1.0)


def expected_metrics(scores: np.ndarray, seen: np.ndarray, targets: np.ndarray, k: int = 10) -> dict:
    """Per-user expected metrics at ``k`` under uniformly random tie-breaking.

    Returns:
        ``{"ndcg@k": (mean, per_user, bound), ...}`` for ndcg, recall, precision, and hit
        and mrr (NaN for users with several held-out items whose ranks are tied, where
        those two are not sums over items). ``bound`` bounds |one draw's mean - mean| by
        four standard deviations (Popoviciu's inequality per user, users independent).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != seen.shape or scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape}, seen {seen.shape} and targets {targets.shape} must have one shape")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    users = np.flatnonzero(targets.any(1))
    out = {name: np.full(len(users), np.nan) for name in ("ndcg", "recall", "precision", "hit", "mrr")}
    spread = {name: np.zeros(len(users)) for name in out}
    positions = np.arange(1, k + 1)
    idcg_table = np.cumsum(_discount(positions))
    for row, u in enumerate(users):
        candidate = ~seen[u]
        rel = np.flatnonzero(targets[u] & candidate)
        n_rel = int(targets[u].sum())
        ranked = np.sort(scores[u, candidate])  # ascending; -inf first
        s = scores[u, rel]
        above = len(ranked) - np.searchsorted(ranked, s, side="right")  # a: strictly higher
        ties = np.searchsorted(ranked, s, side="right") - np.searchsorted(ranked, s, side="left")  # g
        # For each held-out item: the mean and range over its uniform rank of
        # 1/log2(r+1)*[r<=k], [r<=k] and 1/r*[r<=k].
        gains = {"dcg": [], "in": [], "rr": []}
        for a, g in zip(above, ties):
            r = np.arange(a + 1, a + g + 1, dtype=np.float64)
            inside = r <= k
            for name, values in (("dcg", _discount(r) * inside), ("in", inside * 1.0), ("rr", inside / r)):
                gains[name].append((values.mean(), values.max() - values.min()))
        mean = {n: np.array([m for m, _ in v]) for n, v in gains.items()}
        width = {n: np.array([w for _, w in v]) for n, v in gains.items()}
        idcg = idcg_table[min(n_rel, k) - 1]
        out["ndcg"][row], spread["ndcg"][row] = mean["dcg"].sum() / idcg, width["dcg"].sum() / idcg
        out["recall"][row], spread["recall"][row] = mean["in"].sum() / n_rel, width["in"].sum() / n_rel
        out["precision"][row], spread["precision"][row] = mean["in"].sum() / k, width["in"].sum() / k
        if n_rel == 1 or (ties == 1).all():
            if n_rel == 1:
                out["hit"][row], spread["hit"][row] = (mean["in"].sum(), width["in"].sum()) if len(rel) else (0.0, 0.0)
                out["mrr"][row], spread["mrr"][row] = (mean["rr"].sum(), width["rr"].sum()) if len(rel) else (0.0, 0.0)
            else:  # no ties among held-out items: the first one found decides
                ranks = above + 1
                best = ranks.min() if len(ranks) else np.inf
                out["hit"][row] = float(best <= k)
                out["mrr"][row] = 1.0 / best if best <= k else 0.0
    result = {}
    for name, values in out.items():
        sd = spread[name] / 2.0  # Popoviciu: sd <= range / 2
        result[f"{name}@{k}"] = (float(np.mean(values)), values,
                                 float(4.0 * np.sqrt(np.nansum(sd**2)) / len(values) + 1e-9))
    return result


def read_tsv_split(folder) -> dict:
    """The exported ``train/valid/test.tsv`` of ``genrec data export``, as pandas frames."""
    import pandas as pd
    from pathlib import Path

    return {part: pd.read_csv(Path(folder) / f"{part}.tsv", sep="\t") for part in ("train", "valid", "test")}


def dense(frame, user_index: dict, item_index: dict, shape) -> np.ndarray:
    """A (U, I) bool matrix with True at each row's (user, item)."""
    matrix = np.zeros(shape, dtype=bool)
    matrix[frame["user_id"].map(user_index).to_numpy(), frame["item_id"].map(item_index).to_numpy()] = True
    return matrix


def strict_input(known, held_out):
    """The rows of ``known`` strictly earlier than the user's earliest held-out timestamp
    (the temporal protocol's input rule); users without held-out rows keep everything."""
    cutoff = held_out.groupby("user_id")["timestamp"].min()
    limit = known["user_id"].map(cutoff)
    return known[limit.isna() | (known["timestamp"] < limit)]
