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

from dataclasses import dataclass

import numpy as np
import torch

from genrec_lib.data import Interactions
from genrec_lib.models.base import check_positive
from genrec_lib.models.llm.lora import left_pad

LIKE_THRESHOLD = 4  # ratings >= 4 are likes, as in TALLRec's MovieLens setting
SYSTEM = "You are a movie recommender. Answer with Yes or No."


@dataclass
class Example:
    """One instruction: the user, the target item, the text, and the label (1 = liked)."""

    user: int
    item: int
    instruction: str
    label: int


def item_names(data: Interactions) -> list[str]:
    """"Title (year)" for every item: the short names the instructions use."""
    out = []
    for title, year in zip(data.items["title"], data.items["year"]):
        out.append(f"{title} ({year})" if year is not None and str(year) not in ("<NA>", "nan") else str(title))
    return out


def instruction(liked: list[str], disliked: list[str], candidate: str) -> str:
    """The TALLRec question for one user and one candidate, in plain words."""
    likes = "; ".join(liked) if liked else "nothing yet"
    dislikes = "; ".join(disliked) if disliked else "nothing yet"
    return (f"The user liked these movies: {likes}.\nThe user disliked these movies: {dislikes}.\n"
            f"Will the user like the movie {candidate}?")


def chat_prompt(tokenizer, text: str) -> str:
    """``text`` as a user turn in the model's chat template, ready for the answer."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _user_rows(data: Interactions) -> list[np.ndarray]:
    order = data.temporal_order()
    bounds = np.searchsorted(data.user[order], np.arange(1, data.n_users))
    return np.split(order, bounds)


def _history_text(data: Interactions, rows: np.ndarray, names: list[str]) -> tuple[list[str], list[str]]:
    liked = [names[i] for i, r in zip(data.item[rows], data.rating[rows]) if r >= LIKE_THRESHOLD]
    disliked = [names[i] for i, r in zip(data.item[rows], data.rating[rows]) if r < LIKE_THRESHOLD]
    return liked, disliked


def training_examples(train: Interactions, n: int, n_history: int = 10, seed: int = 2020,
                      users: np.ndarray | None = None) -> list[Example]:
    """``n`` instructions from the training interactions only, balanced Yes/No.

    For a random user (from ``users``, default all) a random position ``t`` with at
    least 3 earlier items is the target; the ``n_history`` items before it form the
    history. Half of the examples are liked targets and half disliked, so that the
    model cannot win by always answering "Yes".
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
        liked, disliked = _history_text(train, rows[max(0, t - n_history):t], names)
        out.append(Example(u, int(train.item[rows[t]]), instruction(liked, disliked, names[train.item[rows[t]]]), label))
    if want[0] or want[1]:
        raise ValueError(f"could not draw {n} balanced examples from {len(pool)} users; ask for fewer")
    return out


def heldout_examples(known: Interactions, heldout: Interactions, n_history: int = 10,
                     users: np.ndarray | None = None) -> list[Example]:
    """One instruction per user for the held-out interaction (e.g. the test item).

    The history is the user's last ``n_history`` known interactions (train, or train +
    validation for the test stage); the label is the held-out rating >= 4.
    """
    names = item_names(known)
    per_user = _user_rows(known)
    held = {int(u): (int(i), float(r)) for u, i, r in zip(heldout.user, heldout.item, heldout.rating)}
    chosen = sorted(held) if users is None else [int(u) for u in users if int(u) in held]
    out = []
    for u in chosen:
        item, rating = held[u]
        liked, disliked = _history_text(known, per_user[u][-n_history:], names)
        out.append(Example(u, item, instruction(liked, disliked, names[item]), int(rating >= LIKE_THRESHOLD)))
    return out


def yes_no_ids(tokenizer) -> tuple[int, int]:
    """The first token of "Yes" and of "No" (what the model writes first in its answer)."""
    yes = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    no = tokenizer("No", add_special_tokens=False)["input_ids"][0]
    if yes == no:
        raise ValueError("the tokenizer gives 'Yes' and 'No' the same first token; cannot score")
    return yes, no


@torch.no_grad()
def yes_no_scores(model, tokenizer, prompts: list[str], batch_size: int = 16) -> np.ndarray:
    """log p(Yes) - log p(No) of the first answer token for each prompt: (N,).

    Prompts are sorted by length and left-padded in batches (position ids skip padding).
    """
    check_positive(batch_size=batch_size)
    yes, no = yes_no_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = np.argsort([len(t) for t in tokens], kind="stable")
    out = np.empty(len(prompts), dtype=np.float64)
    model.eval()
    for first in range(0, len(order), batch_size):
        index = order[first : first + batch_size]
        ids, mask, positions = (t.to(model.device) for t in left_pad([tokens[i] for i in index], pad))
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].float()  # (B, V)
        logp = logits.log_softmax(-1)
        out[index] = (logp[:, yes] - logp[:, no]).cpu().numpy()
    return out


def auc(labels, scores) -> float:
    """Area under the ROC curve: the probability that a random liked pair outscores a disliked one (ties count half)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs at least one positive and one negative label")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
