"""LLMRank: a language model as a zero- or few-shot ranker of candidate items.

Hou, Zhang, Lin, Lu, Xie, McAuley & Zhao, "Large Language Models are Zero-Shot Rankers for
Recommender Systems", ECIR 2024. https://arxiv.org/abs/2305.08845

The user's history becomes a prompt ("I watched, oldest first: ..."); each candidate is
scored by the language model; the scores rank the candidates of the ``llmrank`` protocol
(:mod:`genrec_lib.evaluation.llmrank`). Scoring rules (``scoring=``):

- ``"likelihood"`` (listwise by likelihood): ``s(i) = log p(title_i, END | prompt_u)``,
  summed over the title's tokens (``reduce="sum"``) or averaged (``"mean"``);
- ``"calibrated"``: ``s(i) = log p(title_i | prompt_u) - log p(title_i | prompt_0)`` with a
  neutral prompt ``prompt_0`` without history: what the history adds to the model's prior
  for the title (a popularity- and length-neutral score);
- ``"pointwise"``: one yes/no question per candidate, ``s(i) = log p(Yes) - log p(No)``.

``n_shots`` adds in-context examples (short histories of other users from the training
data and the item each watched next). ``list_candidates`` puts the numbered candidate
list into the prompt, the paper's setting, which makes the answer depend on the order of
that list (position bias); ``n_orders > 1`` ranks under several random orders and averages
the ranks (the paper's bootstrapping). Prompts longer than ``max_prompt_tokens`` lose
their oldest history items first (``truncated_`` counts how often).

Deviations from the paper: the paper prompts ChatGPT and parses its generated ranking; the
default here scores candidates by likelihood with a small open model (SmolLM2-135M), which
needs no parsing and cannot name an item outside the candidates; generation with parsing is
:func:`rank_by_generation`. Bootstrapping aggregates mean ranks rather than Borda points
(the same order for complete rankings).

``prompt_format="plain"`` is for a pretrained model without a chat template (no system
message, no turns): the prompt is the numbered history list, opened with the tokenizer's own
start token (if it adds one) and ending with the next number, ``"21."``; each candidate is
scored as the continuation ``" title\n"``, the newline playing the part of the end of the
answer. It serves the likelihood and calibrated scores without in-context examples or listed
candidates.
"""

from __future__ import annotations

import numpy as np
import torch

from genrec_lib.data import Split
from genrec_lib.models.base import Recommender, check_non_negative, check_positive, register
from genrec_lib.models.llm.items import TitleMatcher, item_names, parse_list
from genrec_lib.models.llm.lm import LM, load_lm

SYSTEM = "You are a movie recommender."
SCORINGS = ("likelihood", "calibrated", "pointwise")
REDUCES = ("sum", "mean")
PROMPT_FORMATS = ("chat", "plain")


