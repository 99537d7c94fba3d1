import numpy as np
import torch

from genrec_lib.data.sampling import sample_negatives


def test_negatives_are_never_seen_items(tiny):
    users = torch.from_numpy(np.repeat(np.arange(tiny.n_users), 50))
    negatives = sample_negatives(tiny, users, torch.Generator().manual_seed(0))
    seen = set(zip(tiny.user.tolist(), tiny.item.tolist()))
    assert not any((u, i) in seen for u, i in zip(users.tolist(), negatives.tolist()))
    assert negatives.min() >= 0 and negatives.max() < tiny.n_items
