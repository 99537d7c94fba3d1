"""Generic building blocks shared by the models: sparse interaction rows and a transformer encoder layer.

``SparseRows`` keeps a user x item interaction matrix sparse and densifies only the rows a
batch asks for, so that a model's memory grows with the number of interactions, not with
users x items (on MovieLens-20M's shape a dense float32 copy would take 11 GB).

One pre-LayerNorm transformer block (multi-head self-attention, then a position-wise
feed-forward network, each inside a residual connection) as in Vaswani et al. (NeurIPS 2017),
https://arxiv.org/abs/1706.03762. It uses :func:`torch.nn.functional.scaled_dot_product_attention`
(fused kernels on CPU and GPU) and can also return the attention weights, which the
chapters plot. The paper-specific parts (causal or bidirectional masks, what is
predicted) stay in each model's own file.

Stable API (other models import it):

- ``SparseRows(matrix)``: ``X[rows]`` -> dense float32 rows (len(rows), n_items) on the CPU;
  ``X.item_counts()`` -> (n_items,) float32 number of rows each column appears in.

- ``TransformerBlock(dim, n_heads, dropout=0.0, ff_mult=4)``
- ``block(x, causal=False, key_padding=None, return_attention=False)`` with ``x`` (B, L, d),
  ``key_padding`` (B, L) bool, True where the key is padding; returns (B, L, d), or a
  pair with the attention weights (B, heads, L, L).
- ``TransformerStack(dim, n_heads, n_layers, dropout=0.0)``: ``n_layers`` blocks and a final
  LayerNorm, called like a block; with ``return_attention`` it returns one map per layer.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.models.base import check_non_negative, check_positive


class SparseRows:
    """A 0/1 user x item matrix kept sparse (CSR); indexing densifies only the rows asked for.

    ``X[rows]`` accepts a tensor or array of row indices, a list or a slice and returns a
    float32 tensor (len(rows), n_items) on the CPU: what a dense ``(U, I)`` buffer indexed
    the same way would return, at the memory of one batch.
    """

    def __init__(self, matrix: sp.spmatrix):
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def __getitem__(self, rows) -> torch.Tensor:
        if isinstance(rows, torch.Tensor):
            rows = rows.cpu().numpy()
        return torch.from_numpy(self.matrix[rows].toarray())

    def item_counts(self) -> torch.Tensor:
        """Number of rows (users) in which each column (item) is present: (n_items,) float32."""
        return torch.from_numpy(np.asarray(self.matrix.sum(0), dtype=np.float32).ravel())


class TransformerBlock(nn.Module):
    """Pre-LN self-attention + feed-forward block with optional causal and padding masks."""

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0, ff_mult: int = 4):
        super().__init__()
        check_positive(dim=dim, n_heads=n_heads, ff_mult=ff_mult)
        check_non_negative(dropout=dropout)
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.dim, self.n_heads, self.dropout = dim, n_heads, dropout
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        # Dropout on the residual branches and attention weights only: no dropout inside the
        # feed-forward network, whose wide hidden layer makes dropout masks costly on CPU.
        self.drop = nn.Dropout(dropout)

    def _mask(self, length: int, causal: bool, key_padding: torch.Tensor | None, device) -> torch.Tensor | None:
        """Boolean (B or 1, 1, L, L) mask, True where attention is allowed."""
        allowed = None
        if causal:
            allowed = torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]
        if key_padding is not None:
            keys = ~key_padding[:, None, None, :]  # (B, 1, 1, L)
            allowed = keys if allowed is None else allowed & keys
            # A query whose every key is masked (a fully padded row) would give NaN;
            # letting it attend to itself keeps the numbers finite (its output is ignored).
            eye = torch.eye(length, dtype=torch.bool, device=device)[None, None]
            allowed = allowed | eye
        return allowed

    def forward(self, x: torch.Tensor, causal: bool = False, key_padding: torch.Tensor | None = None,
                return_attention: bool = False):
        B, L, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(self.norm_attn(x)).view(B, L, 3, h, d // h).permute(2, 0, 3, 1, 4)  # 3 x (B, h, L, d/h)
        allowed = self._mask(L, causal, key_padding, x.device)
        if return_attention:
            logits = q @ k.transpose(-1, -2) / math.sqrt(d // h)  # (B, h, L, L)
            if allowed is not None:
                logits = logits.masked_fill(~allowed, float("-inf"))
            A = logits.softmax(-1)
            context = F.dropout(A, self.dropout, self.training) @ v
        else:
            A = None
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                                     dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.out(context.transpose(1, 2).reshape(B, L, d)))
        x = x + self.drop(self.ff(self.norm_ff(x)))
        return (x, A) if return_attention else x


class TransformerStack(nn.Module):
    """``n_layers`` :class:`TransformerBlock` s followed by a final LayerNorm (pre-LN convention)."""

    def __init__(self, dim: int, n_heads: int, n_layers: int, dropout: float = 0.0):
        super().__init__()
        check_positive(n_layers=n_layers)
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, causal: bool = False, key_padding: torch.Tensor | None = None,
                return_attention: bool = False):
        maps = []
        for block in self.blocks:
            out = block(x, causal=causal, key_padding=key_padding, return_attention=return_attention)
            x, A = out if return_attention else (out, None)
            maps.append(A)
        x = self.norm(x)
        return (x, maps) if return_attention else x
