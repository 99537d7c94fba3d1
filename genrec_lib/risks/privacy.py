"""Privacy, measured: membership inference and verbatim memorisation.

**Membership inference** (Shokri et al. 2017): an attacker who can query a model asks
"was this user in its training data?". A generative model that assigns its training
users a higher likelihood than similar users it never saw leaks membership. We train on
*member* users only, score members and held-out *non-members* alike with the model's own
reconstruction log-likelihood of their profile (:func:`profile_log_likelihood`), and
report the attack's ROC AUC (:func:`roc_auc`; 0.5 = no leak) with a bootstrap interval.

**Memorisation** (Carlini et al. 2021, for language models): does an autoregressive
recommender, prompted with the start of a training sequence, generate the rest of it
verbatim? :func:`first_items_split` keeps each member's first items as training data,
:func:`greedy_continuations` generates (greedily, or by sampling at a temperature);
:func:`verbatim_rate` compares members with non-members, whose continuations the model
cannot have memorised.

Used by chapter 17.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp
import torch

from genrec_lib.data import Split
from genrec_lib.evaluation.stats import two_sample_bootstrap_ci
from genrec_lib.models.base import check_positive


def member_split(split: Split, fraction: float = 0.5, seed: int = 0) -> tuple[Split, np.ndarray, np.ndarray]:
    """A new split that keeps only a random ``fraction`` of users (members) in train, valid and test.

    Returns:
        the members' split, member user indices, non-member user indices.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    is_member = rng.random(split.n_users) < fraction
    parts = {name: getattr(split, name).subset(is_member[getattr(split, name).user]) for name in ("train", "valid", "test")}
    return replace(split, **parts), np.flatnonzero(is_member), np.flatnonzero(~is_member)


@torch.no_grad()
def profile_log_likelihood(model, profiles: sp.csr_matrix, users: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Mean log-probability the model's item distribution gives each user's own items, (len(users),).

    The model reads the profile as history (``UserBatch``) and its scores are turned into
    a distribution over the catalogue with a softmax: for Mult-VAE/DAE that is exactly
    the multinomial likelihood ``sum_i x_ui log pi_i(z_u) / |x_u|`` it was trained on.
    """
    from genrec_lib.models.base import UserBatch

    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(users), batch_size):
        rows = np.asarray(users[start : start + batch_size])
        x = torch.from_numpy(profiles[rows].toarray()).float().to(model.device)  # (B, I)
        log_pi = torch.log_softmax(model.score(UserBatch(users=torch.from_numpy(rows).to(model.device), history=x)).float(), 1)
        out.append(((log_pi * x).sum(1) / x.sum(1).clamp(min=1)).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def roc_auc(member_scores, non_member_scores) -> float:
    """P(score of a random member > score of a random non-member), ties counting 1/2 (Mann-Whitney).

    Computed by scikit-learn's ``roc_auc_score`` with members as the positive class.
    """
    from sklearn.metrics import roc_auc_score

    a, b = np.asarray(member_scores, float).ravel(), np.asarray(non_member_scores, float).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError("roc_auc needs at least one member and one non-member score")
    labels = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    return float(roc_auc_score(labels, np.concatenate([a, b])))


def attack_auc(member_scores, non_member_scores, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Membership-inference AUC (:func:`roc_auc`) with a 95% BCa bootstrap interval (members and non-members
    resampled separately: :func:`~genrec_lib.evaluation.stats.two_sample_bootstrap_ci`)."""
    return two_sample_bootstrap_ci(member_scores, non_member_scores, roc_auc, n_boot=n_boot, seed=seed)


def first_items_split(split: Split, users, length: int) -> Split:
    """A new split whose training data are only the first ``length`` training items of each of ``users``.

    Valid and test keep those users' rows (for early stopping); every other user is
    absent. A small training set of short sequences is what a model can memorise.
    """
    check_positive(length=length)
    users = np.asarray(users)
    train = split.train
    order = train.temporal_order()
    user_sorted = train.user[order]
    first = np.searchsorted(user_sorted, np.arange(split.n_users))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order)) - first[user_sorted]  # (rows,) place in the user's sequence
    keep = np.isin(train.user, users) & (position < length)
    return replace(split, train=train.subset(keep), valid=split.valid.subset(np.isin(split.valid.user, users)),
                   test=split.test.subset(np.isin(split.test.user, users)))


