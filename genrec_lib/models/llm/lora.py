"""LoRA fine-tuning of a causal language model on (prompt, answer) pairs, with ``peft``.

LoRA (Hu et al., ICLR 2022, https://arxiv.org/abs/2106.09685) freezes the pretrained
weight ``W0`` of a projection and learns a low-rank update, ``W = W0 + (alpha / r) B A``
with ``A`` (r, d_in) and ``B`` (d_out, r), ``B`` initialised to zero so training starts at
the pretrained model. The adapters are created, saved and reloaded with Hugging Face
``peft`` (Mangrulkar et al., 2022) in its own format (``adapter_config.json`` +
``adapter_model.safetensors``).

This module is the generic part shared by the fine-tuned recommenders of chapter 12
(:mod:`genrec_lib.models.llm.tallrec`): the loss is the language-modelling loss on the
answer tokens only (the prompt tokens are context, not targets), batched with left
padding, seeded, with a tqdm bar that renders in static HTML (``tqdm.std``).

The prompts of a batch start with the same chat-template tokens (system turn, start of the
user turn). That shared prefix runs once per batch (:func:`forward_shared`) and its
key/value cache serves every example, which is the same computation up to float rounding.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genrec_lib.models.base import check_non_negative, check_positive

#: The projections of a Llama-style block that get adapters (attention query and value, as in LoRA's paper).
DEFAULT_TARGETS = ("q_proj", "v_proj")


@dataclass
class LoRALog:
    """What one :func:`train_lora` run did: loss per step, tokens seen, wall seconds."""

    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def left_pad(token_lists: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token id lists: ids (B, T), attention mask (B, T), position ids (B, T).

    Position ids count real tokens only, so a padded prompt is encoded exactly as the same
    prompt alone; the last column is every sequence's last real token.
    """
    T = max(len(t) for t in token_lists)
    ids = torch.full((len(token_lists), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(token_lists), T, dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        if tokens:
            ids[row, T - len(tokens):] = torch.tensor(tokens)
            mask[row, T - len(tokens):] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids, mask, positions


#: A shared prefix shorter than this runs with the rest of the batch: its own forward pass would not pay.
MIN_SHARED = 8


def shared_length(token_lists: list[list[int]], min_shared: int = MIN_SHARED) -> int:
    """P, the length of the longest common prefix of ``token_lists`` that leaves every list one token or more.

    0 when P < ``min_shared``: the batch then runs whole (:func:`forward_shared` with no prefix).
    """
    first, P = token_lists[0], min(len(t) for t in token_lists) - 1
    for tokens in token_lists[1:]:
        P = next((j for j in range(P) if tokens[j] != first[j]), P)
    return P if P >= min_shared else 0


def forward_shared(model, prefix: dict | None, mask: torch.Tensor, positions: torch.Tensor, **inputs):
    """``model(**inputs)`` on B left-padded rows that all continue the same prefix of P tokens.

    The prefix runs once, batch 1 and with gradients (LoRA changes its keys and values); its
    key/value cache is expanded to the B rows (a view: backward sums the rows' gradients) and
    the rows run on it at positions P, P + 1, ... after their padding. This equals one pass
    over the B whole sequences up to float rounding, at the cost of one prefix instead of B
    (in training, the rows also share the prefix's LoRA dropout mask).

    Args:
        model: a causal LM (or its decoder stack) of transformers 5, which takes ``cache=``.
        prefix: the model's inputs for the prefix, batch 1, e.g. ``{"input_ids": (1, P)}``;
            ``None``: no prefix, one plain pass.
        mask, positions: (B, T) attention mask and position ids of the rows (:func:`left_pad`).
        inputs: the model's inputs for the rows, e.g. ``input_ids=`` (B, T).
    """
    if prefix is None:
        return model(**inputs, attention_mask=mask, position_ids=positions)
    cache = model(**prefix, use_cache=True).cache  # per layer: keys and values (1, heads, P, head_dim)
    B, P = mask.shape[0], cache.get_seq_length()
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys.expand(B, -1, -1, -1), layer.values.expand(B, -1, -1, -1)
    mask = torch.cat([mask.new_ones(B, P), mask], 1)  # (B, P + T): the rows see the whole prefix
    return model(**inputs, cache=cache, attention_mask=mask, position_ids=positions + P, use_cache=True)


def add_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.05, targets=DEFAULT_TARGETS, seed: int = 2020):
    """Wrap ``model`` with fresh LoRA adapters (seeded): a ``peft.PeftModel``."""
    from peft import LoraConfig, get_peft_model

    check_positive(r=r, alpha=alpha)
    check_non_negative(dropout=dropout)
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                        bias="none", task_type="CAUSAL_LM")
    with _quiet_peft():
        return get_peft_model(model, config)


def save_adapter(peft_model, path: str | Path) -> Path:
    """Save only the adapter weights and config in peft's format (a few MB)."""
    path = Path(path)
    # LoRA targets no embedding layer, so none is saved; "auto" would look the base model's
    # config up on the Hub (offline here) and warn that it could not.
    peft_model.save_pretrained(str(path), save_embedding_layers=False)
    return path


