"""A causal language model loaded once, scoring and generating in batches.

How other chapters use this layer
---------------------------------
Every LLM chapter (10-13, 17) goes through these few calls, so that a reader who sets one
option, ``GENREC_LLM=<hub id>`` (or ``load_lm("<hub id>")``), reruns the whole book's LLM
part with another model, on CPU or CUDA (:func:`genrec_lib.training.default_device`):

- ``lm = load_lm()`` loads SmolLM2-135M-Instruct from the offline GGUF asset (de-quantised
  to float32; ~20 s, once per process: the result is cached). ``lm.name`` names the model;
  every printed LLM result says which model produced it.
- ``lm.chat(user, system=..., examples=[(user, assistant), ...])`` renders a prompt in the
  model's chat template, ending where the assistant's answer starts.
- ``lm.score_continuations(prompt, continuations, next_tokens=...)`` scores many
  continuations of one prompt: the prompt is encoded once and its key/value cache is
  shared by every continuation (chapter 10 measures the speed-up over scoring each full
  text separately, :meth:`LM.score_continuations_naive`). It returns the summed and the
  per-token mean log-likelihood of each continuation and, optionally, the log-probability
  of chosen next tokens after it ("Yes"/"No" for pointwise prompts).
- ``lm.generate(prompts, max_new_tokens=...)``: batched greedy generation with a token
  budget; the output is text, parsed (never executed) by the caller.
- ``lm.generate_constrained(prompts, TitleTrie(lm, names), n=k)``: beam search that can
  only spell catalogue titles, so every answer is a real item.
- Item text and matching free text back to items: :mod:`genrec_lib.models.llm.items`;
  rankers built on these calls: :mod:`genrec_lib.models.llm.rankers`; the candidate-ranking
  protocol: :mod:`genrec_lib.evaluation.llmrank`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache

import torch

from genrec_lib.models.base import check_positive


@dataclass
class ContinuationScores:
    """Log-likelihoods of C continuations of one prompt.

    Attributes:
        sum: sum over the continuation's tokens of log p(token | prompt, earlier tokens), (C,).
        n_tokens: tokens per continuation, (C,).
        next_logprobs: log p(t | prompt + continuation) for each requested next token t,
            (C, len(next_tokens)); ``None`` when none were asked for.
    """

    sum: torch.Tensor
    n_tokens: torch.Tensor
    next_logprobs: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        """Per-token mean log-likelihood, (C,)."""
        return self.sum / self.n_tokens.clamp(min=1)


class LM:
    """A causal LM and its tokenizer on one device; build it with :func:`load_lm`."""

    def __init__(self, model, tokenizer, name: str, device: torch.device):
        self.model, self.tokenizer, self.name, self.device = model.eval(), tokenizer, name, torch.device(device)
        self.max_context = int(getattr(model.config, "max_position_embeddings", 2048))
        self.end_id = self.tokenizer.eos_token_id  # "<|im_end|>" for chat models: the end of an answer
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.end_id
        self.end_text = self.tokenizer.eos_token

    def __repr__(self) -> str:
        return f"LM({self.name!r}, device={self.device})"

    # --- text ---------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as it stands (no special tokens added)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def n_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def chat(self, user: str, system: str | None = None, examples=()) -> str:
        """A prompt in the model's chat template, ending where the assistant's reply begins.

        ``examples`` are earlier (user, assistant) turns: in-context demonstrations.
        """
        messages = [{"role": "system", "content": system}] if system else []
        for question, answer in examples:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": user})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def token_id(self, text: str) -> int:
        """The id of ``text`` when it is exactly one token (e.g. "Yes"); a clear error otherwise."""
        ids = self.encode(text)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens for {self.name}; choose a single-token answer word")
        return ids[0]

    # --- scoring ------------------------------------------------------------------------
    def _check_lengths(self, prompt_ids, cont_ids) -> None:
        if not prompt_ids:
            raise ValueError("the prompt is empty; give at least one token of context")
        empty = [i for i, ids in enumerate(cont_ids) if not ids]
        if empty:
            raise ValueError(f"continuation(s) {empty[:5]} are empty strings; every candidate needs text")
        longest = len(prompt_ids) + max(len(ids) for ids in cont_ids)
        if longest > self.max_context:
            raise ValueError(f"prompt + continuation is {longest} tokens, more than {self.name}'s context of "
                             f"{self.max_context}; shorten the history (prompts cut the oldest items first)")

    @torch.no_grad()
    def score_continuations(self, prompt: str | list[int], continuations: list[str], next_tokens: list[int] | None = None,
                            batch_size: int = 32) -> ContinuationScores:
        """Log-likelihood of each continuation given ``prompt``, with the prompt encoded once.

        The prompt's key/value cache is computed once and repeated for every batch of
        continuations (right-padded, so the padding never influences a real token).

        Args:
            prompt: text (or token ids) shared by all continuations.
            continuations: C strings, e.g. candidate titles followed by the end-of-answer token.
            next_tokens: token ids whose log-probability after each continuation is wanted.
            batch_size: continuations per forward pass.
        """
        check_positive(batch_size=batch_size)
        prompt_ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        cont_ids = [self.encode(c) for c in continuations]
        self._check_lengths(prompt_ids, cont_ids)
        out = self.model(torch.tensor([prompt_ids], device=self.device), use_cache=True)
        # transformers 5 names the KV cache `cache` (reading `past_key_values` logs a deprecation)
        cache = out.cache if "cache" in out else out.past_key_values
        first = torch.log_softmax(out.logits[0, -1].float(), -1)  # (V,): predicts each continuation's first token
        P = len(prompt_ids)
        sums, nexts = [], []
        for start in range(0, len(cont_ids), batch_size):
            chunk = cont_ids[start : start + batch_size]
            c, T = len(chunk), max(len(ids) for ids in chunk)
            ids = torch.full((c, T), self.pad_id, dtype=torch.long)
            mask = torch.zeros(c, T, dtype=torch.long)
            for row, tokens in enumerate(chunk):
                ids[row, : len(tokens)] = torch.tensor(tokens)
                mask[row, : len(tokens)] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            shared = copy.deepcopy(cache)  # the forward pass appends to the cache it is given
            shared.batch_repeat_interleave(c)
            attention = torch.cat([torch.ones(c, P, dtype=torch.long, device=self.device), mask], 1)  # (c, P + T)
            logits = self.model(ids, cache=shared, attention_mask=attention, use_cache=True).logits.float()  # (c, T, V)
            sums.append(self._sum_logprobs(first, logits, ids, mask))
            if next_tokens is not None:
                last = mask.sum(1) - 1  # (c,) position of each continuation's last token
                final = torch.log_softmax(logits[torch.arange(c, device=self.device), last], -1)  # (c, V)
                nexts.append(final[:, list(next_tokens)].cpu())
        return ContinuationScores(
            sum=torch.cat(sums),
            n_tokens=torch.tensor([len(ids) for ids in cont_ids]),
            next_logprobs=torch.cat(nexts) if next_tokens is not None else None,
        )

    @staticmethod
    def _sum_logprobs(first: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sum of log p(ids[:, t]) over real tokens; position 0 is predicted by the prompt's last logits."""
        token_lp = torch.empty(ids.shape, device=ids.device)  # (c, T)
        token_lp[:, 0] = first[ids[:, 0]]
        if ids.shape[1] > 1:
            prev = logits[:, :-1]  # (c, T-1, V) predicts tokens 1..T-1
            token_lp[:, 1:] = prev.gather(-1, ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(prev, -1)
        return (token_lp * mask).sum(1).cpu()

    @torch.no_grad()
    def score_continuations_naive(self, prompt: str, continuations: list[str], next_tokens: list[int] | None = None) -> ContinuationScores:
        """The same scores as :meth:`score_continuations`, each prompt + continuation run separately (slow)."""
        prompt_ids = self.encode(prompt)
        cont_ids = [self.encode(c) for c in continuations]
        self._check_lengths(prompt_ids, cont_ids)
        P, sums, nexts = len(prompt_ids), [], []
        for tokens in cont_ids:
            ids = torch.tensor([prompt_ids + tokens], device=self.device)
            logits = self.model(ids, use_cache=False).logits[0].float()  # (P + T, V)
            lp = torch.log_softmax(logits, -1)
            target = torch.tensor(tokens, device=self.device)
            sums.append(lp[P - 1 : P - 1 + len(tokens)].gather(-1, target[:, None]).sum().cpu())
            if next_tokens is not None:
                nexts.append(lp[-1, list(next_tokens)].cpu())
        return ContinuationScores(torch.stack(sums), torch.tensor([len(t) for t in cont_ids]),
                                  torch.stack(nexts) if next_tokens is not None else None)

    # --- generation ---------------------------------------------------------------------
    def _left_padded(self, prompts: list[str]):
        self.tokenizer.padding_side = "left"
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in enc.items()}

    @torch.no_grad()
    def generate(self, prompts: list[str], max_new_tokens: int = 64, batch_size: int = 16) -> list[str]:
        """Greedy continuations of chat prompts (from :meth:`chat`), at most ``max_new_tokens`` each.

        Returns the generated text only (special tokens removed); an empty string when the
        model stopped at once. Callers parse it; nothing generated is ever executed.
        """
        check_positive(max_new_tokens=max_new_tokens, batch_size=batch_size)
        texts = []
        for start in range(0, len(prompts), batch_size):
            enc = self._left_padded(prompts[start : start + batch_size])
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=self.pad_id, eos_token_id=self.end_id,
                                      temperature=None, top_p=None, top_k=None)
            new = out[:, enc["input_ids"].shape[1] :]
            texts += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [t.strip() for t in texts]

    @torch.no_grad()
    def generate_constrained(self, prompts: list[str], trie: "TitleTrie", n: int = 1, batch_size: int = 8) -> list[list[int]]:
        """For each prompt, the ``n`` catalogue items a beam search over ``trie`` finds, best first.

        Every step may only extend a title of the trie, so each answer is a real item
        (no hallucination by construction). ``2 n`` beams are searched and the first ``n``
        distinct items kept; filtering items the user has seen is the caller's job.
        """
        check_positive(n=n, batch_size=batch_size)
        results = []
        for start in range(0, len(prompts), batch_size):
            enc = self._left_padded(prompts[start : start + batch_size])
            P = enc["input_ids"].shape[1]

            def allowed(_, input_ids):
                return trie.allowed(input_ids[P:].tolist())

            beams = 2 * n  # beams may end on the same title; keep the first n distinct items
            out = self.model.generate(**enc, max_new_tokens=trie.depth, do_sample=False, num_beams=beams,
                                      num_return_sequences=beams, prefix_allowed_tokens_fn=allowed,
                                      pad_token_id=self.pad_id, eos_token_id=self.end_id, early_stopping=True,
                                      temperature=None, top_p=None, top_k=None)
            rows = out[:, P:].tolist()
            for i in range(0, len(rows), beams):
                items = [trie.item(tokens) for tokens in rows[i : i + beams]]
                results.append(list(dict.fromkeys(item for item in items if item is not None))[:n])
        return results


