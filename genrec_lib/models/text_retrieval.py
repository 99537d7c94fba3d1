"""Text-only recommenders on sentence embeddings: a frozen encoder and a fine-tuned bi-encoder.

Reimers & Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
EMNLP 2019. https://arxiv.org/abs/1908.10084 ; dense retrieval with in-batch negatives after
Karpukhin et al., "Dense Passage Retrieval for Open-Domain Question Answering", EMNLP 2020.
https://arxiv.org/abs/2004.04906

Every item is one line of text, "Title (year). Genres: ...", embedded by all-MiniLM-L6-v2
(:mod:`genrec_lib.text_encoders`) into a unit vector ``e_i``. A user is the recency-weighted
mean of her history's embeddings,

    p_u = normalise( sum_t gamma^(T-1-t) e_{s_t} ),   s_1..s_T her input items, oldest first,

and an item's score is ``p_u . e_i`` (:class:`MiniLMMean`, ``minilm-mean``). Nothing is learned
from interactions, so an item nobody has rated scores like any other: text models can
recommend cold items, ID models cannot.

:class:`BiEncoder` (``minilm-biencoder``) tunes the two towers on our data: the history tower
maps ``p_u``, the item tower maps ``e_i``, each through a residual linear adapter, and both are
trained so that a user's history text points at the text of the item she watched next,
against the other next items of the batch (in-batch negatives, contrastive loss with
temperature ``tau``). Chapter 11 compares both with Pop, ItemKNN and SASRec on ``loo``.

Deviations from the papers: the transformer stays frozen and only the adapters (and the
recency decay) are trained, so that training takes seconds on a CPU; Sentence-BERT and DPR
fine-tune the whole encoder. A history is the weighted mean of its items' embeddings rather
than one concatenated text passed through the encoder.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.data import Split, item_text
from genrec_lib.models.base import Recommender, TrainableRecommender, UserBatch, check_positive, register
from genrec_lib.models.blocks import shuffled_batches


def item_text_embeddings(split_or_data, cache: bool = True) -> torch.Tensor:
    """all-MiniLM-L6-v2 embeddings of every item's "title (year). Genres: ..." line, (n_items, 384)."""
    from genrec_lib.text_encoders import encode_texts

    data = getattr(split_or_data, "dataset", split_or_data)
    return encode_texts(item_text(data), cache=cache)


def recency_profile(e: torch.Tensor, sequences: torch.Tensor, gamma) -> torch.Tensor:
    """Recency-weighted mean of history embeddings, normalised: (B, L) padded ids -> (B, d).

    Args:
        e: (n_items, d) item embeddings; the padding id is ``n_items``.
        sequences: (B, L) item ids, left-padded with ``n_items``, most recent last.
        gamma: decay in (0, 1] (float or 0-dim tensor): the item ``k`` steps before the most
            recent gets weight ``gamma ** k``.
    """
    n_items, L = e.shape[0], sequences.shape[1]
    real = sequences < n_items  # (B, L)
    ages = torch.arange(L - 1, -1, -1, device=e.device, dtype=e.dtype)  # (L,): 0 for the most recent slot
    w = torch.as_tensor(gamma, dtype=e.dtype, device=e.device) ** ages  # (L,)
    padded = torch.cat([e, torch.zeros(1, e.shape[1], dtype=e.dtype, device=e.device)])  # (I + 1, d)
    h = padded[sequences]  # (B, L, d)
    p = ((w * real).unsqueeze(-1) * h).sum(1)  # (B, d); an empty history gives 0
    return F.normalize(p, dim=-1)


@register("minilm-mean")
class MiniLMMean(Recommender):
    """Frozen all-MiniLM-L6-v2 item embeddings; a user is the recency-weighted mean of hers.

    Args:
        gamma: recency decay in (0, 1]; 1 is a plain mean. The default is the best of
            0.5-1.0 on ML-100K's ``loo`` validation stage (chapter 11).
        max_seq_len: most recent input items used.
        embeddings: precomputed (n_items, d) item embeddings (default: encode the item texts).
    """

    def __init__(self, gamma: float = 0.8, max_seq_len: int = 50, embeddings: torch.Tensor | None = None):
        super().__init__()
        check_positive(gamma=gamma, max_seq_len=max_seq_len)
        if gamma > 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        self.gamma, self.max_seq_len, self._given = gamma, max_seq_len, embeddings

    def fit(self, split: Split) -> "MiniLMMean":
        e = self._given if self._given is not None else item_text_embeddings(split)
        if e.shape[0] != split.n_items:
            raise ValueError(f"embeddings has {e.shape[0]} rows, the dataset {split.n_items} items")
        self.register_buffer("e", F.normalize(e.float(), dim=-1))  # (I, d)
        return self

    def user_vectors(self, sequences: torch.Tensor) -> torch.Tensor:
        return recency_profile(self.e, sequences, self.gamma)  # (B, d)

    def item_vectors(self) -> torch.Tensor:
        return self.e  # (I, d)

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.user_vectors(batch.sequences) @ self.item_vectors().T  # (B, I)


class Adapter(nn.Module):
    """x -> normalise(x + W x): a residual linear map that starts as the identity (W = 0)."""

    def __init__(self, d: int):
        super().__init__()
        self.W = nn.Linear(d, d, bias=False)
        nn.init.zeros_(self.W.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x + self.W(x), dim=-1)