def load_adapter(base_model, path: str | Path):
    """Reload adapters saved by :func:`save_adapter` onto ``base_model`` (a fresh, unwrapped model)."""
    from peft import PeftModel

    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{path} holds no peft adapter (adapter_config.json missing); save one with save_adapter()")
    with _quiet_peft():
        return PeftModel.from_pretrained(base_model, str(path))


@contextmanager
def _quiet_peft():
    """peft reads transformers' ``is_gradient_checkpointing``, which transformers 5 deprecates
    with a FutureWarning on every call; the notice concerns peft, not the reader's code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _answer_batch(tokenizer, prompts: list[str], answers: list[str]):
    """The prompts' shared prefix (P ids, :func:`shared_length`) and, left-padded, the rest of each
    prompt + answer: ids, mask, positions (B, T) and labels (B, T), -100 everywhere but the answer."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    answer_ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    P = shared_length(prompt_ids)  # every row keeps its last prompt token, which predicts the answer's first
    ids, mask, positions = left_pad([p[P:] + a for p, a in zip(prompt_ids, answer_ids)], pad)
    y, _, _ = left_pad([[-100] * (len(p) - P) + a for p, a in zip(prompt_ids, answer_ids)], -100)
    return prompt_ids[0][:P], ids, mask, positions, y


def train_lora(peft_model, tokenizer, prompts: list[str], answers: list[str], epochs: int = 2, batch_size: int = 8,
               learning_rate: float = 1e-3, seed: int = 2020, progress: bool = True, desc: str = "LoRA") -> LoRALog:
    """Train the adapters of ``peft_model`` on the answers given the prompts (AdamW, seeded).

    Args:
        prompts, answers: the training pairs (same length); the loss is the mean
            cross-entropy of the answer tokens.
        epochs, batch_size, learning_rate: optimiser settings (the few-shot regime: a few
            hundred pairs, one to three epochs).
        progress: show a tqdm bar (``tqdm.std`` on standard output, which renders in a static notebook).
    """
    if len(prompts) != len(answers) or not prompts:
        raise ValueError(f"need as many answers as prompts (and at least one), got {len(prompts)} and {len(answers)}")
    device = peft_model.device

    def loss_of(index):
        shared, ids, mask, positions, y = _answer_batch(tokenizer, [prompts[i] for i in index], [answers[i] for i in index])
        ids, mask, positions, y = ids.to(device), mask.to(device), positions.to(device), y.to(device)
        prefix = {"input_ids": torch.tensor([shared], device=device), "logits_to_keep": 1} if shared else None
        # the answers fill the last columns (left padding): logits there and one column before suffice
        T = ids.shape[1]
        K = min(int((y >= 0).sum(1).max()) + 1, T)
        logits = forward_shared(peft_model, prefix, mask, positions, input_ids=ids, logits_to_keep=K).logits  # (B, K, V)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), y[:, T - K + 1:].flatten(),
                                                 ignore_index=-100)
        return loss, len(index) * len(shared) + int(mask.sum())

    params = [p for p in peft_model.parameters() if p.requires_grad]
    return optimise(peft_model, [{"params": params, "lr": learning_rate}], len(prompts), loss_of, epochs=epochs,
                    batch_size=batch_size, seed=seed, progress=progress, desc=desc)


def optimise(module, param_groups: list[dict], n_examples: int, loss_of, epochs: int = 1, batch_size: int = 8,
             seed: int = 2020, progress: bool = True, desc: str = "LoRA") -> LoRALog:
    """The training loop every fine-tuned recommender shares: AdamW over shuffled mini-batches, seeded.

    Args:
        module: the model being trained (put in training mode, then back in evaluation mode).
        param_groups: AdamW parameter groups, each with its ``"lr"``.
        n_examples: examples ``0 .. n_examples - 1``, shuffled every epoch.
        loss_of: ``loss_of(index) -> (loss, tokens)`` for a batch of example indices.
        progress: show a tqdm bar (``tqdm.std`` on standard output, which renders in a static notebook).
    """
    check_positive(epochs=epochs, batch_size=batch_size, n_examples=n_examples)
    for group in param_groups:
        check_positive(learning_rate=group["lr"])
    import sys

    from tqdm.std import tqdm

    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(param_groups, weight_decay=0.0)
    log = LoRALog()
    n_steps = epochs * -(-n_examples // batch_size)
    # tqdm.std on stdout: plain text that a static page shows as it is (no widget, no stderr block)
    bar = tqdm(total=n_steps, desc=desc, disable=not progress, mininterval=2.0, file=sys.stdout)
    module.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = generator.permutation(n_examples)
        for first in range(0, n_examples, batch_size):
            loss, tokens = loss_of(order[first : first + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            log.losses.append(float(loss.detach()))
            log.tokens += tokens
            bar.update(1)
            bar.set_postfix(loss=f"{log.losses[-1]:.3f}", refresh=False)
    bar.close()
    module.eval()
    log.seconds = time.perf_counter() - start
    return log
