"""Full-catalogue (and sampled-negative) ranking evaluation in user batches.

For each batch of users the model scores every item; items the user is known to have
seen (train for validation, train + valid for test) are set to ``-inf``; the top K are
taken with ties in score broken uniformly at random (seeded, :func:`topk_random_ties`);
the hits feed the pure metric functions in :mod:`genrec_lib.evaluation.metrics`.

Ties matter: ``torch.topk`` alone returns tied items in index order, and on MovieLens the
item index correlates with popularity, so a constant scorer would look three times better
than chance. Scores of ``-inf`` mean "cannot rank this item": such items come after every
item with a finite score, in random order.

Sampled evaluation (``n_negatives=100``) keeps only the held-out items plus that many
random unseen items per user and ranks among those: it is cheaper but inflates scores
and can reorder models, which chapter 02 measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from genrec_lib.data import Split
from genrec_lib.evaluation.metrics import METRICS, compute_metrics
from genrec_lib.models.batch import UserBatch

#: The evaluator needs only a model's ``score``, ``max_seq_len`` and ``device``: any
#: :class:`~genrec_lib.models.base.Recommender`. It does not import the models' base class,
#: which imports the evaluator for early stopping (:func:`validation_step`).
Recommender = torch.nn.Module


@dataclass
class EvalResult:
    """Mean metrics, per-user values (for significance tests) and the evaluated users."""

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray] = field(repr=False)
    users: np.ndarray = field(repr=False)
    seconds: float = 0.0

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]


def _dense_rows(matrix: sp.csr_matrix, rows: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(matrix[rows].toarray()).to(device=device, dtype=torch.float32)


def user_batches(split: Split, stage: str, users: np.ndarray, batch_size: int, max_seq_len: int | None, device):
    """Yield ``(rows, UserBatch)`` for ``users`` in batches, on ``device``."""
    history, seen = split.history(stage), split.seen(stage)
    sequences = split.sequences(stage, max_seq_len) if max_seq_len else None
    for start in range(0, len(users), batch_size):
        rows = users[start : start + batch_size]
        batch_history = _dense_rows(history, rows, device)
        yield rows, UserBatch(
            users=torch.from_numpy(rows).to(device),
            history=batch_history,
            sequences=None if sequences is None else torch.from_numpy(sequences[rows]).to(device),
            seen=batch_history if seen is history else _dense_rows(seen, rows, device),
        )


#: Finite stand-in for a model's ``-inf`` (and ``+inf``): unrankable items stay below every
#: real score but above the masked (seen) items, and can still be ordered at random.
_SCORE_BOUND = 1e38


def masked_scores(model: Recommender, batch: UserBatch, mask_seen: bool = True) -> torch.Tensor:
    """The model's scores with every item the user has seen set to ``-inf``: (B, n_items).

    A model's own ``-inf`` (an item it cannot rank) becomes the lowest finite score, so it
    ranks after every scored item and before the masked ones. NaN scores are an error.
    ``mask_seen=False`` keeps seen items in the ranking (the convention of some papers and
    libraries for sequential models; they then compete with the held-out items).
    """
    scores = model.score(batch).float()
    if torch.isnan(scores).any():
        raise ValueError(f"model {model.name or type(model).__name__!r} returned NaN scores; "
                         "check its training (a diverged loss) before evaluating it")
    scores = scores.clamp(-_SCORE_BOUND, _SCORE_BOUND)
    return scores.masked_fill(batch.seen > 0, float("-inf")) if mask_seen else scores


_M64 = (1 << 64) - 1


def _signed(x: int) -> int:
    """A 64-bit constant as the int64 torch stores (two's complement)."""
    x &= _M64
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN, _MIX1, _MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def tie_noise(users: torch.Tensor, items: torch.Tensor, n_items: int, seed: int = 0) -> torch.Tensor:
    """A uniform number in [0, 1) for each (user, item) pair, fixed by ``seed`` (float64).

    A counter-based generator (the SplitMix64 finaliser of ``seed, user, item``): the
    number a pair gets does not depend on the batch it is scored in, so evaluation is
    invariant to batch size and to which users are evaluated together.

    Args:
        users: (B, 1) or (B, m) user indices; items: (B, m) item indices (broadcast).
    """
    # SplitMix64 steps a counter by the golden ratio; our counter is (user, item), offset by the seed.
    x = (users.long() * n_items + items.long() + 1) * _GOLDEN + _signed((int(seed) + 1) * 0xD1B54A32D192ED03)
    x = (x ^ _shr(x, 30)) * _MIX1  # int64 arithmetic wraps, as the finaliser needs
    x = (x ^ _shr(x, 27)) * _MIX2
    x = x ^ _shr(x, 31)
    return _shr(x, 11).double() * 2.0**-53


def _tie_keys(values: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """float64 keys that keep distinct float32 ``values`` in order and shuffle equal ones."""
    gap = (torch.nextafter(values, torch.full_like(values, float("inf"))) - values).double()
    return torch.where(torch.isfinite(values), values.double() + 0.5 * gap.nan_to_num(0.0) * noise, values.double())


def topk_random_ties(scores: torch.Tensor, k: int, seed: int = 0, users: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the ``k`` largest scores per row, equal scores in uniformly random order.

    Ties are resolved by :func:`tie_noise`, independently for each user: among items with
    equal scores, which enter the top ``k`` and in what order is a uniform draw. Distinct
    scores keep their order; ``-inf`` entries come last. Rows without ties cost one
    ``torch.topk`` and one comparison; only rows whose tie straddles the k-th place are
    re-drawn over the whole catalogue.

    Args:
        scores: (B, n) float scores.
        seed: fixes the random order.
        users: (B,) user indices that key the random order (default ``0..B-1``).
    Returns:
        (B, k) int64 indices, best first.
    """
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    scores = scores.float()
    B, n = scores.shape
    users = (torch.arange(B) if users is None else users).to(scores.device).long().unsqueeze(1)  # (B, 1)
    values, top = torch.topk(scores, k, dim=1)  # (B, k)
    threshold = values[:, -1:]  # (B, 1): the k-th score
    at = scores == threshold  # (B, n): items tied with the k-th
    # A row must be re-drawn when more items tie at the k-th score than places are left for them.
    redraw = at.sum(1) > (values == threshold).sum(1)
    if redraw.any():
        rows = redraw.nonzero().squeeze(1)
        noise = tie_noise(users[rows], torch.arange(n, device=scores.device).unsqueeze(0), n, seed)  # (R, n)
        key = torch.where(scores[rows] > threshold[rows], 2.0, torch.where(at[rows], noise, -1.0))
        top[rows] = torch.topk(key, k, dim=1).indices
    # Order the chosen k by score, equal scores by their noise.
    key = _tie_keys(scores.gather(1, top), tie_noise(users, top, n, seed))
    return top.gather(1, key.argsort(dim=1, descending=True))


@torch.no_grad()
def recommend(model: Recommender, split: Split, stage: str = "test", k: int = 10,
              users: np.ndarray | None = None, batch_size: int = 1024, seed: int = 2020) -> np.ndarray:
    """Top-``k`` unseen items for ``users`` (default: all users), as the evaluator ranks them.

    Ties in score are broken uniformly at random with ``seed``.

    Returns:
        int64 array (len(users), k) of dense item indices, best first.
    """
    users = np.arange(split.n_users) if users is None else np.asarray(users)
    was_training = model.training
    model.eval()
    out = [topk_random_ties(masked_scores(model, batch), k, seed, batch.users).cpu()
           for _, batch in user_batches(split, stage, users, batch_size, model.max_seq_len, model.device)]
    model.train(was_training)
    return torch.cat(out).numpy()


@torch.no_grad()
def evaluate(
    model: Recommender,
    split: Split,
    stage: str = "test",
    ks=(5, 10, 20),
    metrics=METRICS,
    batch_size: int = 1024,
    n_negatives: int | None = None,
    seed: int = 2020,
    users: np.ndarray | None = None,
    mask_seen: bool = True,
) -> EvalResult:
    """Rank all items (or sampled candidates) for every user with held-out items in ``stage``.

    Args:
        model: a fitted :class:`Recommender`.
        stage: ``"valid"`` or ``"test"``.
        ks: cut-offs; metrics are named ``"ndcg@10"`` and so on.
        n_negatives: ``None`` for full ranking; else rank each user's held-out items
            among this many random items the user has not seen (sampled evaluation).
        seed: seeds the sampled negatives and the random order of tied scores.
        users: evaluate only these users (default: all with at least one held-out item).
        mask_seen: remove every item the user is known to have seen from the ranking (the
            default, and this book's convention). ``False`` ranks them too, as RecBole does
            for sequential models and as some papers report; only for full ranking.
    """
    import time

    if not mask_seen and n_negatives is not None:
        raise ValueError("mask_seen=False applies to full ranking; sampled candidates are unseen items by construction")
    start = time.perf_counter()
    targets = split.targets(stage)
    if users is None:
        users = np.flatnonzero(np.diff(targets.indptr) > 0)
    device = model.device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    k_max = max(ks)
    per_user: dict[str, list[torch.Tensor]] = {}
    for rows, batch in user_batches(split, stage, users, batch_size, model.max_seq_len, device):
        scores = masked_scores(model, batch, mask_seen)
        relevant = _dense_rows(targets, rows, device)
        if n_negatives is not None:
            scores = _keep_sampled_candidates(scores, batch.seen > 0, relevant, n_negatives, generator)
        top = topk_random_ties(scores, k_max, seed, batch.users)
        hits = torch.gather(relevant, 1, top)
        for key, value in compute_metrics(hits, relevant.sum(1).long(), ks, metrics).items():
            per_user.setdefault(key, []).append(value.cpu())
    model.train(was_training)
    arrays = {k: torch.cat(v).numpy() for k, v in per_user.items()}
    return EvalResult(
        metrics={k: float(v.mean()) for k, v in arrays.items()},
        per_user=arrays,
        users=users,
        seconds=time.perf_counter() - start,
    )


def _keep_sampled_candidates(scores, seen, relevant, n_negatives, generator):
    """Keep held-out items plus ``n_negatives`` uniformly sampled unseen items per user."""
    # Uniform noise, with seen and held-out items excluded, then top-k of the noise:
    # a vectorised sample without replacement.
    noise = torch.rand(scores.shape, generator=generator, device=scores.device)
    noise = noise.masked_fill(seen | (relevant > 0), -1.0)
    negatives = torch.topk(noise, n_negatives, dim=1).indices
    keep = relevant > 0
    keep.scatter_(1, negatives, True)
    return scores.masked_fill(~keep, float("-inf"))


def validation_step(split: Split, metric: str = "ndcg@10", stage: str = "valid"):
    """The training loop's validation step: ``step(model, users)`` -> per-user ``metric`` (array).

    ``metric`` is ``"name@k"`` with ``name`` in :data:`~genrec_lib.evaluation.metrics.METRICS`.
    The loop (:func:`genrec_lib.training.train`) calls it on batches of validation users,
    on each process its share, and early-stops on the mean of the gathered values; on one
    process with the default batches this is exactly ``evaluate(model, split, stage).metrics[metric]``.
    """
    name, _, k = metric.partition("@")
    if name not in METRICS or not k.isdigit():
        raise ValueError(f"metric must be 'name@k' with name in {', '.join(METRICS)}, got {metric!r}")

    def step(model: Recommender, users: np.ndarray) -> np.ndarray:
        return evaluate(model, split, stage, ks=(int(k),), metrics=(name,), users=np.asarray(users)).per_user[metric]

    return step
