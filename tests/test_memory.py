"""Memory grows with the interactions, not with users x items.

Each model that reads whole interaction vectors is built and trained (one epoch, with the
validation pass of the training loop) on a sparse synthetic dataset: 100,000 users,
1,000 items, about five interactions each. A dense float32 users x items copy of the
training matrix is 400 MB; the models need per-batch rows (1,024 x 1,000 floats, 4 MB)
and at most a few item x item matrices (4 MB each); the largest working set, ListCVAE's
per-position logits over a batch, stays near 100 MB. The bound, half the dense matrix,
is broken by any model that densifies the whole matrix once.

Peak memory is the process's resident high-water mark (``VmHWM``), reset before each
measured fit through ``/proc/self/clear_refs``: it counts numpy's and torch's allocations
alike. The same model is fitted first on 2,000 users, so that the library code it runs is
already resident when the measured fit starts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genrec_lib.data import Interactions, make_split
from genrec_lib.models import get_model

N_USERS, N_ITEMS, PER_USER = 100_000, 1_000, 5
DENSE_MB = N_USERS * N_ITEMS * 4 / 2**20
BOUND_MB = DENSE_MB / 2

SMALL = dict(epochs=1, eval_every=1, patience=1)
MODELS = {
    "ease": {},
    "itemknn": {},
    "multvae": dict(hidden=16, latent=8, **SMALL),
    "multdae": dict(hidden=16, latent=8, **SMALL),
    "diffrec": dict(hidden=16, **SMALL),
    "flowcf": dict(hidden=16, **SMALL),
    "cfgan": dict(g_hidden=16, d_hidden=8, batch_size=512, **SMALL),
    "listcvae": dict(slate_size=4, dim=8, latent=4, hidden=16, batch_size=512, **SMALL),
}


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # 5: reset the peak resident set size to the current one


def _sparse_split(n_users: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Popular items are drawn more often (Zipf-like), as in MovieLens; duplicates collapse.
    weights = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    items = rng.choice(N_ITEMS, size=n_users * PER_USER, p=weights / weights.sum()) + 1
    users = np.repeat(np.arange(1, n_users + 1), PER_USER)
    frame = pd.DataFrame({"user_id": users, "item_id": items, "rating": 4,
                          "timestamp": np.arange(len(users), dtype=np.int64)})
    frame = frame.drop_duplicates(["user_id", "item_id"])
    item_side = pd.DataFrame({"title": "", "year": 2000, "genres": [[]] * N_ITEMS}, index=np.arange(1, N_ITEMS + 1))
    user_side = pd.DataFrame(index=np.arange(1, n_users + 1))
    split = make_split(Interactions.from_frame(frame, item_side, user_side, "sparse-synthetic"), "random", seed=seed)
    for stage in ("valid", "test"):  # derived matrices the evaluator caches, built outside the measurement
        split.history(stage), split.seen(stage), split.targets(stage)
    return split


@pytest.fixture(scope="module")
def splits():
    try:
        _reset_peak()
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak resident memory")
    return _sparse_split(2_000), _sparse_split(N_USERS)


def _fit(name: str, split) -> None:
    model = get_model(name, **MODELS[name])
    if hasattr(model, "_device"):
        model._device = torch.device("cpu")
    model.fit(split, device="cpu") if hasattr(model, "build") else model.fit(split)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_memory_does_not_grow_with_users_times_items(splits, name):
    torch.set_num_threads(1)
    small, large = splits
    # A first fit on a small dataset pages in the library code the model runs (file-backed
    # memory that the resident high-water mark also counts), so that the measured fit
    # counts the model's allocations only.
    _fit(name, small)
    _reset_peak()
    before = _status_mb("VmRSS")
    _fit(name, large)
    peak = _status_mb("VmHWM") - before
    print(f"{name}: peak +{peak:.0f} MB")
    assert peak < BOUND_MB, (f"{name} raised peak memory by {peak:.0f} MB on {N_USERS:,} x {N_ITEMS:,} sparse "
                             f"interactions; a dense users x items copy is {DENSE_MB:.0f} MB, the bound {BOUND_MB:.0f} MB")
