"""Small blocks written once for several models: shuffled mini-batches, item tables, a step-conditioned MLP.

- :func:`shuffled_batches`: one epoch of mini-batch indices in a random order (GRU4Rec,
  SASRec, BERT4Rec, BGN, the bi-encoder, DiffRec, FlowCF).
- :func:`item_embedding` and :func:`init_embeddings`: the item table of the sequential
  transformers (SASRec, BERT4Rec, BGN) and GRU4Rec, with a zero padding row at index
  ``n_items`` and room for special tokens after it ([mask], SEP).
- :func:`step_embedding` and :class:`StepMLP`: the denoiser ``f_theta(x_t, t)`` of DiffRec
  (chapter 05) and the endpoint predictor of FlowCF (chapter 08), an MLP over the
  interaction vector and a sinusoidal embedding of the step.

Each model file keeps its paper's mechanism (what is noised, masked or predicted); these
blocks hold only what was written the same way in several of them. They draw random numbers
in the order the models' own code did, so a seeded run gives the same weights as before.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.models.base import check_non_negative, check_positive


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One epoch of mini-batches over ``n`` examples: int64 index tensors (<= batch_size,).

    The indices ``0..n-1`` are shuffled once with ``generator`` (one ``torch.randperm`` draw)
    and cut into consecutive slices; every index appears exactly once, and the last batch is
    shorter when ``batch_size`` does not divide ``n``.
    """
    check_positive(batch_size=batch_size)
    order = torch.randperm(n, generator=generator)  # (n,)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def item_embedding(n_items: int, dim: int, n_special: int = 0) -> nn.Embedding:
    """An item table (n_items + 1 + n_special, dim): rows ``0..I-1`` the items, row ``I`` padding.

    The padding row gets no gradient; the ``n_special`` rows after it are special tokens
    ([mask] for BERT4Rec, SEP for BGN). Initialise it with :func:`init_embeddings` once all
    of the model's layers exist: creating a layer draws random numbers, and the models
    initialise their tables after the encoder, so calling it later keeps their weights.
    """
    check_positive(n_items=n_items, dim=dim)
    check_non_negative(n_special=n_special)
    return nn.Embedding(n_items + 1 + n_special, dim, padding_idx=n_items)


def init_embeddings(*tables: nn.Embedding, std: float = 0.02) -> None:
    """Draw every table's weights from N(0, std^2) (in the order given), then zero their padding rows."""
    for table in tables:
        nn.init.normal_(table.weight, std=std)
    with torch.no_grad():
        for table in tables:
            if table.padding_idx is not None:
                table.weight[table.padding_idx].zero_()


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of steps ``t`` (B,) -> (B, dim), as for Transformers' positions."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return F.pad(emb, (0, dim % 2))


class StepMLP(nn.Module):
    """``f_theta(x, t)``: a one-hidden-layer tanh MLP over ``[dropout(x), W_t emb(t)]``, shape (B, I) -> (B, I).

    ``emb(t)`` is the sinusoidal :func:`step_embedding`, ``W_t`` a learned ``emb_dim x emb_dim``
    map (``step_proj``); dropout on the input vector is the denoising autoencoders' corruption
    (chapter 03). Linear weights are Xavier-normal, biases N(0, 1e-6).

    Args:
        n_items: width I of the input and output vectors.
        hidden: units of the hidden layer.
        emb_dim: size of the step embedding.
        dropout: input dropout rate in [0, 1).
    """

    def __init__(self, n_items: int, hidden: int, emb_dim: int, dropout: float):
        super().__init__()
        check_positive(n_items=n_items, hidden=hidden, emb_dim=emb_dim)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.emb_dim, self.dropout = emb_dim, dropout
        self.step_proj = nn.Linear(emb_dim, emb_dim)
        self.mlp = nn.Sequential(nn.Linear(n_items + emb_dim, hidden), nn.Tanh(), nn.Linear(hidden, n_items))
        for layer in (self.step_proj, *self.mlp):
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.normal_(layer.bias, std=1e-3)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Output (B, I) from ``x`` (B, I) and steps ``t`` (B,) (integers, or grid times scaled to steps)."""
        h = F.dropout(x, p=self.dropout, training=self.training)  # (B, I)
        e_t = self.step_proj(step_embedding(t, self.emb_dim))  # (B, emb_dim)
        return self.mlp(torch.cat([h, e_t], dim=1))  # (B, I)