class TitleTrie:
    """A prefix tree over the token ids of catalogue titles, each closed by the end token.

    ``allowed(prefix)`` lists the tokens that keep ``prefix`` on the way to some title;
    ``item(tokens)`` maps a finished title back to its item index (the first item with that
    title when several share one).
    """

    def __init__(self, lm: LM, names: list[str], items: list[int] | None = None):
        items = list(range(len(names))) if items is None else list(items)
        if len(items) != len(names):
            raise ValueError(f"got {len(names)} names but {len(items)} item indices")
        self.end_id, self.pad_id = lm.end_id, lm.pad_id
        self.root: dict = {}
        self.depth = 1
        for name, item in zip(names, items):
            tokens = lm.encode(name) + [self.end_id]
            self.depth = max(self.depth, len(tokens))
            node = self.root
            for token in tokens:
                node = node.setdefault(token, {})
            node.setdefault(None, item)  # the leaf stores the item

    def _walk(self, tokens: list[int]):
        node = self.root
        for token in tokens:
            if token not in node:
                return None
            node = node[token]
        return node

    def allowed(self, prefix: list[int]) -> list[int]:
        if self.end_id in prefix:  # title finished: only padding may follow
            return [self.pad_id]
        node = self._walk(prefix)
        return [t for t in node if t is not None] if node else [self.end_id]

    def item(self, tokens: list[int]) -> int | None:
        if self.end_id not in tokens:
            return None
        node = self._walk(tokens[: tokens.index(self.end_id) + 1])
        return None if node is None else node.get(None)


