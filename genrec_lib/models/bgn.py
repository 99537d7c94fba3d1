"""BGN, simplified: generating a user's next bundle item by item (Bai et al., WWW 2019).

https://arxiv.org/abs/1904.01933 ("Personalized Bundle List Recommendation")

A bundle is a *set* of items consumed together. An independent ranker fills a bundle of
size m with its top m items, each scored alone. BGN generates the bundle
autoregressively: the user's history is encoded, and each next item is chosen
conditioned on the history *and on the items already in the bundle*,

    p(b | u) = prod_j p(b_j | history_u, b_1, ..., b_{j-1}),

so the model can learn what goes with what. Here one causal transformer (SASRec's blocks,
chapter 06) reads ``[history..., SEP, b_1, ..., b_{j-1}]`` and its output at the last
position scores the next item. Because a bundle is unordered, its items are shuffled
every epoch and each step is trained with a *set* target: the probability of choosing
any item of the bundle not chosen yet,

    loss_j = -log sum_{i in b \\ {b_1..b_{j-1}}} p(i | history, b_{<j}).

Items of the history and items already chosen are masked out of every step's softmax,
in training and in generation alike.

Deviations from the paper: this is a *simplification* of BGN that keeps one of its ideas,
generating a bundle item by item conditioned on the history and the items already chosen.
The paper recommends a personalised *list* of bundles: it decomposes the list's value into
the quality of each bundle and the diversity between bundles with a determinantal point
process (DPP), generates with an LSTM sequence-to-sequence (encoder-decoder) model whose
feature-aware softmax reads item features, and builds the list by masked beam search
combined with DPP selection, which also picks each bundle's size. Left out here: the DPP
(no diversity between bundles, and one bundle per user instead of a list), item features,
beam search (generation is greedy) and the choice of size (the caller gives it). The
encoder-decoder is one causal transformer, and training uses the set target above instead
of a fixed order of the bundle's items. Training bundles longer than ``max_bundle`` (6) items
are cut (over 90% of ML-100K's observed bundles have at most 5), and the history is the
last 20 items. ``score`` returns the first step's logits (the
next item after the history), so ``genrec bench`` ranks with the model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from genrec_lib.data import Interactions, Split
from genrec_lib.data.bundles import bundle_ids
from genrec_lib.models.base import TrainableRecommender, UserBatch, check_non_negative, check_positive, register
from genrec_lib.models.blocks import init_embeddings, item_embedding, shuffled_batches
from genrec_lib.models.layers import TransformerStack


def bundle_examples(data: Interactions, history_len: int, max_bundle: int, pad: int):
    """Every observed bundle of ``data`` with the history that precedes it.

    Returns int64 arrays ``H`` (n, history_len), left-padded with ``pad``, most recent last,
    holding the user's items strictly earlier than the bundle's second; ``Bd`` (n, max_bundle),
    right-padded with ``pad``; and ``users`` (n,). Bundles longer than ``max_bundle`` are cut.
    """
    ids = bundle_ids(data)
    order = np.lexsort((data.row, data.timestamp, data.user))
    user, item, bid = data.user[order], data.item[order], ids[order]
    heads = np.flatnonzero((bid >= 0) & np.r_[True, bid[1:] != bid[:-1]])  # first row of each bundle
    starts = np.r_[0, np.flatnonzero(user[1:] != user[:-1]) + 1]
    user_start = np.repeat(starts, np.diff(np.r_[starts, len(user)]))
    n = len(heads)
    H = np.full((n, history_len), pad, dtype=np.int64)
    Bd = np.full((n, max_bundle), pad, dtype=np.int64)
    for row, head in enumerate(heads):
        past = item[max(user_start[head], head - history_len) : head]  # strictly earlier rows (sorted by time)
        if len(past):
            H[row, -len(past):] = past
        members = item[head : head + max_bundle][bid[head : head + max_bundle] == bid[head]]
        Bd[row, : len(members)] = members
    return H, Bd, user[heads]


@register("bgn")
class BGN(TrainableRecommender):
    """Autoregressive bundle generation with a causal transformer over [history, SEP, bundle]."""

    #: trained on observed bundles and evaluated on the held-out last bundle (``genrec bench --protocol bundle``)
    protocols = ("bundle",)

    def __init__(self, dim: int = 64, n_layers: int = 2, n_heads: int = 2, dropout: float = 0.2,
                 max_seq_len: int = 20, max_bundle: int = 6, batch_size: int = 256, learning_rate: float = 2e-3,
                 weight_decay: float = 0.0, epochs: int = 10, patience: int = 4, eval_every: int = 2,
                 seed: int = 2020):
        super().__init__()
        check_positive(dim=dim, n_layers=n_layers, n_heads=n_heads, max_seq_len=max_seq_len, max_bundle=max_bundle,
                       batch_size=batch_size, learning_rate=learning_rate, epochs=epochs, patience=patience,
                       eval_every=eval_every)
        check_non_negative(dropout=dropout, weight_decay=weight_decay)
        if max_bundle < 2:
            raise ValueError(f"max_bundle must be >= 2 (a bundle has at least two items), got {max_bundle!r}")
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.dim, self.n_layers, self.n_heads, self.dropout = dim, n_layers, n_heads, dropout
        self.max_seq_len, self.max_bundle, self.batch_size = max_seq_len, max_bundle, batch_size
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.epochs, self.patience, self.eval_every, self.seed = epochs, patience, eval_every, seed

    def build(self, split: Split) -> None:
        I = self.n_items = split.n_items
        self.PAD, self.SEP = I, I + 1
        self.M = item_embedding(I, self.dim, n_special=1)  # items, PAD, SEP
        self.P = nn.Embedding(self.max_seq_len + self.max_bundle, self.dim)
        self.encoder = TransformerStack(self.dim, self.n_heads, self.n_layers, self.dropout)
        self.emb_drop = nn.Dropout(self.dropout)
        init_embeddings(self.M, self.P)
        H, Bd, _ = bundle_examples(split.train, self.max_seq_len, self.max_bundle, self.PAD)
        if len(H) == 0:
            raise ValueError("the training data holds no bundle (no two items of one user in one second)")
        self._examples = (torch.from_numpy(H), torch.from_numpy(Bd))

    def hidden(self, S: torch.Tensor) -> torch.Tensor:
        """Causal transformer states for token sequences ``S`` (B, L) (items, PAD, SEP): (B, L, d)."""
        L = S.shape[1]
        pad = S == self.PAD
        x = self.M(S) * math.sqrt(self.dim) + self.P.weight[:L]
        x = self.emb_drop(x) * (~pad).unsqueeze(-1)
        return self.encoder(x, causal=True, key_padding=pad)

    def step_logits(self, states: torch.Tensor, banned: torch.Tensor) -> torch.Tensor:
        """Next-item logits (..., I) from ``states`` (..., d), ``-inf`` where ``banned`` (..., I)."""
        return (states @ self.M.weight[: self.n_items].T).masked_fill(banned, float("-inf"))

    def _banned(self, H: torch.Tensor) -> torch.Tensor:
        """(B, I) True for the items of each history ``H`` (B, L)."""
        banned = torch.zeros(len(H), self.n_items + 2, dtype=torch.bool, device=H.device)
        banned.scatter_(1, H, True)
        return banned[:, : self.n_items]

    def training_batches(self, split: Split, generator: torch.Generator):
        H, Bd = self._examples
        for index in shuffled_batches(len(H), self.batch_size, generator):
            b = Bd[index]
            # Shuffle each bundle (a set has no order), keeping padding at the end.
            keys = torch.rand(b.shape, generator=generator) + (b == self.PAD).float()
            yield H[index], torch.gather(b, 1, keys.argsort(1))

    def training_loss(self, batch) -> torch.Tensor:
        H, b = batch  # (B, L), (B, m)
        B, m = b.shape
        S = torch.cat([H, torch.full((B, 1), self.SEP, device=H.device), b[:, :-1]], dim=1)
        states = self.hidden(S)[:, H.shape[1] :]  # (B, m, d): outputs at SEP, b_1, ..., b_{m-1}
        real = b != self.PAD  # (B, m)
        # Step j: banned = history and b_1..b_{j-1} (scattered, no (B, m, I) cumulative sum).
        earlier = torch.ones(m, m, dtype=torch.bool, device=H.device).tril(-1)  # (j, k): k < j
        chosen_ids = torch.where(earlier, b[:, None, :], self.PAD)  # (B, m, m) b_k for k < j, else PAD
        banned = torch.zeros(B, m, self.n_items + 2, dtype=torch.bool, device=H.device)
        banned.scatter_(2, H[:, None, :].expand(B, m, H.shape[1]), True)
        banned.scatter_(2, chosen_ids, True)
        logits = self.step_logits(states, banned[..., : self.n_items])  # (B, m, I)
        # Targets = bundle items not chosen yet: b_k for k >= j (the bundle is in shuffled order).
        target_logits = torch.gather(logits, 2, b.clamp(max=self.n_items - 1)[:, None, :].expand(B, m, m))  # (B, m, m)
        remaining = ~earlier & real[:, None, :]
        numerator = torch.logsumexp(target_logits.masked_fill(~remaining, float("-inf")), dim=-1)  # (B, m)
        loss = torch.logsumexp(logits, dim=-1) - numerator  # -log sum_{remaining} p(i | history, b_<j)
        return loss[real].mean()

    def _history_tokens(self, sequences: torch.Tensor) -> torch.Tensor:
        """Evaluator sequences (pad = n_items) -> the model's tokens (same pad id), last ``max_seq_len``."""
        return sequences[:, -self.max_seq_len :]

    def score(self, batch: UserBatch) -> torch.Tensor:
        H = self._history_tokens(batch.sequences)
        S = torch.cat([H, torch.full((len(H), 1), self.SEP, device=H.device)], dim=1)
        return self.hidden(S)[:, -1] @ self.M.weight[: self.n_items].T

    @torch.no_grad()
    def generate(self, sequences: torch.Tensor, sizes: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy bundles: (B, max(sizes)) item indices, -1 beyond each row's size.

        ``sequences`` (B, L) are histories in the evaluator's format; ``exclude`` (B, I) marks
        items that may not be chosen (default: the items of ``sequences``).
        """
        if int(sizes.max()) > self.max_bundle or int(sizes.min()) < 1:
            raise ValueError(f"bundle sizes must be in 1..max_bundle ({self.max_bundle}), got {sizes.min()}..{sizes.max()}")
        H = self._history_tokens(sequences)
        banned = self._banned(H) if exclude is None else exclude.bool().clone()
        S = torch.cat([H, torch.full((len(H), 1), self.SEP, device=H.device)], dim=1)
        out = []
        for j in range(int(sizes.max())):
            pick = self.step_logits(self.hidden(S)[:, -1], banned).argmax(1)  # (B,)
            out.append(torch.where(j < sizes, pick, -1))
            banned[torch.arange(len(pick)), pick] = True
            S = torch.cat([S, pick[:, None]], dim=1)
        return torch.stack(out, 1)
