"""Retrieval-augmented recommendation: retrieve with embeddings, rerank with an LLM, explain.

After Lewis et al., "Retrieval-Augmented Generation for Knowledge-Intensive NLP Tasks",
NeurIPS 2020 (https://arxiv.org/abs/2005.11401): a generator is given retrieved evidence
instead of relying on what it memorised. Here the pipeline has three steps, each with a
component the book built before:

1. **retrieve**: a full-ranking text model (``minilm-biencoder``, chapter 11) returns each
   user's top ``n_retrieve`` unseen items;
2. **rerank**: a language model ranker (:class:`~genrec_lib.models.llm.rankers.LLMRank`,
   chapter 10) reorders those few candidates by the likelihood of their titles after the
   user's history (its shared prompt cache makes this one prompt per user);
3. **explain**: the LLM writes one sentence on why the user would like the top item, from a
   prompt that holds the user's history and, when ``with_facts``, every film's year and
   genres (the retrieved facts the explanation may use).

Each explanation is then checked automatically
(:func:`~genrec_lib.risks.hallucination.check_explanation`): does it name a film really in
the user's history, a genre the item really has, and does it state a genre or a year that
neither the item nor the history has (a false statement)?
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genrec_lib.data import Split
from genrec_lib.models.base import Recommender, check_positive
from genrec_lib.models.llm.items import item_names
from genrec_lib.models.llm.rankers import LLMRank
from genrec_lib.risks.hallucination import check_explanation, explanation_prompt


def item_facts(data, item: int) -> str:
    """``"1995; Comedy, Drama"``: the year and genres a prompt may state about an item."""
    year = data.items["year"].iloc[item]
    genres = data.items["genres"].iloc[item]
    genres = ", ".join(genres) if isinstance(genres, list) and genres else "unknown genre"
    return f"{int(year)}; {genres}" if pd.notna(year) else genres


def rag_recommend(retriever: Recommender, ranker: LLMRank, split: Split, users, stage: str = "test",
                  n_retrieve: int = 10, n_history: int = 10, with_facts: bool = True, max_new_tokens: int = 48,
                  batch_size: int = 8, seed: int = 2020) -> pd.DataFrame:
    """Run retrieve -> LLM rerank -> explain for ``users`` and check every explanation.

    Args:
        retriever: a fitted full-ranking model.
        ranker: a fitted :class:`LLMRank` (its ``lm`` writes the explanations too).
        users: dense user indices with a held-out item in ``stage``.
        n_retrieve: candidates retrieved per user and reranked by the LLM.
        n_history: most recent history items in the rerank and explanation prompts.
        with_facts: put each film's year and genres into the explanation prompt.
    Returns:
        One row per user: ``target``, ``retrieved`` and ``reranked`` item lists (best first),
        the ``explanation`` of the top reranked item, and the checks' columns
        (``mentions_history``, ``mentions_item_genre``, ``contradicts``, ...).
    """
    from genrec_lib.evaluation.ranking import recommend

    check_positive(n_retrieve=n_retrieve, n_history=n_history, max_new_tokens=max_new_tokens, batch_size=batch_size)
    if not hasattr(ranker, "lm"):
        raise ValueError("fit the LLM ranker first: ranker.fit(split)")
    users = np.asarray(users)
    targets = split.targets(stage)
    if (np.diff(targets.indptr)[users] == 0).any():
        raise ValueError(f"every user needs a held-out item in stage {stage!r}")
    data, names, lm = split.dataset, item_names(split.dataset), ranker.lm
    retrieved = recommend(retriever, split, stage, k=n_retrieve, users=users, seed=seed)  # (U, K)
    sequences = split.input(stage).sequences()
    rows, prompts = [], []
    for u, cand in zip(users, retrieved):
        history = list(sequences[u][-n_history:])
        scores = ranker.score_user(history, cand, int(u))
        reranked = cand[np.argsort(-scores, kind="stable")]
        top = int(reranked[0])
        facts = [item_facts(data, i) for i in history] if with_facts else None
        prompts.append(explanation_prompt(lm, [names[i] for i in history], names[top], history_facts=facts,
                                          item_facts=item_facts(data, top) if with_facts else None))
        rows.append({"user": int(u), "target": int(targets[u].indices[0]), "retrieved": cand.tolist(),
                     "reranked": reranked.tolist(), "history": history, "top": top})
    texts = lm.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    genres, years = data.items["genres"].tolist(), data.items["year"].tolist()
    for row, text in zip(rows, texts):
        h, top = row["history"], row["top"]
        sentence = text.split("\n")[0].strip()
        row["explanation"] = sentence
        row["empty"] = not sentence
        row.update(check_explanation(sentence, [names[i] for i in h], [genres[i] for i in h], genres[top],
                                     item_year=years[top], history_years=[years[i] for i in h]))
    return pd.DataFrame(rows)


def grounding_rates(frame: pd.DataFrame) -> dict[str, float]:
    """Shares of explanations that name a history film, name a true genre of the item, or state something false."""
    if frame.empty:
        raise ValueError("no explanations to check")
    return {"mentions_history": float(frame["mentions_history"].mean()),
            "mentions_item_genre": float(frame["mentions_item_genre"].mean()),
            "grounded": float(frame["grounded"].mean()),
            "states_false": float(frame["contradicts"].mean()),
            "empty": float(frame["empty"].mean())}