@register("llm-zeroshot")
class LLMRank(Recommender):
    """Rank candidate items by a language model's scores of their titles (see module docstring).

    Args:
        scoring: ``"likelihood"``, ``"calibrated"`` or ``"pointwise"``.
        reduce: ``"sum"`` or ``"mean"`` over a title's tokens (likelihood and calibrated).
        n_history: most recent history items shown (at most the task's ``history_len``).
        n_shots: in-context examples from other users (0 = zero-shot).
        list_candidates: list the candidates in the prompt (order-sensitive).
        n_orders: random candidate orders to average over when ``list_candidates``.
        max_prompt_tokens: longer prompts lose their oldest history items.
        model_id: Hugging Face id; default the offline SmolLM2 (or ``$GENREC_LLM``).
        batch_size: continuations per forward pass.
        seed: seeds the in-context examples and the candidate orders.
        prompt_format: ``"chat"`` (the model's chat template) or ``"plain"`` (a completion
            prompt for a model without one; see the module docstring).
    """

    #: ranks candidate texts only: the leaderboard and ``genrec bench`` use it on ``llmrank``
    protocols = ("llmrank",)

    def __init__(self, scoring: str = "likelihood", reduce: str = "sum", n_history: int = 20, n_shots: int = 0,
                 list_candidates: bool = False, n_orders: int = 1, max_prompt_tokens: int = 1024,
                 model_id: str | None = None, batch_size: int = 32, seed: int = 2020, prompt_format: str = "chat"):
        super().__init__()
        if scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {scoring!r}; choose one of: {', '.join(SCORINGS)}")
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"unknown prompt_format {prompt_format!r}; choose one of: {', '.join(PROMPT_FORMATS)}")
        if prompt_format == "plain" and (scoring == "pointwise" or n_shots or list_candidates):
            raise ValueError("prompt_format='plain' scores titles by likelihood only: use scoring='likelihood' or "
                             "'calibrated', n_shots=0 and list_candidates=False")
        if reduce not in REDUCES:
            raise ValueError(f"unknown reduce {reduce!r}; choose one of: {', '.join(REDUCES)}")
        check_positive(n_history=n_history, n_orders=n_orders, max_prompt_tokens=max_prompt_tokens, batch_size=batch_size)
        check_non_negative(n_shots=n_shots)
        self.scoring, self.reduce, self.n_history, self.n_shots = scoring, reduce, n_history, n_shots
        self.list_candidates, self.n_orders, self.max_prompt_tokens = bool(list_candidates), n_orders, max_prompt_tokens
        self.model_id, self.batch_size, self.seed, self.prompt_format = model_id, batch_size, seed, prompt_format
        self.truncated_ = 0
        self._neutral: dict[int, float] = {}

    # --- fitting: nothing is trained; load the model and the item texts ---------------
    def fit(self, split: Split, lm: LM | None = None) -> "LLMRank":
        self.lm = lm if lm is not None else load_lm(self.model_id)
        self.names = item_names(split.dataset)
        self.data_ = split.dataset
        self.examples_ = self._pick_examples(split) if self.n_shots else []
        return self

    @property
    def model_name(self) -> str:
        return self.lm.name

    @property
    def device(self) -> torch.device:
        return self.lm.device if hasattr(self, "lm") else torch.device("cpu")

    def score(self, batch):
        raise NotImplementedError(f"{self.name} ranks candidate texts only; evaluate it with the llmrank protocol "
                                  "(genrec bench --protocol llmrank)")

    def _pick_examples(self, split: Split) -> list[tuple[int, list[int], int]]:
        """(user, short history, next item) demonstrations from training data of seeded users."""
        rng = np.random.default_rng(self.seed)
        sequences = split.train.sequences()
        pool = [u for u, s in enumerate(sequences) if len(s) >= 6]
        picked = rng.choice(pool, min(len(pool), self.n_shots + 1), replace=False)
        out = []
        for u in picked:
            s = sequences[u]
            cut = int(rng.integers(5, len(s)))  # a random point of the user's training history
            out.append((int(u), list(s[cut - 5 : cut]), int(s[cut])))
        return out

    # --- prompts -------------------------------------------------------------------------
    def history_text(self, history) -> str:
        lines = "\n".join(f"{k + 1}. {self.names[i]}" for k, i in enumerate(history))
        return f"I have watched these movies, oldest first:\n{lines}\n"

    def _candidate_text(self, candidates) -> str:
        lines = "\n".join(f"{k + 1}. {self.names[i]}" for k, i in enumerate(candidates))
        return f"Candidates:\n{lines}\n"

    def _ask(self) -> str:
        if self.list_candidates:
            return "Which candidate should I watch next? Answer with its title."
        return "Recommend one movie I should watch next. Answer with its title."

    def _examples(self, user: int | None):
        shots = [e for e in self.examples_ if e[0] != user][: self.n_shots]
        return [(self.history_text(h) + self._ask(), self.names[nxt]) for _, h, nxt in shots]

    def _start(self) -> str:
        """The special tokens the tokenizer puts before a text of its own accord (Gemma's ``<bos>``; none for SmolLM2)."""
        return self.lm.tokenizer.decode(self.lm.tokenizer("")["input_ids"])

    def _plain(self, history) -> str:
        """The completion prompt: the numbered history, ending with the next number."""
        if not history:
            return f"{self._start()}I have watched these movies, oldest first:\n1."
        return f"{self._start()}{self.history_text(history)}{len(history) + 1}."

    def continuation(self, item: int) -> str:
        """The text scored for a candidate: its title and the end of the answer."""
        if self.prompt_format == "plain":
            return f" {self.names[item]}\n"
        return self.names[item] + self.lm.end_text

    def prompt(self, history, candidates=None, user: int | None = None) -> str:
        """The prompt for one user; the oldest history items go first when it is too long."""
        history = list(history)[-self.n_history :]
        while True:
            body = self.history_text(history) if history else "I have not watched any movies yet.\n"
            if self.list_candidates and candidates is not None:
                body += self._candidate_text(candidates)
            if self.prompt_format == "plain":
                text = self._plain(history)
            else:
                text = self.lm.chat(body + self._ask(), system=SYSTEM, examples=self._examples(user))
            if self.lm.n_tokens(text) <= self.max_prompt_tokens or len(history) <= 1:
                return text
            history = history[1:]
            self.truncated_ += 1

    def neutral_prompt(self) -> str:
        """The same request without any history: the model's prior over titles."""
        if self.prompt_format == "plain":
            return self._plain([])
        return self.lm.chat("Recommend one movie I should watch. Answer with its title.", system=SYSTEM)

    def _pointwise_parts(self, history, user) -> tuple[str, list[str]]:
        """Shared prefix (history, user turn left open) and, per candidate, the question + answer cue."""
        slot = "\u0000SLOT\u0000"
        body = self.history_text(list(history)[-self.n_history :])
        text = self.lm.chat(body + slot, system=SYSTEM, examples=self._examples(user))
        prefix, suffix = text.split(slot)
        return prefix, suffix

    # --- scoring -------------------------------------------------------------------------
    def _reduce(self, scores) -> torch.Tensor:
        return scores.sum if self.reduce == "sum" else scores.mean

    def neutral_scores(self, items) -> np.ndarray:
        """log p(title | neutral prompt) per item (computed once per item and cached)."""
        missing = [int(i) for i in dict.fromkeys(np.asarray(items).tolist()) if int(i) not in self._neutral]
        if missing:
            out = self.lm.score_continuations(self.neutral_prompt(), [self.continuation(i) for i in missing],
                                              batch_size=self.batch_size)
            for i, value in zip(missing, self._reduce(out).tolist()):
                self._neutral[i] = value
        return np.array([self._neutral[int(i)] for i in items])

    def score_user(self, history, candidates, user: int | None = None, order=None) -> np.ndarray:
        """Scores (C,) of ``candidates`` for one user; ``order`` permutes the listed candidates."""
        candidates = np.asarray(candidates)
        if self.scoring == "pointwise":
            prefix, suffix = self._pointwise_parts(history, user)
            yes, no = self.lm.token_id("Yes"), self.lm.token_id("No")
            questions = [f"Candidate: {self.names[i]}\nWould I enjoy it? Answer Yes or No.{suffix}" for i in candidates]
            out = self.lm.score_continuations(prefix, questions, next_tokens=[yes, no], batch_size=self.batch_size)
            return (out.next_logprobs[:, 0] - out.next_logprobs[:, 1]).numpy()
        listed = candidates if order is None else candidates[np.asarray(order)]
        prompt = self.prompt(history, listed, user)
        out = self.lm.score_continuations(prompt, [self.continuation(i) for i in candidates],
                                          batch_size=self.batch_size)
        scores = self._reduce(out).numpy()
        if self.scoring == "calibrated":
            scores = scores - self.neutral_scores(candidates)
        return scores

    def score_candidates(self, task) -> torch.Tensor:
        """(U, C) scores of the task's candidates; with ``n_orders > 1``, minus the mean rank over orders."""
        rng = np.random.default_rng(self.seed)
        rows = []
        for user, history, candidates in zip(task.users, task.history, task.candidates):
            if self.list_candidates and self.n_orders > 1:
                ranks = []
                for _ in range(self.n_orders):
                    s = self.score_user(history, candidates, int(user), order=rng.permutation(len(candidates)))
                    ranks.append((-s).argsort().argsort())  # 0 = best under this order
                rows.append(-np.mean(ranks, 0))
            else:
                rows.append(self.score_user(history, candidates, int(user)))
        return torch.tensor(np.stack(rows), dtype=torch.float32)


