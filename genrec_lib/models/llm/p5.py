"""P5: sequential recommendation as language, next-item text generated from the history as text.

Geng, Liu, Fu, Ge & Zhang, "Recommendation as Language Processing (RLP): A Unified Pretrain,
Personalized Prompt & Predict Paradigm (P5)", RecSys 2022. https://arxiv.org/abs/2203.13366

P5 writes every recommendation task as text-to-text. Its sequential task reads a user's
recent items as a prompt, ``x_u = "Watched: i_1; ...; i_L. Next?"``, and is trained to
write the next item, ``y = i_{L+1}``, with the language-modelling loss on the target's
tokens only,

    L(theta) = - sum_t log p_theta(y_t | x_u, y_<t).

Items are written either as their titles with the year (``item_repr="title"``: the text
the pretrained model has read about) or as numeric IDs such as ``"item 1234"``
(``item_repr="id"``: P5's own choice, whose meaning the model must learn from the
interactions alone). A candidate ``i`` is scored by the log-likelihood of its text after
the prompt, summed over its tokens or averaged (``reduce``):

    s(u, i) = log p_theta(text(i), END | x_u)     (reduce="sum")

with the prompt's key/value cache shared by all candidates
(:meth:`~genrec_lib.models.llm.lm.LM.score_continuations`). :meth:`P5.generate` instead
writes the next item with a beam search that may only spell catalogue entries
(:class:`~genrec_lib.models.llm.lm.TitleTrie`), so every generated answer is a real item.

Deviations from the paper: SmolLM2-135M-Instruct (decoder-only) with LoRA adapters
instead of a fully fine-tuned T5 encoder-decoder; one task (sequential recommendation)
instead of P5's five task families and their many prompt templates; a few hundred
training examples, each a random position of a random user's *training* sequence,
instead of every position of every sequence; ranking of the ``llmrank`` candidates by
likelihood (P5 ranks by beam search over all items, which :meth:`P5.generate` shows).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from genrec_lib.data import Interactions, Split
from genrec_lib.models.base import Recommender, check_positive, register
from genrec_lib.models.llm.items import item_names

SYSTEM = "Predict the next movie."
ITEM_REPRS = ("title", "id")
REDUCES = ("sum", "mean")


def item_texts(data: Interactions, item_repr: str = "title") -> list[str]:
    """The text of every item: ``"The Godfather (1972)"`` or ``"item 127"`` (the raw MovieLens id)."""
    if item_repr not in ITEM_REPRS:
        raise ValueError(f"unknown item_repr {item_repr!r}; choose one of: {', '.join(ITEM_REPRS)}")
    if item_repr == "title":
        return item_names(data)
    return [f"item {raw}" for raw in data.item_ids]


def prompt(lm, history_texts: list[str]) -> str:
    """The chat prompt ``x_u`` for a history given as item texts (oldest first), ending where the answer starts."""
    watched = "; ".join(history_texts) if history_texts else "nothing yet"
    return lm.chat(f"Watched: {watched}.\nNext?", system=SYSTEM)


def training_pairs(train: Interactions, n: int, n_history: int = 5,
                   seed: int = 2020) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """``n`` (history, next item) pairs from the training interactions only, seeded.

    A user is drawn uniformly among those with at least two training interactions, then a
    position ``t >= 1`` of her training sequence; the history is the (at most)
    ``n_history`` items before ``t`` and the target the item at ``t``.

    Returns:
        users (n,), histories (n lists of item indices, oldest first), targets (n,).
    """
    check_positive(n=n, n_history=n_history)
    rng = np.random.default_rng(seed)
    sequences = train.sequences()
    pool = np.array([u for u, s in enumerate(sequences) if len(s) >= 2])
    if len(pool) == 0:
        raise ValueError("no user has the two training interactions a (history, next item) pair needs")
    users = rng.choice(pool, n)
    histories, targets = [], []
    for u in users:
        s = sequences[u]
        t = int(rng.integers(1, len(s)))
        histories.append(s[max(0, t - n_history):t])
        targets.append(int(s[t]))
    return users, histories, np.array(targets)


@register("llm-p5")
class P5(Recommender):
    """SmolLM2 with LoRA adapters tuned to write a user's next item, ranking ``llmrank`` candidates.

    The defaults are the setting chosen on 100 ``llmrank`` validation users (NDCG@10, one
    seed) among titles or IDs with summed or per-token scores, 256 pairs each.

    Args:
        item_repr: ``"title"`` (titles with years) or ``"id"`` (``"item 1234"``).
        n_examples: (history, next item) pairs drawn from the training split.
        epochs, batch_size, learning_rate: LoRA training (:func:`~genrec_lib.models.llm.lora.train_lora`).
        rank, alpha: LoRA rank r and scale alpha (query and value projections of every layer).
        n_history: most recent items in each prompt (training and scoring alike).
        reduce: ``"sum"`` (log-likelihood of the whole text) or ``"mean"`` (per token:
            long titles are not penalised for their length).
        adapter: a folder of adapters saved by :meth:`save`; when given, nothing is trained.
        model_id: Hugging Face id; default the offline SmolLM2 (or ``$GENREC_LLM``).
        progress: show the training bar.
        seed: seeds the training pairs, the adapters' initialisation and the batch order.
    """

    #: it ranks candidate texts: only the llmrank protocol applies
    protocols = ("llmrank",)

    def __init__(self, item_repr: str = "id", n_examples: int = 256, epochs: int = 1, batch_size: int = 8,
                 learning_rate: float = 2e-3, rank: int = 8, alpha: int = 16, n_history: int = 5, reduce: str = "sum",
                 adapter: str | None = None, model_id: str | None = None, progress: bool = False, seed: int = 2020):
        super().__init__()
        if item_repr not in ITEM_REPRS:
            raise ValueError(f"unknown item_repr {item_repr!r}; choose one of: {', '.join(ITEM_REPRS)}")
        if reduce not in REDUCES:
            raise ValueError(f"unknown reduce {reduce!r}; choose one of: {', '.join(REDUCES)}")
        check_positive(n_examples=n_examples, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       rank=rank, alpha=alpha, n_history=n_history)
        self.item_repr, self.n_examples, self.epochs, self.batch_size = item_repr, n_examples, epochs, batch_size
        self.learning_rate, self.rank, self.alpha, self.n_history = learning_rate, rank, alpha, n_history
        self.reduce, self.adapter, self.model_id, self.progress, self.seed = reduce, adapter, model_id, progress, seed

    def fit(self, split: Split, lm=None, peft_model=None) -> "P5":
        """Train the adapters on pairs from ``split.train`` (or load ``adapter``, or wrap a trained ``peft_model``)."""
        from genrec_lib.models.llm.lm import LM, load_lm
        from genrec_lib.models.llm.lora import add_lora, load_adapter, train_lora

        self.lm = lm if lm is not None else load_lm(self.model_id)
        self.texts = item_texts(split.dataset, self.item_repr)  # (n_items,) item text
        self.data_ = split.dataset
        self.log_ = None
        if peft_model is None:
            base = copy.deepcopy(self.lm.model)  # the shared model stays untouched
            if self.adapter:
                peft_model = load_adapter(base, self.adapter)
            else:
                self.users_, histories, self.targets_ = training_pairs(split.train, self.n_examples, self.n_history,
                                                                      self.seed)
                self.prompts_ = [prompt(self.lm, [self.texts[i] for i in h]) for h in histories]
                peft_model = add_lora(base, r=self.rank, alpha=self.alpha, seed=self.seed)
                self.log_ = train_lora(peft_model, self.lm.tokenizer, self.prompts_,
                                       [self.texts[i] + self.lm.end_text for i in self.targets_], epochs=self.epochs,
                                       batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed,
                                       progress=self.progress, desc="P5 LoRA")
        self.tuned = LM(peft_model, self.lm.tokenizer, f"{self.lm.name} + P5 LoRA ({self.item_repr})", self.lm.device)
        return self

    @property
    def model_name(self) -> str:
        return self.tuned.name

    @property
    def device(self) -> torch.device:
        return self.lm.device if hasattr(self, "lm") else torch.device("cpu")

    def save(self, path) -> None:
        """Save the adapters in peft's format; ``P5(adapter=path).fit(split)`` reloads them."""
        from genrec_lib.models.llm.lora import save_adapter

        self._check_fitted()
        save_adapter(self.tuned.model, path)

    def _check_fitted(self) -> None:
        if not hasattr(self, "tuned"):
            raise ValueError("fit the model first: P5(...).fit(split)")

    def score(self, batch):
        raise NotImplementedError(f"{self.name} ranks candidate texts only; evaluate it with the llmrank protocol "
                                  "(genrec bench --protocol llmrank)")

    def user_prompt(self, history) -> str:
        """The prompt of one user from her history (item indices, oldest first): the last ``n_history`` items."""
        self._check_fitted()
        return prompt(self.tuned, [self.texts[int(i)] for i in list(history)[-self.n_history:]])

    def score_user(self, history, candidates) -> np.ndarray:
        """s(u, i) for each candidate of one user, (C,): the prompt is encoded once and its cache shared."""
        out = self.tuned.score_continuations(self.user_prompt(history),
                                             [self.texts[int(i)] + self.tuned.end_text for i in candidates])
        return (out.sum if self.reduce == "sum" else out.mean).numpy().astype(np.float64)

    def score_candidates(self, task) -> torch.Tensor:
        """(U, C) scores of an ``llmrank`` task's candidates."""
        rows = [self.score_user(h, c) for h, c in zip(task.history, task.candidates)]
        return torch.tensor(np.stack(rows), dtype=torch.float32)

    def generate(self, histories, n: int = 10, exclude=None, batch_size: int = 4) -> list[list[int]]:
        """For each history, up to ``n`` items written by trie-constrained beam search, best first.

        Every answer spells a catalogue entry (titles or ``"item <id>"``); items in
        ``exclude[k]`` (e.g. the user's seen items) are dropped from the k-th list, so
        ``2 n`` items are searched for and the first ``n`` that remain are kept.
        """
        from genrec_lib.models.llm.lm import TitleTrie

        self._check_fitted()
        check_positive(n=n, batch_size=batch_size)
        if not hasattr(self, "trie_"):
            self.trie_ = TitleTrie(self.tuned, self.texts)
        prompts = [self.user_prompt(h) for h in histories]
        exclude = [()] * len(prompts) if exclude is None else [set(map(int, skip)) for skip in exclude]
        if len(exclude) != len(prompts):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(prompts)} histories; give one per history")
        found = self.tuned.generate_constrained(prompts, self.trie_, n=2 * n, batch_size=batch_size)
        return [[i for i in items if i not in skip][:n] for items, skip in zip(found, exclude)]
