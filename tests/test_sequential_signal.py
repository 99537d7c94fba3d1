"""Order is the only signal: sequential models must succeed where bag-of-items models fail.

The catalogue has two halves, A and B, and a bijection ``sigma: A -> B``. Each user's
history is a chain of triples ``(o, s, sigma(s))``: an "orphan" ``o`` in A whose partner
``sigma(o)`` the user never has, a start ``s`` in A, and its partner. The history ends with
one more orphan and a start ``x``; loo holds out ``x`` (validation: a random draw, which
no model can predict) and ``sigma(x)`` (test).

Read in order the test target is plain: the last item ``x`` follows an item of A, so it is
a start, and ``sigma(x)`` comes next. Read as a set, ``x`` is one of ``TRIPLES + 2`` items
of A whose partner is missing, so a model that sees only the set (ItemKNN, EASE) can at
best put 10 of those ``TRIPLES + 2`` equally likely partners in its top 10.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from genrec_lib.data import Interactions, make_split
from genrec_lib.evaluation import evaluate
from genrec_lib.models import get_model

HALF, N_USERS, TRIPLES = 60, 200, 25
BAG_CEILING = 10 / (TRIPLES + 2) + 0.15  # a perfect bag model's expected HR@10, plus slack
SEQUENTIAL_FLOOR = 0.75


def order_only_interactions(seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    sigma = HALF + rng.permutation(HALF)  # partner of item a (in A = 0..HALF-1), in B = HALF..2*HALF-1
    rows = []
    for user in range(N_USERS):
        a = rng.choice(HALF, size=2 * TRIPLES + 2, replace=False)
        orphans, starts = a[: TRIPLES + 1], a[TRIPLES + 1 :]
        sequence = []
        for o, s in zip(orphans[:-1], starts[:-1]):
            sequence += [o, s, sigma[s]]
        sequence += [orphans[-1], starts[-1], sigma[starts[-1]]]
        rows += [(user + 1, int(item) + 1, 5, 1_000 * t) for t, item in enumerate(sequence)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    n = 2 * HALF
    items = pd.DataFrame({"title": [f"Item {i}" for i in range(1, n + 1)], "year": 2000,
                          "genres": [["Drama"]] * n}, index=np.arange(1, n + 1))
    users = pd.DataFrame({"age": 30, "gender": "F", "occupation": "other"}, index=np.arange(1, N_USERS + 1))
    return Interactions.from_frame(frame, items, users, "order-only")


@pytest.fixture(scope="module")
def split():
    return make_split(order_only_interactions(), "loo", seed=0)


def _hit(model, split):
    return evaluate(model, split, "test", ks=(10,))["hit@10"]


@pytest.mark.parametrize("name,kwargs", [("itemknn", {}), ("ease", {"l2": 10.0})])
def test_bag_of_items_models_fail(split, name, kwargs):
    assert _hit(get_model(name, **kwargs).fit(split), split) < BAG_CEILING


SEQUENTIAL = {
    "sasrec": dict(dim=32, n_layers=1, max_seq_len=8, batch_size=64, learning_rate=1e-2, dropout=0.1,
                   epochs=8, eval_every=8),
    "gru4rec": dict(dim=32, hidden=64, max_seq_len=8, batch_size=64, learning_rate=1e-2, dropout=0.1,
                    epochs=8, eval_every=8),
    "bert4rec": dict(dim=32, n_layers=1, max_seq_len=8, batch_size=64, learning_rate=1e-2, dropout=0.0,
                     mask_prob=0.3, epochs=30, eval_every=30),
}


@pytest.mark.parametrize("name", sorted(SEQUENTIAL))
def test_sequential_models_succeed(split, name):
    model = get_model(name, **SEQUENTIAL[name]).fit(split)
    assert _hit(model, split) > SEQUENTIAL_FLOOR


def test_tiger_succeeds(split):
    # Random item embeddings: the semantic IDs carry no order, TIGER must learn sigma from sequences.
    embeddings = torch.nn.functional.normalize(torch.randn(2 * HALF, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    model = get_model("tiger", codebook_sizes=(8, 16), rqvae_steps=200, d_model=32, n_heads=2, n_layers=1,
                      dim_feedforward=64, max_seq_len=24, beam_size=10, batch_size=64, learning_rate=1e-2,
                      dropout=0.0, latest_window=0.0, epochs=30, eval_every=30, item_embeddings=embeddings).fit(split)
    assert _hit(model, split) > SEQUENTIAL_FLOOR
