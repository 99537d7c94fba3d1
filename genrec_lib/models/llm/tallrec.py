"""TALLRec: instruction-tuning a language model to answer "will the user like it?".

Bao, Zhang, Zhang, Wang, Feng & He, "TALLRec: An Effective and Efficient Tuning Framework
to Align Large Language Model with Recommendation", RecSys 2023.
https://arxiv.org/abs/2305.00447

Each training example is an instruction built from one user's *training* interactions
in time order: the items rated before a target item, split into liked (rating >= 4) and
disliked ones, and the question whether the user will like the target; the answer is
"Yes" or "No". LoRA adapters (:mod:`genrec_lib.models.llm.lora`) are trained on a few
hundred such examples (the paper's few-shot setting). The recommender's score for a
candidate is the log-odds of the first answer token,

    s(u, i) = log p("Yes" | x_{u,i}) - log p("No" | x_{u,i}),

which ranks candidates and gives the AUC of the paper's evaluation.

Deviations from the paper: SmolLM2-135M-Instruct instead of LLaMA-7B; the model's own
chat template instead of the Alpaca template; no Alpaca instruction-tuning stage before
the recommendation tuning (the model is already instruction-tuned); histories of at most
``n_history`` titles with years.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from genrec_lib.data import Interactions, Split
from genrec_lib.models.base import Recommender, check_positive, register
from genrec_lib.models.llm.items import item_names

LIKE_THRESHOLD = 4  # ratings >= 4 are likes, as in TALLRec's MovieLens setting
SYSTEM = "You are a movie recommender. Answer with Yes or No."
_SLOT = "\x00"  # where the candidate goes in the instruction


@dataclass
class Example:
    """One instruction: the user, the target item, its text in two parts, and the label (1 = liked).

    ``prefix`` is the chat prompt up to the candidate and ``continuation`` the candidate
    plus the rest of the template, so that many candidates of one user share the
    prefix's key/value cache (:meth:`genrec_lib.models.llm.lm.LM.score_continuations`).
    """

    user: int
    item: int
    prefix: str
    continuation: str
    label: int

    @property
    def prompt(self) -> str:
        return self.prefix + self.continuation


QUESTIONS = {"like": "Will the user like the movie", "next": "Will the user watch next the movie"}


def instruction(liked: list[str], disliked: list[str], candidate: str, task: str = "like") -> str:
    """The TALLRec question for one user and one candidate, in plain words.

    ``task="like"`` asks whether the user will like it (the paper's rating task);
    ``"next"`` whether she will watch it next (the candidate-ranking task).
    """
    if task not in QUESTIONS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(QUESTIONS)}")
    likes = "; ".join(liked) if liked else "nothing yet"
    dislikes = "; ".join(disliked) if disliked else "nothing yet"
    return (f"The user liked these movies: {likes}.\nThe user disliked these movies: {dislikes}.\n"
            f"{QUESTIONS[task]} {candidate}?")


def split_prompt(lm, liked: list[str], disliked: list[str], task: str = "like") -> tuple[str, str]:
    """The chat prompt cut at the candidate: (prefix, suffix); a candidate c gives prefix + " " + c + suffix."""
    text = lm.chat(instruction(liked, disliked, _SLOT, task), system=SYSTEM)
    prefix, suffix = text.split(" " + _SLOT)
    return prefix, suffix


def _user_rows(data: Interactions) -> list[np.ndarray]:
    order = data.temporal_order()
    bounds = np.searchsorted(data.user[order], np.arange(1, data.n_users))
    return np.split(order, bounds)


def _history(data: Interactions, rows: np.ndarray, names: list[str]) -> tuple[list[str], list[str]]:
    liked = [names[i] for i, r in zip(data.item[rows], data.rating[rows]) if r >= LIKE_THRESHOLD]
    disliked = [names[i] for i, r in zip(data.item[rows], data.rating[rows]) if r < LIKE_THRESHOLD]
    return liked, disliked


def training_examples(lm, train: Interactions, n: int, n_history: int = 8, seed: int = 2020,
                      users: np.ndarray | None = None) -> list[Example]:
    """``n`` instructions from the training interactions only, half liked and half disliked targets.

    For a random user (from ``users``, default all) a random position ``t`` with at least
    three earlier items is the target; the ``n_history`` items before it form the history.
    Balancing the labels keeps the model from winning by always answering "Yes".
    """
    check_positive(n=n, n_history=n_history)
    rng = np.random.default_rng(seed)
    names = item_names(train)
    per_user = _user_rows(train)
    pool = np.arange(train.n_users) if users is None else np.asarray(users)
    pool = np.array([u for u in pool if len(per_user[u]) >= 4])
    if len(pool) == 0:
        raise ValueError("no user has the four training interactions an instruction needs")
    out, want = [], {1: n - n // 2, 0: n // 2}
    for _ in range(50 * n):
        if not want[0] and not want[1]:
            break
        u = int(rng.choice(pool))
        rows = per_user[u]
        t = int(rng.integers(3, len(rows)))
        label = int(train.rating[rows[t]] >= LIKE_THRESHOLD)
        if not want[label]:
            continue
        want[label] -= 1
        prefix, suffix = split_prompt(lm, *_history(train, rows[max(0, t - n_history):t], names))
        item = int(train.item[rows[t]])
        out.append(Example(u, item, prefix, f" {names[item]}{suffix}", label))
    if want[0] or want[1]:
        raise ValueError(f"could not draw {n} balanced examples from {len(pool)} users; ask for fewer")
    return out


def heldout_examples(lm, inputs: Interactions, heldout: Interactions, n_history: int = 8,
                     users: np.ndarray | None = None) -> list[Example]:
    """One instruction per user for the held-out interaction (e.g. the test item).

    The history is the user's last ``n_history`` input interactions (``split.input(stage)``:
    under ``loo`` only those strictly before the held-out one); the label is the held-out
    rating >= 4.
    """
    names = item_names(inputs)
    per_user = _user_rows(inputs)
    held = {int(u): (int(i), float(r)) for u, i, r in zip(heldout.user, heldout.item, heldout.rating)}
    chosen = sorted(held) if users is None else [int(u) for u in users if int(u) in held]
    out = []
    for u in chosen:
        item, rating = held[u]
        prefix, suffix = split_prompt(lm, *_history(inputs, per_user[u][-n_history:], names))
        out.append(Example(u, item, prefix, f" {names[item]}{suffix}", int(rating >= LIKE_THRESHOLD)))
    return out


def yes_no_scores(lm, prefix: str, continuations: list[str]) -> np.ndarray:
    """log p(Yes) - log p(No) for each candidate continuation of one prefix: (C,).

    The prefix is encoded once and its cache shared by the candidates.
    """
    scores = lm.score_continuations(prefix, continuations, next_tokens=[lm.token_id("Yes"), lm.token_id("No")])
    logp = scores.next_logprobs  # (C, 2)
    return (logp[:, 0] - logp[:, 1]).numpy().astype(np.float64)


def score_examples(lm, examples: list[Example], progress: bool = False, batch_size: int = 8) -> np.ndarray:
    """:func:`yes_no_scores` of every example: (N,) log-odds of "Yes".

    Examples that share a prefix (one user's candidates) share its cache; the others, one
    question per user as in the held-out pairs, run ``batch_size`` at a time
    (:func:`_yes_no_batch`), since one forward pass over a batch reads the weights once where
    one pass per question reads them for each.
    """
    import sys

    from tqdm.std import tqdm

    check_positive(batch_size=batch_size)
    out = np.empty(len(examples))
    groups: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        groups.setdefault(example.prefix, []).append(index)
    alone = [index[0] for index in groups.values() if len(index) == 1]
    shared = [(prefix, index) for prefix, index in groups.items() if len(index) > 1]
    with tqdm(total=len(examples), desc="scoring", disable=not progress, mininterval=2.0, file=sys.stdout) as bar:
        for start in range(0, len(alone), batch_size):
            index = alone[start : start + batch_size]
            out[index] = _yes_no_batch(lm, [examples[i] for i in index])
            bar.update(len(index))
        for prefix, index in shared:
            out[index] = yes_no_scores(lm, prefix, [examples[i].continuation for i in index])
            bar.update(len(index))
    return out


def _yes_no_batch(lm, examples: list[Example]) -> np.ndarray:
    """log p(Yes) - log p(No) after each example's whole prompt, B prompts in one forward pass: (B,).

    The prompts are tokenised as :meth:`~genrec_lib.models.llm.lm.LM.score_continuations`
    tokenises them (prefix and continuation apart) and left-padded; their common chat-template
    start runs once (:func:`~genrec_lib.models.llm.lora.forward_shared`). The same scores as
    :func:`yes_no_scores` up to float rounding.
    """
    from genrec_lib.models.llm.lora import forward_shared, left_pad, shared_length

    token_lists = []
    for e in examples:
        prefix_ids, continuation_ids = lm.encode(e.prefix), lm.encode(e.continuation)
        lm._check_lengths(prefix_ids, [continuation_ids])  # the clear errors score_continuations gives
        token_lists.append(prefix_ids + continuation_ids)
    P = shared_length(token_lists)
    ids, mask, positions = (t.to(lm.device) for t in left_pad([t[P:] for t in token_lists], lm.pad_id))
    prefix = {"input_ids": torch.tensor([token_lists[0][:P]], device=lm.device), "logits_to_keep": 1} if P else None
    with torch.no_grad():
        logits = forward_shared(lm.model, prefix, mask, positions, input_ids=ids, logits_to_keep=1).logits  # (B, 1, V)
    logp = torch.log_softmax(logits[:, -1].float(), -1)[:, [lm.token_id("Yes"), lm.token_id("No")]]  # (B, 2)
    return (logp[:, 0] - logp[:, 1]).cpu().numpy().astype(np.float64)


def auc(labels, scores) -> float:
    """Area under the ROC curve: the probability that a random liked pair outscores a disliked one (ties count half).

    Labels are 1 (liked) and 0 (disliked); computed by scikit-learn's ``roc_auc_score``.
    """
    from sklearn.metrics import roc_auc_score

    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"AUC needs 0/1 labels with one score each, got labels {labels.shape} and scores {scores.shape}")
    if (labels == 1).sum() == 0 or (labels == 0).sum() == 0:
        raise ValueError("AUC needs at least one positive and one negative label")
    return float(roc_auc_score(labels, scores))


# --- the recommender: TALLRec tuned for the llmrank candidate protocol --------------------

TASKS = ("like", "next", "both")


def ranking_examples(lm, train: Interactions, n: int, n_history: int = 8, seed: int = 2020) -> list[Example]:
    """``n`` instructions for candidate ranking, from the training interactions only.

    Half ask about a user's actual next item (label Yes), half about an item drawn
    uniformly from those the user never interacted with in training (label No): the
    distinction the ``llmrank`` candidates test. Histories are as in :func:`training_examples`.
    """
    check_positive(n=n, n_history=n_history)
    rng = np.random.default_rng(seed)
    names = item_names(train)
    per_user = _user_rows(train)
    pool = np.array([u for u in range(train.n_users) if len(per_user[u]) >= 4])
    seen = train.csr()
    out = []
    for k in range(n):
        u = int(rng.choice(pool))
        rows = per_user[u]
        t = int(rng.integers(3, len(rows)))
        if k % 2 == 0:
            item, label = int(train.item[rows[t]]), 1
        else:
            item, label = int(rng.integers(train.n_items)), 0
            while seen[u, item]:
                item = int(rng.integers(train.n_items))
        prefix, suffix = split_prompt(lm, *_history(train, rows[max(0, t - n_history):t], names), task="next")
        out.append(Example(u, item, prefix, f" {names[item]}{suffix}", label))
    return out


@register("llm-tallrec")
class TALLRec(Recommender):
    """SmolLM2 with LoRA adapters tuned on TALLRec instructions, ranking ``llmrank`` candidates.

    Args:
        task: ``"next"`` (Yes for the user's actual next item, No for an item she never
            interacted with: the distinction ``llmrank`` tests), ``"like"`` (the paper's
            rating task: Yes for ratings >= 4, No below) or ``"both"`` (default: half of
            the instructions of each kind, one adapter for both questions). Candidates are
            ranked with the "next" question unless ``task="like"``.
        n_examples: instructions drawn from the training split (the few-shot budget).
        epochs, batch_size, learning_rate: LoRA training (:func:`~genrec_lib.models.llm.lora.train_lora`).
        rank, alpha: LoRA rank r and scale alpha.
        n_history: most recent history items in each instruction.
        adapter: a folder of adapters saved by :meth:`save`; when given, nothing is trained.
        model_id: Hugging Face id; default the offline SmolLM2 (or ``$GENREC_LLM``).
        progress: show the training bar.
    """

    #: it ranks candidate texts: only the llmrank protocol applies
    protocols = ("llmrank",)

    def __init__(self, task: str = "both", n_examples: int = 256, epochs: int = 1, batch_size: int = 8,
                 learning_rate: float = 1e-3, rank: int = 8, alpha: int = 16, n_history: int = 8,
                 adapter: str | None = None, model_id: str | None = None, progress: bool = False, seed: int = 2020):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        check_positive(n_examples=n_examples, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       rank=rank, alpha=alpha, n_history=n_history)
        self.task, self.n_examples, self.epochs, self.batch_size = task, n_examples, epochs, batch_size
        self.learning_rate, self.rank, self.alpha, self.n_history = learning_rate, rank, alpha, n_history
        self.adapter, self.model_id, self.progress, self.seed = adapter, model_id, progress, seed

    def examples(self, lm, split: Split) -> list[Example]:
        """The instructions this model trains on, drawn from ``split.train`` only."""
        n, h, seed = self.n_examples, self.n_history, self.seed
        if self.task == "like":
            return training_examples(lm, split.train, n, n_history=h, seed=seed)
        if self.task == "next":
            return ranking_examples(lm, split.train, n, n_history=h, seed=seed)
        return (training_examples(lm, split.train, n // 2, n_history=h, seed=seed)
                + ranking_examples(lm, split.train, n - n // 2, n_history=h, seed=seed + 1))

    def fit(self, split: Split, lm=None, peft_model=None) -> "TALLRec":
        """Train the adapters (or load ``adapter``, or wrap an already trained ``peft_model``)."""
        from genrec_lib.models.llm.lm import LM, load_lm
        from genrec_lib.models.llm.lora import add_lora, load_adapter, train_lora

        self.lm = lm if lm is not None else load_lm(self.model_id)
        base = None if peft_model is not None else copy.deepcopy(self.lm.model)  # the shared model stays untouched
        self.log_ = None
        if peft_model is not None:
            pass
        elif self.adapter:
            peft_model = load_adapter(base, self.adapter)
        else:
            self.examples_ = self.examples(self.lm, split)
            peft_model = add_lora(base, r=self.rank, alpha=self.alpha, seed=self.seed)
            self.log_ = train_lora(peft_model, self.lm.tokenizer, [e.prompt for e in self.examples_],
                                   ["Yes" if e.label else "No" for e in self.examples_], epochs=self.epochs,
                                   batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed,
                                   progress=self.progress, desc="TALLRec LoRA")
        self.tuned = LM(peft_model, self.lm.tokenizer, f"{self.lm.name} + TALLRec LoRA", self.lm.device)
        self.names = item_names(split.dataset)
        d = split.dataset
        self._ratings = sp.csr_matrix((d.rating, (d.user, d.item)), shape=(d.n_users, d.n_items))
        return self

    @property
    def model_name(self) -> str:
        return self.tuned.name

    def save(self, path) -> None:
        """Save the adapters in peft's format; ``TALLRec(adapter=path).fit(split)`` reloads them."""
        from genrec_lib.models.llm.lora import save_adapter

        save_adapter(self.tuned.model, path)

    def score(self, batch):
        raise NotImplementedError(f"{self.name} ranks candidate texts only; evaluate it with the llmrank protocol "
                                  "(genrec bench --protocol llmrank)")

    def score_user(self, user: int, history, candidates) -> np.ndarray:
        """log p(Yes) - log p(No) for each candidate of one user: (C,)."""
        history = [int(i) for i in list(history)[-self.n_history:]]
        ratings = self._ratings[user, history].toarray().ravel() if history else np.array([])
        liked = [self.names[i] for i, r in zip(history, ratings) if r >= LIKE_THRESHOLD]
        disliked = [self.names[i] for i, r in zip(history, ratings) if r < LIKE_THRESHOLD]
        prefix, suffix = split_prompt(self.tuned, liked, disliked, task="like" if self.task == "like" else "next")
        return yes_no_scores(self.tuned, prefix, [f" {self.names[i]}{suffix}" for i in candidates])

    def score_candidates(self, task) -> torch.Tensor:
        """(U, C) scores of an ``llmrank`` task's candidates."""
        rows = [self.score_user(int(u), h, c) for u, h, c in zip(task.users, task.history, task.candidates)]
        return torch.tensor(np.stack(rows), dtype=torch.float32)
