"""A simulated feedback loop: users accept recommendations, which become training data.

Each round: fit the model on the current training data, recommend the top ``k`` unseen
items to every user, let every user *accept* some of them (a position-biased click model:
rank ``r`` is chosen with probability proportional to ``1 / log2(r + 1)``), add the accepted
items to the training data, and repeat. The catalogue-level exposure of each round's
lists (Gini, coverage, average popularity) shows whether the loop narrows what users see
(Chaney et al. 2018; Mansoury et al. 2020).

This is a *simulation*: real users do not accept items by a fixed rule. The mitigation
it can test is exploration: ``explore`` of the ``k`` slots are filled with random unseen
items instead of the model's choices.

Used by chapter 17.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd
import torch

from genrec_lib.data import Split
from genrec_lib.evaluation import metrics as M
from genrec_lib.evaluation.ranking import recommend
from genrec_lib.risks.attacks import append_rows


def explore_lists(recs: np.ndarray, seen, n_items: int, explore: int, rng: np.random.Generator) -> np.ndarray:
    """Replace the last ``explore`` slots of each list with random items the user has not seen and is not shown."""
    if explore == 0:
        return recs
    recs = recs.copy()
    blocked = np.asarray(seen.todense() if hasattr(seen, "todense") else seen, dtype=bool).copy()
    np.put_along_axis(blocked, recs[:, : recs.shape[1] - explore], True, axis=1)
    noise = np.where(blocked, -1.0, rng.random(blocked.shape))
    recs[:, recs.shape[1] - explore:] = np.argsort(-noise, axis=1)[:, :explore]
    return recs


def accept(recs: np.ndarray, n_accept: int, rng: np.random.Generator) -> np.ndarray:
    """Each user accepts ``n_accept`` distinct items of her list, rank ``r`` weighted by ``1/log2(r+1)``: (U, n_accept)."""
    k = recs.shape[1]
    weights = 1 / np.log2(np.arange(2, k + 2))
    # Gumbel top-n: a sample without replacement with probabilities proportional to weights.
    keys = np.log(weights)[None, :] - np.log(-np.log(rng.random(recs.shape)))
    picks = np.argsort(-keys, axis=1)[:, :n_accept]
    return np.take_along_axis(recs, picks, axis=1)


def simulate(split: Split, make_model: Callable[[], object], rounds: int = 4, k: int = 10, n_accept: int = 2,
             explore: int = 0, seed: int = 0) -> pd.DataFrame:
    """Run the loop and return one row per round.

    Columns: the Gini, coverage, ARP and novelty of that round's lists (popularity as in
    the original training data), the Gini of item popularity in the training data the
    round's model was fitted on, and its number of rows.

    Round 0 is the model trained on the original data. The given ``split`` is never changed.
    """
    if not 0 <= explore < k:
        raise ValueError(f"explore must be in [0, k), got explore={explore}, k={k}")
    if not 0 < n_accept <= k:
        raise ValueError(f"n_accept must be in [1, k], got {n_accept}")
    rng = np.random.default_rng(seed)
    current = split
    popularity0 = split.train.item_popularity()
    rows = []
    for round_ in range(rounds + 1):
        torch.manual_seed(seed + round_)
        model = make_model().fit(current)
        recs = recommend(model, current, "test", k=k)
        recs = explore_lists(recs, current.seen("test") if hasattr(current, "seen") else current.history("test"),
                             split.n_items, explore, rng)
        rows.append({
            "round": round_, "gini": M.gini_exposure(recs, split.n_items),
            "coverage": M.catalogue_coverage(recs, split.n_items),
            "arp": float(M.average_popularity(recs, popularity0).mean()),
            "novelty": float(M.novelty(recs, popularity0, split.n_users).mean()),
            "training-data gini": M.gini_index(current.train.item_popularity()),
            "train rows": len(current.train),
        })
        if round_ == rounds:
            break
        chosen = accept(recs, n_accept, rng)
        users = np.repeat(np.arange(split.n_users), n_accept)
        when = int(current.dataset.timestamp.max()) + 1 + round_
        train = append_rows(current.train, users, chosen.reshape(-1), when, rng=rng)
        current = replace(current, train=train)
    return pd.DataFrame(rows).set_index("round")