@register("llm-calibrated")
class LLMRankCalibrated(LLMRank):
    """LLMRank with the calibrated score log p(title | history) - log p(title | no history)."""

    def __init__(self, scoring: str = "calibrated", **kwargs):
        super().__init__(scoring=scoring, **kwargs)


@register("llm-pointwise")
class LLMRankPointwise(LLMRank):
    """LLMRank with one yes/no question per candidate: log p(Yes) - log p(No)."""

    def __init__(self, scoring: str = "pointwise", **kwargs):
        super().__init__(scoring=scoring, **kwargs)


@register("llm-fewshot")
class LLMRankFewShot(LLMRank):
    """LLMRank with two in-context examples drawn from other users' training histories."""

    def __init__(self, n_shots: int = 2, **kwargs):
        super().__init__(n_shots=n_shots, **kwargs)


def rank_by_generation(ranker: LLMRank, task, max_new_tokens: int = 80, n_ranked: int = 5, batch_size: int = 16):
    """Listwise ranking by free generation: the model writes the candidates' titles in order.

    The prompt lists the candidates (``ranker``'s history and template) and asks for the
    ``n_ranked`` best, one per line. Each line is matched to a catalogue item
    (:class:`~genrec_lib.models.llm.items.TitleMatcher`); candidates named get scores by
    their position, the others ``-inf`` (ranked after, at random).

    Returns:
        ``(scores (U, C) tensor, stats)`` where ``stats`` counts users with an empty or
        unparseable answer, lines naming no catalogue item (hallucinations), lines naming a
        real item that is not a candidate, and the raw texts.
    """
    check_positive(max_new_tokens=max_new_tokens, n_ranked=n_ranked)
    if not hasattr(ranker, "data_"):
        raise ValueError("fit the ranker first: ranker.fit(split) with the task's split")
    matcher = TitleMatcher(ranker.data_)
    ask = (f"Rank the candidates for me: write the titles of the {n_ranked} I am most likely to watch next, "
           "best first, one per line, nothing else.")
    prompts = []
    for user, history, candidates in zip(task.users, task.history, task.candidates):
        body = ranker.history_text(list(history)[-ranker.n_history :]) + ranker._candidate_text(candidates)
        prompts.append(ranker.lm.chat(body + ask, system=SYSTEM))
    texts = ranker.lm.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    scores = torch.full(task.candidates.shape, float("-inf"))
    stats = {"users": len(texts), "empty": 0, "lines": 0, "not_in_catalogue": 0, "not_a_candidate": 0, "texts": texts}
    for row, (text, candidates) in enumerate(zip(texts, task.candidates)):
        entries = parse_list(text, max_items=n_ranked)
        if not entries:
            stats["empty"] += 1
        position = {int(c): k for k, c in enumerate(candidates)}
        for rank, entry in enumerate(entries):
            stats["lines"] += 1
            item = matcher.match(entry)
            if item is None:
                stats["not_in_catalogue"] += 1
            elif item not in position:
                stats["not_a_candidate"] += 1
            elif scores[row, position[item]] == float("-inf"):
                scores[row, position[item]] = float(n_ranked - rank)
    return scores, stats
