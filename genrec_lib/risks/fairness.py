"""Fairness, measured: accuracy gaps between user groups, and the exposure items receive.

*User side* (consumer fairness, Ekstrand et al. 2018): do some groups of users get worse
recommendations? :func:`group_table` gives each group's mean per-user metric with a
bootstrap interval, and :func:`group_gap` the difference between two groups with an
unpaired bootstrap interval (the groups hold different users, so no pairing).

*Item side* (provider / exposure fairness, Abdollahpouri et al. 2019): how much of the
exposure goes to long-tail items? See :func:`genrec_lib.evaluation.metrics.long_tail_share`
and :func:`exposure_table`.

Used by chapter 17.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genrec_lib.data import Split
from genrec_lib.evaluation import metrics as M
from genrec_lib.evaluation.stats import bootstrap_ci, unpaired_bootstrap_ci

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
