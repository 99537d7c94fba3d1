"""GRU4Rec: session-based recommendations with recurrent neural networks (Hidasi et al., ICLR 2016).

https://arxiv.org/abs/1511.06939

A gated recurrent unit reads the items in order; its hidden state ``h_t`` after each
item scores every candidate as the next one. It is the recurrent baseline the
attention-based models are measured against.

Deviations from the paper: items enter through a learned embedding instead of one-hot
vectors; the loss is the full softmax cross-entropy over the catalogue at every position
of a user's sequence, instead of the paper's TOP1 / BPR with sampled negatives (the authors'
own implementation now also offers cross-entropy, see Hidasi & Czapp, RecSys 2023,
https://arxiv.org/abs/2307.16832);
user histories are treated as one long session, cut into left-padded windows trained in
parallel instead of session-parallel mini-batches; output scores use the input item
embeddings (tied weights) after a linear map of ``h_t``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.data import Split
from genrec_lib.models.base import TrainableRecommender, UserBatch, check_non_negative, check_positive, register
from genrec_lib.models.blocks import init_embeddings, item_embedding, shuffled_batches
from genrec_lib.models.sasrec import sequence_windows


@register("gru4rec")
class GRU4Rec(TrainableRecommender):
    """GRU over the item sequence, next-item cross-entropy at every position."""

    def __init__(self, dim: int = 64, hidden: int = 128, n_layers: int = 1, dropout: float = 0.2,
                 max_seq_len: int = 50, batch_size: int = 128, learning_rate: float = 5e-3, weight_decay: float = 0.0,
                 epochs: int = 30, patience: int = 8, eval_every: int = 2, seed: int = 2020):
        super().__init__()
        check_positive(dim=dim, hidden=hidden, n_layers=n_layers, max_seq_len=max_seq_len, batch_size=batch_size,
                       learning_rate=learning_rate, epochs=epochs, eval_every=eval_every)
        check_non_negative(dropout=dropout, weight_decay=weight_decay, patience=patience)
        self.dim, self.hidden, self.n_layers, self.dropout = dim, hidden, n_layers, dropout
        self.max_seq_len, self.batch_size = max_seq_len, batch_size
        self.learning_rate, self.weight_decay, self.epochs = learning_rate, weight_decay, epochs
        self.patience, self.eval_every, self.seed = patience, eval_every, seed

    def build(self, split: Split) -> None:
        self.n_items = split.n_items
        self.E = item_embedding(self.n_items, self.dim)  # items + pad
        self.gru = nn.GRU(self.dim, self.hidden, self.n_layers, batch_first=True,
                          dropout=self.dropout if self.n_layers > 1 else 0.0)
        self.W_out = nn.Linear(self.hidden, self.dim)  # maps h_t into the item-embedding space
        self.drop = nn.Dropout(self.dropout)
        init_embeddings(self.E)
        inputs, targets, _ = sequence_windows(split.train, self.max_seq_len, shift=1)
        self._windows = (torch.from_numpy(inputs), torch.from_numpy(targets))

    def encode(self, S: torch.Tensor) -> torch.Tensor:
        """Output representations for S (B, L): (B, L, d). Left padding feeds zero vectors first."""
        h, _ = self.gru(self.drop(self.E(S)))  # (B, L, hidden)
        return self.W_out(self.drop(h))

    def training_batches(self, split: Split, generator: torch.Generator):
        inputs, targets = self._windows
        for index in shuffled_batches(len(inputs), self.batch_size, generator):
            yield inputs[index], targets[index]

    def training_loss(self, batch) -> torch.Tensor:
        S, y = batch
        real = y != self.n_items
        logits = self.encode(S)[real] @ self.E.weight[: self.n_items].T  # (N, I)
        return F.cross_entropy(logits, y[real])

    def next_item_logits(self, S: torch.Tensor) -> torch.Tensor:
        return self.encode(S)[:, -1] @ self.E.weight[: self.n_items].T

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.next_item_logits(batch.sequences[:, -self.max_seq_len :])
