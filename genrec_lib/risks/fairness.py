"""Fairness, measured: accuracy gaps between user groups, and the exposure items receive.

*User side* (consumer fairness, Ekstrand et al. 2018): do some groups of users get worse
recommendations? :func:`group_table` gives each group's mean per-user metric with a
bootstrap interval, and :func:`group_gap` the difference between two groups with an
unpaired bootstrap interval (the groups hold different users, so no pairing).

*Item side* (provider / exposure fairness, Abdollahpouri et al. 2019): how much of the
exposure goes to long-tail items? See :func:`genrec_lib.evaluation.metrics.long_tail_share`
and :func:`exposure_table`.

*A stated attribute* (FaiRLLM: Zhang, Bao, Zhang, Wang, Feng & He, "Is ChatGPT Fair for
Recommendation? Evaluating Fairness in Large Language Model Recommendation", RecSys 2023,
https://arxiv.org/abs/2305.07609): an LLM recommender ranks a user's candidates once from a
*neutral* prompt and once from a prompt that states a sensitive attribute ("I am a woman.");
:func:`jaccard_at_k`, :func:`serp_at_k` and :func:`prag_at_k` measure how similar the
attribute's top-K list is to the neutral one, and :func:`snsr_snsv` how unequal that
similarity is across the attribute's values. :class:`StatedAttributeRanker` writes the
statement into the zero-shot ranker's prompt. Deviations from the paper: the paper asks
ChatGPT to *generate* K items from the whole catalogue for famous-artist or director
"users"; here the model scores the 20 candidates of real ML-100K users (the ``llmrank``
task) and the top-K of that ranking is the list, so every list is made of candidates.

Used by chapter 17.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from genrec_lib.data import Split
from genrec_lib.evaluation import metrics as M
from genrec_lib.evaluation.ranking import topk_random_ties
from genrec_lib.evaluation.stats import bootstrap_ci, unpaired_bootstrap_ci
from genrec_lib.models.llm.rankers import LLMRank

#: Age bands of the ML-100K user file (its users are 7 to 73 years old).
AGE_EDGES = (0, 25, 35, 45, 200)


def age_bands(ages, edges=AGE_EDGES) -> np.ndarray:
    """Ages -> band labels such as ``"<25"``, ``"25-34"``, ``"45+"``."""
    ages = np.asarray(ages, dtype=float)
    labels = [f"<{edges[1]}"] + [f"{lo}-{hi - 1}" for lo, hi in zip(edges[1:-2], edges[2:-1])] + [f"{edges[-2]}+"]
    index = np.clip(np.searchsorted(edges, ages, side="right") - 1, 0, len(labels) - 1)
    return np.array(labels, dtype=object)[index]


def user_groups(split: Split, attribute: str) -> np.ndarray:
    """One group label per user (dense index) from the user file: ``"gender"`` or ``"age"`` (bands)."""
    users = split.dataset.users
    if attribute == "age":
        return age_bands(users["age"].to_numpy())
    if attribute in users:
        return users[attribute].astype(str).to_numpy(dtype=object)
    raise ValueError(f"unknown user attribute {attribute!r}; choose 'age' or one of: {', '.join(users.columns)}")


def group_table(values, users, groups, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean of per-user ``values`` in each group, with a 95% bootstrap interval.

    Args:
        values: (U,) per-user metric, e.g. ``EvalResult.per_user["ndcg@10"]``.
        users: (U,) the users those values belong to (``EvalResult.users``).
        groups: one label per user of the whole dataset (:func:`user_groups`).
    """
    values, users = np.asarray(values, dtype=float), np.asarray(users)
    if values.shape != users.shape:
        raise ValueError(f"values and users must align, got {values.shape} and {users.shape}")
    labels = np.asarray(groups, dtype=object)[users]
    rows = []
    order = {label: i for i, label in enumerate(age_bands(np.array(AGE_EDGES[:-1])))}
    for label in sorted(set(labels), key=lambda g: (order.get(g, len(order)), g)):
        mean, low, high = bootstrap_ci(values[labels == label], n_boot=n_boot, seed=seed)
        rows.append({"group": label, "users": int((labels == label).sum()), "mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows).set_index("group")


def group_gap(values, users, groups, a: str, b: str, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of group ``a`` minus mean of group ``b``, with an unpaired bootstrap interval."""
    values, users = np.asarray(values, dtype=float), np.asarray(users)
    labels = np.asarray(groups, dtype=object)[users]
    for g in (a, b):
        if not (labels == g).any():
            raise ValueError(f"group {g!r} has no users here; groups present: {sorted(set(labels))}")
    return unpaired_bootstrap_ci(values[labels == a], values[labels == b], n_boot=n_boot, seed=seed)


def exposure_table(recs_by_model: dict, popularity, head_share: float = 0.2) -> pd.DataFrame:
    """Per model: share of exposure to long-tail items against their share of the catalogue."""
    popularity = np.asarray(popularity)
    rows = {}
    for name, recs in recs_by_model.items():
        rows[name] = {
            "long-tail share of exposure": float(M.long_tail_share(recs, popularity, head_share).mean()),
            "long-tail share of catalogue": 1 - max(1, int(round(head_share * len(popularity)))) / len(popularity),
            "coverage": M.catalogue_coverage(recs, len(popularity)),
            "gini": M.gini_exposure(recs, len(popularity)),
        }
    return pd.DataFrame(rows).T


# --- an LLM recommender told a sensitive attribute (FaiRLLM) ---------------------------------

def top_k_lists(scores, k: int, users=None, seed: int = 0) -> np.ndarray:
    """(U, C) candidate scores -> (U, k) column indices of the best ``k``, best first, random ties."""
    scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    if scores.ndim != 2 or not 1 <= k <= scores.shape[1]:
        raise ValueError(f"need (users, candidates) scores and 1 <= k <= candidates; got shape "
                         f"{tuple(scores.shape)} and k={k}")
    users = None if users is None else torch.as_tensor(np.asarray(users))
    return topk_random_ties(scores, k, seed=seed, users=users).numpy()


def _lists(sensitive, neutral) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(sensitive), np.asarray(neutral)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] == 0:
        raise ValueError(f"sensitive and neutral must be (users, K) lists of the same shape, got "
                         f"{a.shape} and {b.shape}")
    for name, x in (("sensitive", a), ("neutral", b)):
        if any(len(set(row)) < len(row) for row in x.tolist()):
            raise ValueError(f"the {name} lists repeat an item; a top-K list names K distinct items")
    return a, b


def _positions(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Position of each of ``a``'s items in ``b``'s list of the same row; K where it is absent, (U, K)."""
    same = a[:, :, None] == b[:, None, :]                                # (U, K, K)
    return np.where(same.any(2), same.argmax(2), a.shape[1])


def jaccard_at_k(sensitive, neutral) -> np.ndarray:
    """Jaccard@K = |R_a & R_m| / |R_a | R_m| of each user's two top-K lists, (U,).

    ``sensitive``, ``neutral``: (U, K) item ids, best first (order does not matter here).
    """
    a, b = _lists(sensitive, neutral)
    shared = (_positions(a, b) < a.shape[1]).sum(1)
    return shared / (2 * a.shape[1] - shared)


def serp_at_k(sensitive, neutral) -> np.ndarray:
    """SERP*@K of FaiRLLM, (U,): shared items weighted by their rank in the attribute's list.

    ``sum_{v in R_a} 1[v in R_m] (K - r_a(v) + 1) / (K (K + 1) / 2)`` with ranks from 1:
    1 when both lists hold the same items, whatever their order in the neutral list.
    """
    a, b = _lists(sensitive, neutral)
    K = a.shape[1]
    weight = K - np.arange(K)                                            # K - r + 1 for r = 1..K
    return ((_positions(a, b) < K) * weight).sum(1) / (K * (K + 1) / 2)


def prag_at_k(sensitive, neutral) -> np.ndarray:
    """PRAG*@K of FaiRLLM, (U,): the share of ordered pairs of the attribute's list kept by the neutral list.

    A pair ``(v1, v2)`` with ``v1`` above ``v2`` in the attribute's list counts when ``v1`` is
    in the neutral list and above ``v2`` there (an item absent from a list ranks below all of
    it). Divided by the ``K (K - 1) / 2`` pairs, as the authors' code does, so identical lists
    score 1 and disjoint ones 0. ``K = 1`` reduces to "same item".
    """
    a, b = _lists(sensitive, neutral)
    K = a.shape[1]
    if K == 1:
        return (a[:, 0] == b[:, 0]).astype(float)
    pos = _positions(a, b)                                               # (U, K) place in the neutral list
    i, j = np.triu_indices(K, 1)                                         # v1 = a[:, i] above v2 = a[:, j]
    kept = (pos[:, i] < K) & (pos[:, i] < pos[:, j])
    return kept.sum(1) / len(i)


#: FaiRLLM's three list similarities, by name.
SIMILARITIES = {"Jaccard": jaccard_at_k, "SERP*": serp_at_k, "PRAG*": prag_at_k}


def snsr_snsv(similarity_by_value: dict) -> tuple[float, float]:
    """FaiRLLM's unfairness of one attribute: range (SNSR) and spread (SNSV) over its values.

    Args:
        similarity_by_value: ``{value: per-user similarity of that value's list to the neutral
            one}``; each value's similarity is the mean over its users.
    Returns:
        ``(SNSR, SNSV)``: max minus min of the values' mean similarities, and their standard
        deviation (population, ``ddof=0``, as the authors' code). 0 when every value's list is
        as close to the neutral list as every other's.
    """
    if len(similarity_by_value) < 2:
        raise ValueError(f"an attribute needs at least two values to compare, got {list(similarity_by_value)}")
    means = np.array([np.mean(np.asarray(v, dtype=float)) for v in similarity_by_value.values()])
    return float(means.max() - means.min()), float(means.std())


#: The sentence that states each value of ML-100K's attributes (age in :func:`age_bands`' bands).
STATEMENTS = {
    "gender": {"F": "I am a woman.", "M": "I am a man."},
    "age": {"<25": "I am under 25 years old.", "25-34": "I am 25 to 34 years old.",
            "35-44": "I am 35 to 44 years old.", "45+": "I am 45 years old or older."},
}


def statement(attribute: str, value: str) -> str:
    """The sentence a prompt uses to state ``attribute = value`` (see :data:`STATEMENTS`)."""
    if attribute not in STATEMENTS:
        raise ValueError(f"no statements for attribute {attribute!r}; choose one of: {', '.join(STATEMENTS)}")
    if value not in STATEMENTS[attribute]:
        raise ValueError(f"unknown {attribute} value {value!r}; choose one of: {', '.join(STATEMENTS[attribute])}")
    return STATEMENTS[attribute][value]


class StatedAttributeRanker(LLMRank):
    """The zero-shot ranker (likelihood of each candidate title) with a sentence about the user first.

    The prompt reads "<statement> I have watched these movies, oldest first: ...", as
    FaiRLLM's "I am a <attribute> fan of ..."; an empty statement gives the neutral prompt,
    the same prompt :class:`~genrec_lib.models.llm.rankers.LLMRank` writes.
    """

    statement_ = ""

    def history_text(self, history) -> str:
        text = super().history_text(history)
        return f"{self.statement_} {text}" if self.statement_ else text

    def score_with_statements(self, task, statements) -> torch.Tensor:
        """(U, C) scores of the task's candidates, user ``u``'s prompt opening with ``statements[u]``."""
        if len(statements) != len(task.users):
            raise ValueError(f"one statement per task user is needed: {len(statements)} for {len(task.users)} users")
        rows = []
        try:
            for user, history, candidates, said in zip(task.users, task.history, task.candidates, statements):
                self.statement_ = said
                rows.append(self.score_user(history, candidates, int(user)))
        finally:
            self.statement_ = ""
        return torch.tensor(np.stack(rows), dtype=torch.float32)
