"""Item vectors from a language model's hidden states over item text (chapter 12b).

A causal LM reads an item's line of text ("Toy Story (1995): Animation, Children's,
Comedy") and leaves a hidden state ``h^(l)_t`` in R^d at every layer ``l`` and token ``t``.
Pooling one layer's states over the text's tokens gives one vector per item,

    e_i = 1/T_i sum_t h^(l)_t          (``pooling="mean"``), or  e_i = h^(l)_{T_i}  (``"last"``),

computed once, batched and without gradients. Which layer is best is an empirical question:
the last layers specialise in predicting the next token, and middle layers often carry the
more general features, so chapter 12b chooses on validation. The forward pass stops at the
deepest layer asked for, so a middle layer costs about half a full pass.

Sentence encoders (:mod:`genrec_lib.text_encoders`, all-MiniLM-L6-v2) are trained to make
such pooled vectors comparable; a generative LM is not, which is why its vectors are
standardised and passed through a learned projection before use
(:class:`genrec_lib.models.sasrec_text.SASRecText`).
"""

from __future__ import annotations

import torch

from genrec_lib.data import Interactions
from genrec_lib.text_encoders import batches_by_length, mean_pool

POOLINGS = ("mean", "last")
ENCODERS = ("smollm2", "minilm")


class _Enough(Exception):
    """Raised by a forward hook once the deepest requested layer has run."""


def _decoder(lm):
    base = getattr(lm.model, "model", None)
    if base is None or not hasattr(base, "layers") or not hasattr(base, "embed_tokens"):
        raise ValueError(f"{lm.name} has no decoder stack at .model.layers; hidden_state_vectors needs a "
                         "Llama-style causal LM such as SmolLM2")
    return base


def n_layers(lm) -> int:
    """Number of transformer blocks of ``lm`` (30 for SmolLM2-135M)."""
    return len(_decoder(lm).layers)


@torch.no_grad()
def hidden_state_vectors(lm, texts: list[str], layers=(15,), pooling: str = "mean",
                         batch_size: int = 64) -> dict[int, torch.Tensor]:
    """Pooled hidden states of ``lm`` over each text, for each requested layer.

    Layer ``l`` is what transformers reports as ``hidden_states[l]``: 0 the token
    embeddings, ``l`` the output of block ``l``, and the last one after the final norm.
    Blocks deeper than ``max(layers)`` are never run.

    Args:
        lm: an :class:`~genrec_lib.models.llm.lm.LM` (:func:`~genrec_lib.models.llm.lm.load_lm`).
        texts: N item texts, e.g. :func:`~genrec_lib.models.llm.items.item_descriptions`.
        layers: layer indices in ``0..n_layers(lm)``.
        pooling: ``"mean"`` over the text's tokens, or the ``"last"`` token's state.
        batch_size: texts per forward pass (texts of similar length are batched together).

    Returns:
        ``{layer: (N, d) float32 CPU tensor}``.
    """
    base = _decoder(lm)
    L = len(base.layers)
    layers = sorted({int(layer) for layer in layers})
    if not layers or layers[0] < 0 or layers[-1] > L:
        raise ValueError(f"layers must be in 0..{L} for {lm.name} (0: token embeddings, {L}: the last block), "
                         f"got {layers}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size!r}")
    texts = list(texts)
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ValueError("texts must be a non-empty list of non-empty strings (one line of text per item)")
    deepest = layers[-1]
    captured: dict[int, torch.Tensor] = {}

    def keep(layer):
        def hook(_, __, output):
            state = output[0] if isinstance(output, tuple) else output
            captured[layer] = base.norm(state) if layer == L else state  # (B, T, d)
            if layer == deepest:
                raise _Enough
        return hook

    modules = {layer: base.embed_tokens if layer == 0 else base.layers[layer - 1] for layer in layers}
    handles = [modules[layer].register_forward_hook(keep(layer)) for layer in layers]
    lm.tokenizer.padding_side = "right"  # real tokens first: causal attention never sees the padding
    out = {layer: [None] * len(texts) for layer in layers}
    try:
        for index in batches_by_length(texts, batch_size):
            enc = lm.tokenizer([texts[i] for i in index], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(lm.device) for k, v in enc.items()}
            try:
                base(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], use_cache=False)
            except _Enough:
                pass
            mask = enc["attention_mask"]  # (B, T)
            last = mask.sum(1) - 1  # (B,) position of each text's last token
            for layer in layers:
                H = captured[layer].float()  # (B, T, d)
                pooled = mean_pool(H, mask) if pooling == "mean" else H[torch.arange(len(index)), last]  # (B, d)
                for row, i in enumerate(index):
                    out[layer][i] = pooled[row].cpu()
    finally:
        for handle in handles:
            handle.remove()
    return {layer: torch.stack(rows) for layer, rows in out.items()}


def text_item_vectors(data: Interactions, encoder: str = "smollm2", layer: int = 15, pooling: str = "mean",
                      batch_size: int = 64) -> torch.Tensor:
    """One vector per item of ``data`` from its description, (n_items, d).

    ``encoder="smollm2"``: pooled hidden states of layer ``layer`` of the book's LLM
    (:func:`hidden_state_vectors`, d = 576); ``"minilm"``: all-MiniLM-L6-v2 sentence
    embeddings of the same texts (d = 384; ``layer`` and ``pooling`` do not apply).
    """
    from genrec_lib.models.llm.items import item_descriptions

    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    texts = item_descriptions(data)
    if encoder == "minilm":
        from genrec_lib.text_encoders import encode_texts

        return encode_texts(texts, batch_size=batch_size)
    from genrec_lib.models.llm.lm import load_lm

    return hidden_state_vectors(load_lm(), texts, (layer,), pooling, batch_size)[layer]
