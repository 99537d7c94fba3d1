"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

https://arxiv.org/abs/1808.09781

A stack of causal self-attention blocks reads a user's items in time order; the hidden
state ``F_t`` at step ``t`` scores every item ``i`` by ``r_{i,t} = F_t . M_i`` with the
shared item embedding ``M``, and the next item is predicted at *every* position at once.
This file also holds batched generation helpers (:func:`sample_continuations`,
:func:`beam_search`) usable with any model that has ``next_item_logits(sequences)``.

Deviations from the paper: by default the loss is the full softmax cross-entropy over the
catalogue (``loss="ce"``), which Klenitskiy & Vasilev (RecSys 2023) and Petrov & Macdonald
(RecSys 2023) show to be much stronger than the paper's binary cross-entropy with one
sampled negative per position (``loss="bce"`` keeps that option for comparison).
Pre-LN transformer blocks with GELU (:mod:`genrec_lib.models.layers`); histories longer
than ``max_seq_len`` are cut into non-overlapping windows (each trained on all positions)
instead of being truncated to the most recent items.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.data import Interactions, Split
from genrec_lib.data.sampling import sample_negatives
from genrec_lib.models.base import TrainableRecommender, UserBatch, check_non_negative, check_positive, register
from genrec_lib.models.blocks import init_embeddings, item_embedding, shuffled_batches
from genrec_lib.models.layers import TransformerStack

LOSSES = ("ce", "bce")