@torch.no_grad()
def greedy_continuations(model, prefixes: np.ndarray, n_steps: int, n_items: int, temperature: float = 0.0,
                         seed: int = 0) -> np.ndarray:
    """Generate ``n_steps`` items after each prefix, one at a time, never repeating an item.

    ``temperature=0`` takes the top-scored item each step (greedy); ``temperature > 0``
    samples from ``softmax(scores / temperature)``, which makes verbatim reproduction less
    likely (a decoding-time mitigation of memorisation).

    Args:
        model: a fitted sequential recommender (``max_seq_len`` set; reads ``batch.sequences``).
        prefixes: (B, P) item indices, oldest first (no padding).
    Returns:
        (B, n_steps) generated item indices.
    """
    from genrec_lib.data import pad_sequences
    from genrec_lib.models.base import UserBatch

    if not getattr(model, "max_seq_len", None):
        raise ValueError("greedy_continuations needs a sequential model (one that sets max_seq_len)")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    seqs = [list(p) for p in np.asarray(prefixes)]
    generated = np.empty((len(seqs), n_steps), dtype=np.int64)
    device = model.device
    for step in range(n_steps):
        padded = torch.from_numpy(pad_sequences([np.array(s) for s in seqs], model.max_seq_len, pad=n_items)).to(device)
        history = torch.zeros(len(seqs), n_items, device=device)
        for row, s in enumerate(seqs):
            history[row, s] = 1.0
        batch = UserBatch(users=torch.arange(len(seqs), device=device), history=history, sequences=padded)
        scores = model.score(batch).float().masked_fill(history > 0, float("-inf"))
        if temperature == 0:
            nxt = scores.argmax(1).cpu().numpy()
        else:
            probs = torch.softmax(scores.cpu() / temperature, 1)  # (B, I); seen items have probability 0
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1).numpy()
        generated[:, step] = nxt
        for row, item in enumerate(nxt):
            seqs[row].append(int(item))
    model.train(was_training)
    return generated


def verbatim_rate(generated: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(share of sequences reproduced exactly, share of positions reproduced)."""
    generated, truth = np.asarray(generated), np.asarray(truth)
    if generated.shape != truth.shape:
        raise ValueError(f"generated {generated.shape} and truth {truth.shape} must have the same shape")
    same = generated == truth
    return float(same.all(1).mean()), float(same.mean())


def ngram_overlap(generated: np.ndarray, reference: np.ndarray, n: int = 2) -> np.ndarray:
    """Per row, the share of the generated sequence's n-grams that occur anywhere in the reference row, (B,).

    A position-free measure of copying: a model that reproduces a training sequence with a
    shift still scores high. Comparing each row with a *shuffled* reference (another user's
    sequence) gives the overlap that popularity alone produces.
    """
    generated, reference = np.asarray(generated), np.asarray(reference)
    if generated.ndim != 2 or reference.ndim != 2 or len(generated) != len(reference):
        raise ValueError(f"generated {generated.shape} and reference {reference.shape} must be 2-D with the same rows")
    if not 1 <= n <= min(generated.shape[1], reference.shape[1]):
        raise ValueError(f"n must be between 1 and the shorter sequence length, got {n}")
    out = np.empty(len(generated))
    for row, (g, r) in enumerate(zip(generated, reference)):
        grams = [tuple(g[i : i + n]) for i in range(len(g) - n + 1)]
        known = {tuple(r[i : i + n]) for i in range(len(r) - n + 1)}
        out[row] = np.mean([x in known for x in grams])
    return out
