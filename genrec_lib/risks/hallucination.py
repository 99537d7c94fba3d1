"""Hallucination and grounding of LLM recommendations and explanations, checked automatically.

An LLM recommender that *generates* titles can name films that do not exist (or not in
this catalogue); one that *explains* a recommendation can cite things the user never did
or facts the item does not have (Ji et al. 2023). The checks here are deliberately
simple, transparent string rules over the item metadata, so that a reader can see why an
explanation passed or failed; chapter 17 measures how far an LLM judge agrees with them.

- :func:`out_of_catalogue_share`: the share of generated recommendations that match no item.
- :func:`check_explanation`: is an explanation *grounded* (it names something the user
  actually watched, or a genre the item really has) and does it *contradict* the data
  (it names a genre or a year that neither the item nor the history has)?
- :func:`agreement`: raw agreement and Cohen's kappa between a judge and the checks.

Used by chapter 17.
"""

from __future__ import annotations

import re

import numpy as np

from genrec_lib.data.movielens import ML100K_GENRES

#: How a genre may be written in free text (lower case, besides its own name).
GENRE_WORDS = {
    "Sci-Fi": ("sci-fi", "science fiction", "science-fiction", "scifi"),
    "Children's": ("children", "kids", "family"),
    "Film-Noir": ("film-noir", "film noir", "noir"),
    "Musical": ("musical",),
    "Animation": ("animation", "animated", "cartoon"),
    "Romance": ("romance", "romantic"),
    "Comedy": ("comedy", "comedies", "comedic", "funny"),
    "Horror": ("horror",),
    "Thriller": ("thriller",),
    "Documentary": ("documentary",),
    "Western": ("western",),
    "War": ("war film", "war movie", "war drama"),
    "Action": ("action",),
    "Adventure": ("adventure",),
    "Crime": ("crime",),
    "Drama": ("drama",),
    "Fantasy": ("fantasy",),
    "Mystery": ("mystery",),
}


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' -]", " ", text.lower())).strip()


def genres_named(text: str) -> set[str]:
    """The ML-100K genres a text names (by name or a common synonym)."""
    low = " " + _normal(text) + " "
    found = set()
    for genre, words in GENRE_WORDS.items():
        if any(re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", low) for w in words):
            found.add(genre)
    return found


def years_named(text: str) -> set[int]:
    return {int(y) for y in re.findall(r"\b(19[0-9]{2}|20[0-2][0-9])\b", text)}


def _core_title(title: str) -> str:
    """A title without its year and trailing article, normalised (e.g. "Usual Suspects, The" -> "usual suspects")."""
    title = re.sub(r"\(\d{4}\)", "", title)
    title = re.sub(r",\s*(the|a|an|les|la|le|il|das|der|die)\s*$", "", title.strip(), flags=re.IGNORECASE)
    title = re.sub(r"^(the|a|an)\s+", "", title.strip(), flags=re.IGNORECASE)
    return _normal(title)


def check_explanation(text: str, history_titles: list[str], history_genres: list[list[str]],
                      item_genres: list[str], item_year=None, history_years=()) -> dict:
    """Automatic grounding and contradiction checks of one explanation.

    Returns:
        ``{"grounded": bool, "contradicts": bool, "mentions_history": bool,
        "mentions_item_genre": bool, "foreign_genres": [...], "foreign_years": [...]}``.
    """
    norm = " " + _normal(text) + " "
    cores = [c for c in (_core_title(t) for t in history_titles) if len(c) >= 5]
    mentions_history = any(f" {c} " in norm or f" {c}'" in norm for c in cores)
    named = genres_named(text)
    known_genres = set(item_genres) | {g for gs in history_genres for g in gs}
    mentions_item_genre = bool(named & set(item_genres))
    foreign_genres = sorted(named - known_genres)
    known_years = {int(y) for y in [item_year, *history_years] if y is not None and not _isnan(y)}
    foreign_years = sorted(years_named(text) - known_years)
    return {
        "grounded": mentions_history or mentions_item_genre,
        "contradicts": bool(foreign_genres or foreign_years),
        "mentions_history": mentions_history,
        "mentions_item_genre": mentions_item_genre,
        "foreign_genres": foreign_genres,
        "foreign_years": foreign_years,
    }


def _isnan(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def out_of_catalogue_share(matches: list[list]) -> tuple[float, int]:
    """Share of generated items that matched no catalogue item (``None``), and how many were generated."""
    flat = [m for row in matches for m in row]
    if not flat:
        return float("nan"), 0
    return float(np.mean([m is None for m in flat])), len(flat)


def agreement(judge, reference) -> tuple[float, float]:
    """(share of cases where the two binary labels agree, Cohen's kappa)."""
    a, b = np.asarray(judge, dtype=bool), np.asarray(reference, dtype=bool)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"judge and reference need the same non-empty shape, got {a.shape} and {b.shape}")
    observed = float((a == b).mean())
    expected = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    kappa = 0.0 if expected == 1 else (observed - expected) / (1 - expected)
    return observed, float(kappa)


__all__ = ["GENRE_WORDS", "ML100K_GENRES", "agreement", "check_explanation", "genres_named", "out_of_catalogue_share",
           "years_named"]


# --- prompts (the LLM layer is genrec_lib.models.llm.lm) --------------------------------------

def _history_block(history_names: list[str], history_facts: list[str] | None = None) -> str:
    rows = history_names if history_facts is None else [f"{n} ({f})" for n, f in zip(history_names, history_facts)]
    return "I have watched these movies, oldest first:\n" + "\n".join(f"{k + 1}. {r}" for k, r in enumerate(rows)) + "\n"


def recommendation_prompt(lm, history_names: list[str], n: int = 5, candidates: list[str] | None = None) -> str:
    """Ask for ``n`` titles, free (``candidates=None``) or grounded in a given list of catalogue titles."""
    body = _history_block(history_names)
    if candidates is not None:
        body += "Choose only from these movies:\n" + "\n".join(f"- {c}" for c in candidates) + "\n"
    body += f"Recommend {n} movies I should watch next. Answer with a numbered list of titles only."
    return lm.chat(body, system="You are a movie recommender.")


def explanation_prompt(lm, history_names: list[str], item_name: str, history_facts: list[str] | None = None,
                       item_facts: str | None = None) -> str:
    """Ask for a one-sentence explanation; with facts, the genres of every movie are in the prompt."""
    body = _history_block(history_names, history_facts)
    movie = item_name if item_facts is None else f"{item_name} ({item_facts})"
    body += f"Explain in one sentence why I would like the movie {movie}."
    return lm.chat(body, system="You are a movie recommender. Base every claim on the information given.")


def judge_prompt(lm, facts: str, explanation: str) -> str:
    """Ask the LLM whether an explanation is supported by the facts (answer Yes or No)."""
    return lm.chat(f"Facts:\n{facts}\nExplanation: {explanation}\n"
                   "Is every claim in the explanation supported by the facts? Answer Yes or No.",
                   system="You check explanations of movie recommendations against the facts.")


def judge_says_supported(lm, prompts: list[str]) -> np.ndarray:
    """For each judge prompt, whether the LLM finds "Yes" more likely than "No" as its answer."""
    out = []
    for prompt in prompts:
        scores = lm.score_continuations(prompt, ["Yes" + lm.end_text, "No" + lm.end_text]).sum.numpy()
        out.append(scores[0] > scores[1])
    return np.array(out, dtype=bool)