@register("minilm-biencoder")
class BiEncoder(TrainableRecommender):
    """Two towers over MiniLM text embeddings, tuned with in-batch negatives (module docstring).

    Training pairs are (the last ``max_seq_len`` items before position t, the item at t) for
    every position t >= 1 of every user's training sequence. The loss of a batch of B pairs is

        L = -1/B sum_b log softmax_b'( q_b . k_b' / tau )[b],

    with ``q_b`` the history tower's output and ``k_b'`` the item tower's; a batch item equal
    to the positive is not used as its negative.

    Args:
        gamma: initial recency decay (learned, kept in (0, 1)).
        tau: softmax temperature.
        logq: subtract log Q(i), item i's frequency as a training target, from its in-batch
            logits (the sampled-softmax correction of Yi et al. 2019); without it, in-batch
            negatives punish popular items and the towers learn to avoid them.
        max_seq_len: history items per example.
        batch_size, learning_rate, weight_decay, epochs, patience, eval_every, seed: the
            shared training loop (:mod:`genrec_lib.training`), early stopping on validation.
        embeddings: precomputed item embeddings (default: encode the item texts).
    """

    def __init__(self, gamma: float = 0.8, tau: float = 0.05, max_seq_len: int = 20, batch_size: int = 1024,
                 logq: bool = True, learning_rate: float = 2e-3, weight_decay: float = 0.0, epochs: int = 3,
                 patience: int = 2, eval_every: int = 1, seed: int = 2020, embeddings: torch.Tensor | None = None):
        super().__init__()
        check_positive(gamma=gamma, tau=tau, max_seq_len=max_seq_len, batch_size=batch_size,
                       learning_rate=learning_rate, epochs=epochs, eval_every=eval_every)
        if gamma >= 1:
            raise ValueError(f"gamma must be in (0, 1), got {gamma!r}")
        self.gamma0, self.tau, self.max_seq_len, self.batch_size, self.logq = gamma, tau, max_seq_len, batch_size, bool(logq)
        self.learning_rate, self.weight_decay, self.epochs = learning_rate, weight_decay, epochs
        self.patience, self.eval_every, self.seed, self._given = patience, eval_every, seed, embeddings

    def build(self, split: Split) -> None:
        e = self._given if self._given is not None else item_text_embeddings(split)
        if e.shape[0] != split.n_items:
            raise ValueError(f"embeddings has {e.shape[0]} rows, the dataset {split.n_items} items")
        d = e.shape[1]
        self.register_buffer("e", F.normalize(e.float(), dim=-1))  # (I, d), frozen
        self.history_tower, self.item_tower = Adapter(d), Adapter(d)
        self.gamma_logit = nn.Parameter(torch.logit(torch.tensor(float(self.gamma0))))
        self._pairs = None
        # log Q(i): how often item i is a target in training, the rate at which it turns up as an in-batch negative
        counts = torch.from_numpy(split.train.item_popularity()).float() + 1.0
        self.register_buffer("log_q", (counts / counts.sum()).log())  # (I,)

    @property
    def gamma(self) -> torch.Tensor:
        return torch.sigmoid(self.gamma_logit)

    def user_vectors(self, sequences: torch.Tensor) -> torch.Tensor:
        return self.history_tower(recency_profile(self.e, sequences, self.gamma))  # (B, d)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        return self.item_tower(self.e if items is None else self.e[items])  # (I or B, d)

    def training_batches(self, split: Split, generator: torch.Generator) -> Iterator:
        if self._pairs is None:  # built once per fit, reused every epoch
            self._pairs = training_pairs(split.train.sequences(), split.n_items, self.max_seq_len)
        histories, targets = self._pairs
        for rows in shuffled_batches(len(targets), self.batch_size, generator):
            yield histories[rows], targets[rows]

    def training_loss(self, batch) -> torch.Tensor:
        histories, targets = (t.to(self.e.device) for t in batch)
        q = self.user_vectors(histories)  # (B, d)
        k = self.item_vectors(targets)  # (B, d)
        logits = q @ k.T / self.tau  # (B, B)
        if self.logq:  # sampled-softmax correction: popular items are over-represented as negatives
            logits = logits - self.log_q[targets][None, :]
        same = targets[:, None] == targets[None, :]
        logits = logits.masked_fill(same & ~torch.eye(len(targets), dtype=torch.bool, device=logits.device), float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(targets), device=logits.device))

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.user_vectors(batch.sequences) @ self.item_vectors().T  # (B, I)


def training_pairs(sequences: list[np.ndarray], n_items: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(history, next item) for every position t >= 1 of every sequence.

    Returns ``(histories (N, max_len) left-padded with n_items, targets (N,))``.
    """
    check_positive(max_len=max_len)
    rows, targets = [], []
    for s in sequences:
        for t in range(1, len(s)):
            h = s[max(0, t - max_len) : t]
            rows.append(np.concatenate([np.full(max_len - len(h), n_items, dtype=np.int64), h]))
            targets.append(s[t])
    if not rows:
        raise ValueError("no training pairs: every user needs at least two training interactions")
    return torch.from_numpy(np.stack(rows).astype(np.int64)), torch.tensor(np.array(targets, dtype=np.int64))
