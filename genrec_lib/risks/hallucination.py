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


def _title_keys(title: str) -> set[str]:
    """Normalised forms of a title (and of its alternative title in parentheses), as the title matcher reads them."""
    from genrec_lib.models.llm.items import _ALTERNATIVE, normalise_title

    keys = {normalise_title(title)}
    alt = _ALTERNATIVE.match(re.sub(r"\s*\(\d{4}\)\s*$", "", str(title).strip()))
    if alt:
        keys |= {normalise_title(alt.group(1)), normalise_title(alt.group(2))}
    return {k for k in keys if k}


def _names_title(norm_text: str, key: str) -> bool:
    return f" {key} " in norm_text


def check_explanation(text: str, history_titles: list[str], history_genres: list[list[str]],
                      item_genres: list[str], item_year=None, history_years=(), item_title: str | None = None,
                      catalogue_titles: list[str] | None = None) -> dict:
    """Automatic grounding and contradiction checks of one explanation.

    *Grounded*: the text names a film of the user's history (a title of at least 5
    characters, normalised as :class:`~genrec_lib.models.llm.items.TitleMatcher` does) or
    a genre the item has. *Contradicts*: it names a genre that neither the item nor the
    history has, a year that none of them has, or (when ``catalogue_titles`` is given) a
    catalogue film that is neither the item nor in the history (titles of at least two
    words and 8 characters, so that ordinary words such as "Heat" are not read as films).
    These are string rules: they miss paraphrases and can misread a common phrase that
    is also a title; their value is that every verdict can be traced to a word.

    Returns:
        ``{"grounded", "contradicts", "mentions_history", "mentions_item_genre",
        "foreign_genres", "foreign_years", "foreign_titles"}``.
    """
    from genrec_lib.models.llm.items import normalise_title

    if len(history_titles) != len(history_genres):
        raise ValueError(f"history_titles ({len(history_titles)}) and history_genres ({len(history_genres)}) "
                         "must describe the same films, one entry each")
    norm = " " + normalise_title(text) + " "
    own = set().union(*(_title_keys(t) for t in history_titles)) if history_titles else set()
    mentions_history = any(len(k) >= 5 and _names_title(norm, k) for k in own)
    named = genres_named(text)
    known_genres = set(item_genres) | {g for gs in history_genres for g in gs}
    mentions_item_genre = bool(named & set(item_genres))
    foreign_genres = sorted(named - known_genres)
    known_years = {int(y) for y in [item_year, *history_years] if y is not None and not _isnan(y)}
    foreign_years = sorted(years_named(text) - known_years)
    foreign_titles = []
    if catalogue_titles is not None:
        allowed = own | (_title_keys(item_title) if item_title else set())
        for title in catalogue_titles:
            keys = _title_keys(title)
            if keys & allowed:
                continue
            if any(len(k) >= 8 and " " in k and _names_title(norm, k) for k in keys):
                foreign_titles.append(title)
        # a longer foreign title contains shorter allowed ones ("Star Wars" in "Return of the Jedi (Star Wars ...)"): fine
    return {
        "grounded": mentions_history or mentions_item_genre,
        "contradicts": bool(foreign_genres or foreign_years or foreign_titles),
        "mentions_history": mentions_history,
        "mentions_item_genre": mentions_item_genre,
        "foreign_genres": foreign_genres,
        "foreign_years": foreign_years,
        "foreign_titles": sorted(set(foreign_titles)),
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
    """(share of cases where the two binary labels agree, Cohen's kappa).

    Cohen's kappa corrects the raw agreement for the agreement two independent raters
    with the same label rates would reach by chance: ``(p_o - p_e) / (1 - p_e)``. It is
    ``nan`` when both raters give one and the same label to every case (``p_e = 1``);
    otherwise scikit-learn's ``cohen_kappa_score``.
    """
    a, b = np.asarray(judge), np.asarray(reference)
    if a.shape != b.shape or a.size == 0 or a.ndim != 1:
        raise ValueError(f"judge and reference need the same non-empty 1-D shape, got {a.shape} and {b.shape}")
    from sklearn.metrics import cohen_kappa_score

    a, b = a.astype(bool), b.astype(bool)
    observed = float((a == b).mean())
    expected = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    kappa = float("nan") if expected == 1 else cohen_kappa_score(a, b, labels=[False, True])
    return observed, float(kappa)


def kappa_ci(judge, reference, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Cohen's kappa (:func:`agreement`) with a percentile bootstrap interval over cases
    (``scipy.stats.bootstrap``, judge and reference resampled together; resamples whose kappa
    is undefined are left out). ``(nan, nan, nan)`` when kappa itself is undefined.

    Percentile, not BCa: kappa is bounded by 1, and on a few dozen cases one disagreement moves
    it a lot, which makes BCa's jackknife acceleration explode (15 agreements of 16 cases:
    BCa gives [0.00, 1.00], the percentile interval [0.48, 1.00]).
    """
    # imported here: genrec_lib.evaluation imports the models, and they import this module
    from genrec_lib.evaluation.stats import bootstrap_interval

    a, b = np.asarray(judge, dtype=bool), np.asarray(reference, dtype=bool)
    kappa = agreement(a, b)[1]
    low, high = bootstrap_interval((a, b), lambda j, r: agreement(j, r)[1], n_boot=n_boot, level=level, seed=seed,
                                   paired=True, vectorized=False, method="percentile")
    return kappa, low, high


__all__ = ["GENRE_WORDS", "ML100K_GENRES", "agreement", "check_explanation", "explanation_prompt", "genres_named",
           "judge_log_odds", "judge_prompt", "judge_says_supported", "kappa_ci", "out_of_catalogue_share", "recommendation_prompt",
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


def judge_log_odds(lm, prompts: list[str]) -> np.ndarray:
    """For each judge prompt, ``log p("Yes") - log p("No")`` as the whole answer (a constrained yes/no answer), (N,)."""
    out = []
    for prompt in prompts:
        scores = lm.score_continuations(prompt, ["Yes" + lm.end_text, "No" + lm.end_text]).sum.numpy()
        out.append(float(scores[0] - scores[1]))
    return np.array(out)


def judge_says_supported(lm, prompts: list[str], threshold: float = 0.0) -> np.ndarray:
    """For each judge prompt, whether the judge's log-odds of "Yes" over "No" exceed ``threshold`` (0: Yes more likely)."""
    return judge_log_odds(lm, prompts) > threshold