def sequence_windows(data: Interactions, length: int, shift: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each user's sequence into left-padded windows of ``length`` (input, target) pairs.

    The target of input position ``t`` is the item ``shift`` steps later (``shift=1``: the
    next item; ``shift=0``: the item itself, for masked models). Windows are aligned at the
    end of the sequence, so the most recent item is always in the last slot of the last
    window, as at inference. Pad id is ``n_items``; vectorised over all users.

    Returns:
        inputs (W, length), targets (W, length), user of each window (W,).
    """
    order = data.temporal_order()
    user, item = data.user[order], data.item[order]
    counts = np.bincount(user, minlength=data.n_users)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    t = np.arange(len(user)) - start[user]  # position within the user's sequence
    n = counts[user]
    keep = t < n - shift  # inputs that have a target
    src, dst = np.flatnonzero(keep), np.flatnonzero(keep) + shift
    r = (n[src] - shift - 1) - t[src]  # 0 for the most recent input
    window = r // length
    n_windows = np.zeros(data.n_users, dtype=np.int64)
    np.maximum.at(n_windows, user[src], window + 1)
    first = np.concatenate([[0], np.cumsum(n_windows)[:-1]])
    row = first[user[src]] + window
    slot = length - 1 - r % length
    inputs = np.full((n_windows.sum(), length), data.n_items, dtype=np.int64)
    targets = inputs.copy()
    inputs[row, slot], targets[row, slot] = item[src], item[dst]
    return inputs, targets, np.repeat(np.arange(data.n_users), n_windows)


@register("sasrec")
class SASRec(TrainableRecommender):
    """Causal self-attention over the item sequence, next-item prediction at every position."""

    def __init__(self, dim: int = 64, n_layers: int = 2, n_heads: int = 2, dropout: float = 0.2,
                 max_seq_len: int = 50, loss: str = "ce", batch_size: int = 128, learning_rate: float = 5e-3,
                 weight_decay: float = 0.0, epochs: int = 30, patience: int = 8, eval_every: int = 2, seed: int = 2020):
        super().__init__()
        check_positive(dim=dim, n_layers=n_layers, n_heads=n_heads, max_seq_len=max_seq_len, batch_size=batch_size,
                       learning_rate=learning_rate, epochs=epochs, eval_every=eval_every)
        check_non_negative(dropout=dropout, weight_decay=weight_decay, patience=patience)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.dim, self.n_layers, self.n_heads, self.dropout = dim, n_layers, n_heads, dropout
        self.max_seq_len, self.loss, self.batch_size = max_seq_len, loss, batch_size
        self.learning_rate, self.weight_decay, self.epochs = learning_rate, weight_decay, epochs
        self.patience, self.eval_every, self.seed = patience, eval_every, seed

    def build(self, split: Split) -> None:
        self.n_items = split.n_items
        self.M = item_embedding(self.n_items, self.dim)  # item embeddings M (+ pad)
        self.P = nn.Embedding(self.max_seq_len, self.dim)  # learned positional embeddings P
        self.encoder = TransformerStack(self.dim, self.n_heads, self.n_layers, self.dropout)
        self.emb_drop = nn.Dropout(self.dropout)
        init_embeddings(self.M, self.P)
        inputs, targets, users = sequence_windows(split.train, self.max_seq_len, shift=1)
        self._windows = tuple(torch.from_numpy(a) for a in (inputs, targets, users))
        self._train = split.train

    def item_table(self) -> torch.Tensor:
        """The item embeddings M with the zero padding row last: (I + 1, d).

        A learned table here; :class:`~genrec_lib.models.sasrec_text.SASRecText` computes it from item text.
        """
        return self.M.weight

    def encode(self, S: torch.Tensor, return_attention: bool = False):
        """Hidden states F for a left-padded item sequence S (B, L): (B, L, d) (+ attention maps)."""
        L = S.shape[1]
        pad = S == self.n_items  # (B, L)
        E = self.item_table()[S] * math.sqrt(self.dim) + self.P.weight[-L:]  # (B, L, d), positions aligned at the end
        x = self.emb_drop(E) * (~pad).unsqueeze(-1)
        return self.encoder(x, causal=True, key_padding=pad, return_attention=return_attention)  # F: (B, L, d)

    def training_batches(self, split: Split, generator: torch.Generator):
        inputs, targets, users = self._windows
        for index in shuffled_batches(len(inputs), self.batch_size, generator):
            batch = {"S": inputs[index], "y": targets[index]}
            if self.loss == "bce":  # one negative per position, unseen by the user
                u = users[index].unsqueeze(1).expand_as(batch["y"]).reshape(-1)
                batch["neg"] = sample_negatives(self._train, u, generator).view_as(batch["y"])
            yield batch

    def training_loss(self, batch) -> torch.Tensor:
        S, y = batch["S"], batch["y"]
        real = y != self.n_items  # positions with a target
        F_t = self.encode(S)[real]  # (N, d)
        M = self.item_table()  # (I + 1, d)
        if self.loss == "ce":
            logits = F_t @ M[: self.n_items].T  # (N, I)
            return F.cross_entropy(logits, y[real])
        r_pos = (F_t * M[y[real]]).sum(-1)
        r_neg = (F_t * M[batch["neg"][real]]).sum(-1)
        return -(F.logsigmoid(r_pos) + F.logsigmoid(-r_neg)).mean()

    def next_item_logits(self, S: torch.Tensor) -> torch.Tensor:
        """Scores of every real item as the next one after each left-padded sequence S: (B, I)."""
        return self.encode(S)[:, -1] @ self.item_table()[: self.n_items].T

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.next_item_logits(batch.sequences[:, -self.max_seq_len :])


# --- generation: batched over users, for any model with next_item_logits(S) --------------


def _seen_mask(S: torch.Tensor, n_items: int, history: torch.Tensor | None) -> torch.Tensor:
    seen = torch.zeros(S.shape[0], n_items + 1, dtype=torch.bool, device=S.device)
    seen.scatter_(1, S, True)
    seen = seen[:, :n_items]
    return seen if history is None else seen | (history > 0)


@torch.no_grad()
def sample_continuations(model, S: torch.Tensor, n_steps: int, temperature: float = 1.0, top_k: int | None = None,
                         history: torch.Tensor | None = None, generator: torch.Generator | None = None,
                         exclude_seen: bool = True) -> torch.Tensor:
    """Sample ``n_steps`` next items for every sequence in S (B, L) at once: (B, n_steps).

    Each step draws from ``softmax(logits / temperature)`` restricted to the ``top_k`` best
    items (all items when ``None``); items already seen (in S, in ``history`` or generated)
    are excluded when ``exclude_seen``. ``temperature -> 0`` approaches greedy decoding.
    """
    check_positive(n_steps=n_steps, temperature=temperature)
    if top_k is not None:
        check_positive(top_k=top_k)
    model.eval()
    n_items = model.n_items
    seen = _seen_mask(S, n_items, history)
    out = []
    for _ in range(n_steps):  # a loop over steps, never over users
        logits = model.next_item_logits(S).float() / temperature  # (B, I)
        if exclude_seen:
            logits = logits.masked_fill(seen, float("-inf"))
        if top_k is not None and top_k < n_items:
            kth = torch.topk(logits, top_k, dim=1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)  # (B, 1)
        out.append(nxt)
        seen.scatter_(1, nxt, True)
        S = torch.cat([S[:, 1:], nxt], dim=1)
    return torch.cat(out, dim=1)


@torch.no_grad()
def beam_search(model, S: torch.Tensor, n_steps: int, beam_width: int = 5, history: torch.Tensor | None = None,
                exclude_seen: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``beam_width`` most likely continuations of length ``n_steps`` for every sequence in S.

    All users and beams are scored in one batch per step. Returns items
    (B, beam_width, n_steps) and their total log-probabilities (B, beam_width), best first.
    """
    check_positive(n_steps=n_steps, beam_width=beam_width)
    model.eval()
    B, L = S.shape
    n_items, W = model.n_items, beam_width
    seen = _seen_mask(S, n_items, history).unsqueeze(1).repeat(1, W, 1)  # (B, W, I)
    beams = S.unsqueeze(1).repeat(1, W, 1)  # (B, W, L)
    logp = torch.full((B, W), float("-inf"), device=S.device)
    logp[:, 0] = 0.0  # all beams start identical: expand only the first one at step 1
    generated = torch.empty(B, W, 0, dtype=torch.long, device=S.device)
    for _ in range(n_steps):
        step = model.next_item_logits(beams.view(B * W, L)).float().view(B, W, n_items)
        if exclude_seen:  # renormalise over the items each beam may still recommend
            step = step.masked_fill(seen, float("-inf"))
        step = step.log_softmax(-1)
        total = (logp.unsqueeze(-1) + step).view(B, W * n_items)
        logp, flat = torch.topk(total, W, dim=1)  # (B, W)
        parent, item = flat // n_items, flat % n_items
        pick = parent.unsqueeze(-1)
        beams = torch.cat([beams.gather(1, pick.expand(-1, -1, L))[:, :, 1:], item.unsqueeze(-1)], dim=2)
        generated = torch.cat([generated.gather(1, pick.expand(-1, -1, generated.shape[2])), item.unsqueeze(-1)], dim=2)
        seen = seen.gather(1, pick.expand(-1, -1, n_items)).scatter(2, item.unsqueeze(-1), True)
    return generated, logp