@lru_cache(maxsize=2)
def _load(model_id: str | None, device: str) -> LM:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from genrec_lib.assets import LLM_ENV, SMOLLM2_GGUF, llm_source

    source = {"pretrained_model_name_or_path": model_id} if model_id else llm_source()
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    verbosity, gguf_tqdm = hf_logging.get_verbosity(), gguf_utils.tqdm
    hf_logging.set_verbosity_error()
    gguf_utils.tqdm = lambda iterable, **_: iterable  # the GGUF loader's per-tensor progress bar
    try:
        tokenizer = AutoTokenizer.from_pretrained(**source)
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
        model = AutoModelForCausalLM.from_pretrained(**source, dtype=dtype).to(device)
    finally:
        hf_logging.set_verbosity(verbosity)
        gguf_utils.tqdm = gguf_tqdm
    if "gguf_file" in source:
        name = f"SmolLM2-135M-Instruct ({SMOLLM2_GGUF.split('.')[-2]} GGUF, offline)"
    else:
        name = source["pretrained_model_name_or_path"]
    import os

    if not model_id and os.environ.get(LLM_ENV):
        name = os.environ[LLM_ENV]
    return LM(model, tokenizer, name, torch.device(device))


def load_lm(model_id: str | None = None, device: str | torch.device | None = None) -> LM:
    """The causal LM every LLM chapter uses, loaded once per process and device.

    Args:
        model_id: a Hugging Face model id; default ``$GENREC_LLM`` if set, else the offline
            SmolLM2-135M-Instruct GGUF (:func:`genrec_lib.assets.llm_source`).
        device: default :func:`genrec_lib.training.default_device` (CUDA when available).
    """
    if device is None:
        from genrec_lib.training import default_device

        device = default_device()
    return _load(model_id, str(torch.device(device)))
