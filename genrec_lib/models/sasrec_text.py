"""SASRec whose item table is computed from item text: frozen text vectors or text initialisation.

Hou et al., "Towards Universal Sequence Representation Learning for Recommender Systems"
(UniSRec), KDD 2022. https://arxiv.org/abs/2206.05941 ; Harte et al., "Leveraging Large
Language Models for Sequential Recommendation", RecSys 2023. https://arxiv.org/abs/2309.09261

SASRec (:mod:`genrec_lib.models.sasrec`) learns one free vector ``M_i`` per item, so an item
that never occurs in training keeps its random initialisation: it cannot be recommended on
merit. Here each item ``i`` has a text vector ``x_i`` in R^D (a language model's pooled hidden
states, :mod:`genrec_lib.models.llm.representations`, or MiniLM sentence embeddings), and the
table is a learned linear map of the PCA-whitened text vectors (:func:`whiten`: centred,
the k leading principal directions kept, each with unit variance),

    x~_i = whiten(x)_i in R^k,      M_i = W x~_i,      W in R^{d x k},

used both to embed the input sequence and to score every item (``r_{i,t} = F_t . M_i``).
With ``freeze_items=True`` (UniSRec's frozen text encoder with a learned adaptor) only W
and the transformer learn: every item, trained on or not, is placed by its text. With
``freeze_items=False`` the standardised vectors ``x~_i`` are parameters that start at the
text and are trained with everything else (Harte et al. initialise SASRec's table with
reduced LLM embeddings and then train it like ID embeddings).

Deviations from the papers: UniSRec's adaptor is a mixture of whitening experts with a
learned bias; here it is one linear map after a fixed PCA whitening (computed from the
item texts only, never from interactions). Harte et al. reduce the LLM embeddings with PCA
and initialise the table with them; here the whitened vectors pass through the learned W
in both modes, so that the modes differ only in what is trained.
"""

from __future__ import annotations

import torch
from torch import nn

from genrec_lib.data import Split
from genrec_lib.models.base import check_non_negative, check_positive, register
from genrec_lib.models.llm.representations import ENCODERS
from genrec_lib.models.sasrec import SASRec


def whiten(x: torch.Tensor, n_components: int) -> torch.Tensor:
    """PCA-whitened text vectors with unit-norm rows on average: (I, D) -> (I, k).

    Centre ``x``, keep its ``k = min(n_components, rank)`` principal directions and give each
    unit variance (a language model's hidden states are dominated by a few directions; after
    whitening every kept direction counts alike), then scale by ``1 / sqrt(k)``.
    """
    x = x.double() - x.double().mean(0)
    U, S, _ = torch.linalg.svd(x, full_matrices=False)  # x = U diag(S) V^T
    k = min(n_components, int((S > S[0] * 1e-6).sum()))
    return (U[:, :k] * ((x.shape[0] - 1) / k) ** 0.5).float()  # (I, k)


@register("sasrec-text")
class SASRecText(SASRec):
    """SASRec with the item table ``M = W x~`` computed from item text (module docstring).

    Args:
        encoder: where the text vectors come from when ``item_vectors`` is not given:
            ``"smollm2"`` (pooled hidden states of layer ``layer``) or ``"minilm"``.
        layer: SmolLM2 layer (0-30) whose mean-pooled states are the vectors; the default
            is the better of two layers on ML-100K's ``loo`` validation stage (chapter 12b).
        freeze_items: keep the text vectors fixed (True) or train them from the text (False).
        item_vectors: precomputed (n_items, D) text vectors; then ``encoder`` and ``layer``
            are not used.
        dim, n_layers, n_heads, dropout, max_seq_len, loss, batch_size, learning_rate,
            weight_decay, epochs, patience, eval_every, seed: as for :class:`SASRec`.
    """

    def __init__(self, encoder: str = "smollm2", layer: int = 15, freeze_items: bool = True,
                 item_vectors: torch.Tensor | None = None, n_components: int = 64, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 dropout: float = 0.2, max_seq_len: int = 50, loss: str = "ce", batch_size: int = 128,
                 learning_rate: float = 5e-3, weight_decay: float = 0.0, epochs: int = 30, patience: int = 8,
                 eval_every: int = 2, seed: int = 2020):
        super().__init__(dim=dim, n_layers=n_layers, n_heads=n_heads, dropout=dropout, max_seq_len=max_seq_len,
                         loss=loss, batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
                         epochs=epochs, patience=patience, eval_every=eval_every, seed=seed)
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if not isinstance(freeze_items, bool):
            raise ValueError(f"freeze_items must be True or False, got {freeze_items!r}")
        check_non_negative(layer=layer)
        check_positive(n_components=n_components)
        if item_vectors is not None:
            if not isinstance(item_vectors, torch.Tensor) or item_vectors.ndim != 2:
                raise ValueError("item_vectors must be a 2-d tensor (n_items, D) of text vectors")
            if not torch.isfinite(item_vectors).all():
                raise ValueError("item_vectors holds NaN or infinite values; recompute the text vectors")
        self.text_encoder, self.layer, self.freeze_items, self._given = encoder, int(layer), freeze_items, item_vectors
        self.n_components = n_components

    def text_vectors(self, split: Split) -> torch.Tensor:
        """The (n_items, D) text vectors: the given ones, or computed from the item descriptions."""
        if self._given is not None:
            return self._given
        from genrec_lib.models.llm.representations import text_item_vectors

        return text_item_vectors(split.dataset, self.text_encoder, self.layer)

    def build(self, split: Split) -> None:
        super().build(split)
        del self.M  # the learned ID table is replaced by M = W x~
        x = self.text_vectors(split).float()
        if x.shape[0] != split.n_items:
            raise ValueError(f"item_vectors has {x.shape[0]} rows but the dataset has {split.n_items} items; "
                             "compute one text vector per item of this dataset")
        x_tilde = whiten(x, self.n_components)  # (I, k)
        if self.freeze_items:
            self.register_buffer("x_tilde", x_tilde)
        else:
            self.x_tilde = nn.Parameter(x_tilde)
        self.W = nn.Linear(x_tilde.shape[1], self.dim, bias=False)
        nn.init.normal_(self.W.weight, std=0.02)  # rows of x~ have unit norm: M starts at the ID table's scale

    def item_table(self) -> torch.Tensor:
        M = self.W(self.x_tilde)  # (I, d)
        return torch.cat([M, M.new_zeros(1, self.dim)])  # (I + 1, d), padding row last
