"""BERT4Rec: sequential recommendation with bidirectional transformers (Sun et al., CIKM 2019).

https://arxiv.org/abs/1904.06690

The Cloze task of BERT applied to item sequences: a random share ``rho`` of the items in
each training sequence is replaced by a ``[mask]`` token and predicted from both sides
by a bidirectional transformer. To recommend, ``[mask]`` is appended after the user's
most recent item and its prediction scores every item.

Training long enough matters: Petrov & Macdonald (RecSys 2022, https://arxiv.org/abs/2207.07483)
found that most reported BERT4Rec failures came from training it for too few steps; each
epoch here supervises only about ``rho`` of the positions, so it needs more epochs
than SASRec (the loop's early stopping on validation NDCG@10 decides when to stop).

Deviations from the paper: pre-LN transformer blocks (:mod:`genrec_lib.models.layers`);
the output layer is tied to the item embeddings without the extra projection and bias;
as in the authors' code, a share ``last_mask_prob`` of the training windows mask only
the last item, the case met at inference; histories longer than ``max_seq_len`` are cut
into windows rather than truncated.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.data import Split
from genrec_lib.models.base import TrainableRecommender, UserBatch, check_non_negative, check_positive, register
from genrec_lib.models.blocks import init_embeddings, item_embedding, shuffled_batches
from genrec_lib.models.layers import TransformerStack
from genrec_lib.models.sasrec import sequence_windows


@register("bert4rec")
class BERT4Rec(TrainableRecommender):
    """Bidirectional transformer trained to fill in masked items."""

    def __init__(self, dim: int = 64, n_layers: int = 2, n_heads: int = 2, dropout: float = 0.2,
                 max_seq_len: int = 50, mask_prob: float = 0.2, last_mask_prob: float = 0.1, batch_size: int = 128,
                 learning_rate: float = 5e-3, weight_decay: float = 0.0, epochs: int = 60, patience: int = 12,
                 eval_every: int = 4, seed: int = 2020):
        super().__init__()
        check_positive(dim=dim, n_layers=n_layers, n_heads=n_heads, max_seq_len=max_seq_len, mask_prob=mask_prob,
                       batch_size=batch_size, learning_rate=learning_rate, epochs=epochs, eval_every=eval_every)
        check_non_negative(dropout=dropout, last_mask_prob=last_mask_prob, weight_decay=weight_decay, patience=patience)
        if mask_prob >= 1 or last_mask_prob > 1:
            raise ValueError(f"mask_prob must be < 1 and last_mask_prob <= 1, got {mask_prob!r}, {last_mask_prob!r}")
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.dim, self.n_layers, self.n_heads, self.dropout = dim, n_layers, n_heads, dropout
        self.max_seq_len, self.mask_prob, self.last_mask_prob, self.batch_size = max_seq_len, mask_prob, last_mask_prob, batch_size
        self.learning_rate, self.weight_decay, self.epochs = learning_rate, weight_decay, epochs
        self.patience, self.eval_every, self.seed = patience, eval_every, seed

    def build(self, split: Split) -> None:
        self.n_items = split.n_items
        self.pad, self.mask = self.n_items, self.n_items + 1
        self.E = item_embedding(self.n_items, self.dim, n_special=1)  # items + pad + [mask]
        self.P = nn.Embedding(self.max_seq_len, self.dim)
        self.encoder = TransformerStack(self.dim, self.n_heads, self.n_layers, self.dropout)
        self.emb_drop = nn.Dropout(self.dropout)
        init_embeddings(self.E, self.P)
        inputs, _, _ = sequence_windows(split.train, self.max_seq_len, shift=0)
        self._windows = torch.from_numpy(inputs)

    def encode(self, S: torch.Tensor, return_attention: bool = False):
        """Hidden states H^L for S (B, L) with pad and [mask] tokens: (B, L, d) (+ attention maps)."""
        L = S.shape[1]
        pad = S == self.pad
        x = self.emb_drop(self.E(S) * math.sqrt(self.dim) + self.P.weight[-L:]) * (~pad).unsqueeze(-1)
        return self.encoder(x, causal=False, key_padding=pad, return_attention=return_attention)  # H: (B, L, d)

    def training_batches(self, split: Split, generator: torch.Generator):
        windows = self._windows
        for index in shuffled_batches(len(windows), self.batch_size, generator):
            y = windows[index]  # (B, L) the items to recover
            real = y != self.pad
            masked = (torch.rand(y.shape, generator=generator) < self.mask_prob) & real
            last_only = torch.rand(len(y), generator=generator) < self.last_mask_prob
            masked[last_only] = False
            masked[last_only, -1] = True  # the last slot always holds a real item
            # A window with nothing masked teaches nothing: mask its last item instead.
            masked[~masked.any(1), -1] = True
            yield {"S": y.masked_fill(masked, self.mask), "y": y, "masked": masked}

    def training_loss(self, batch) -> torch.Tensor:
        masked = batch["masked"]
        H = self.encode(batch["S"])[masked]  # (N, d) at the masked positions
        logits = H @ self.E.weight[: self.n_items].T  # (N, I)
        return F.cross_entropy(logits, batch["y"][masked])

    def next_item_logits(self, S: torch.Tensor) -> torch.Tensor:
        """Append [mask] after the most recent item (dropping the oldest) and score it: (B, I)."""
        S = torch.cat([S[:, 1:], torch.full_like(S[:, :1], self.mask)], dim=1)
        return self.encode(S)[:, -1] @ self.E.weight[: self.n_items].T

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.next_item_logits(batch.sequences[:, -self.max_seq_len :])
