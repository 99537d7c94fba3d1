"""Item text for language models, and a title matcher for what they write back.

MovieLens stores titles the way library catalogues do, with the article moved to the
end and an alternative title in parentheses: ``"Godfather, The"``,
``"Horseman on the Roof, The (Hussard sur le toit, Le)"``. A language model has read
titles as people write them, so prompts use :func:`display_title` ("The Godfather
(1972)"), and free-text answers are mapped back to catalogue items by
:class:`TitleMatcher`, which normalises both sides (case, punctuation, articles, "&",
alternative titles) and uses the year when the answer gives one. An answer that matches
no catalogue item is a *hallucination* as far as the recommender is concerned
(chapter 10 counts them); it is never guessed into the nearest title.
"""

from __future__ import annotations

import difflib
import re
import unicodedata

import pandas as pd

from genrec_lib.data import Interactions

#: Articles that MovieLens moves to the end of a title (English, French, Italian, Spanish, German).
ARTICLES = ("the", "a", "an", "le", "la", "les", "l'", "il", "el", "los", "las", "der", "die", "das")
_TRAILING_ARTICLE = re.compile(r"^(.*?),\s*(" + "|".join(re.escape(a) for a in ARTICLES) + r")$", re.IGNORECASE)
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ALTERNATIVE = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")


def move_article(title: str) -> str:
    """``"Godfather, The"`` -> ``"The Godfather"``; other titles are returned unchanged."""
    match = _TRAILING_ARTICLE.match(title.strip())
    if not match:
        return title.strip()
    body, article = match.groups()
    separator = "" if article.endswith("'") else " "
    return f"{article}{separator}{body}"


def display_title(title: str, year=None) -> str:
    """The title as people write it, with the year: ``"The Godfather (1972)"``.

    An alternative title in parentheses is kept (it helps the model recognise the film),
    with its own article moved too.
    """
    title = str(title).strip()
    alt = _ALTERNATIVE.match(title)
    if alt and not _YEAR.search(title):
        title = f"{move_article(alt.group(1))} ({move_article(alt.group(2))})"
    else:
        title = move_article(title)
    return f"{title} ({int(year)})" if year is not None and pd.notna(year) else title


def item_names(data: Interactions, with_year: bool = True) -> list[str]:
    """:func:`display_title` of every item, indexed by dense item index."""
    years = data.items["year"] if with_year else [None] * data.n_items
    return [display_title(t, y) for t, y in zip(data.items["title"], years)]


def item_descriptions(data: Interactions) -> list[str]:
    """One short line per item, the title as people write it and the genres:
    ``"Toy Story (1995): Animation, Children's, Comedy"`` (chapter 12b embeds these)."""
    out = []
    for name, genres in zip(item_names(data), data.items["genres"]):
        genre_part = ", ".join(genres) if isinstance(genres, list) and genres else "unknown genre"
        out.append(f"{name}: {genre_part}")
    return out


def normalise_title(text: str) -> str:
    """Lower case, accents and punctuation removed, articles moved, "&" -> "and", no year."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    text = _YEAR.sub("", text.strip().strip("\"'*`").strip())
    text = move_article(text)
    text = text.lower().replace("&", " and ")
    text = re.sub(r"[^a-z0-9]+", " ", text)
    words = text.split()
    if words and words[0] in ("the", "a", "an"):  # "The Godfather" and "Godfather" are one title
        words = words[1:]
    return " ".join(words)


class TitleMatcher:
    """Map free text ("the godfather (1972)", "Godfather") to a catalogue item index, or ``None``.

    Each item is indexed under its normalised full title and, when the title carries an
    alternative in parentheses, under each part. A query is normalised the same way; the
    year, when the query gives one, picks among items that share a title. ``cutoff`` (0-1)
    allows near-exact matches for typos (difflib ratio); the default 0.92 accepts
    "Shawshank Redemtion" and rejects a different film.
    """

    def __init__(self, data: Interactions, cutoff: float = 0.92):
        if not 0 < cutoff <= 1:
            raise ValueError(f"cutoff must be in (0, 1], got {cutoff!r}")
        self.cutoff = cutoff
        self.index: dict[str, list[int]] = {}
        self.years = list(data.items["year"])
        for item, title in enumerate(data.items["title"]):
            keys = {normalise_title(title)}
            alt = _ALTERNATIVE.match(str(title))
            if alt:
                keys |= {normalise_title(alt.group(1)), normalise_title(alt.group(2))}
            for key in keys - {""}:
                self.index.setdefault(key, []).append(item)
        self._keys = list(self.index)

    def match(self, text: str) -> int | None:
        """The item index ``text`` names, or ``None`` when it names no catalogue item."""
        if not isinstance(text, str) or not text.strip():
            return None
        year_match = _YEAR.search(text.strip())
        year = int(year_match.group(1)) if year_match else None
        key = normalise_title(text)
        if not key:
            return None
        items = self.index.get(key)
        if items is None and self.cutoff < 1:
            close = difflib.get_close_matches(key, self._keys, n=1, cutoff=self.cutoff)
            items = self.index[close[0]] if close else None
        if not items:
            return None
        if year is not None:
            same_year = [i for i in items if pd.notna(self.years[i]) and int(self.years[i]) == year]
            if same_year:
                return same_year[0]
            if len(items) == 1 and pd.notna(self.years[items[0]]) and abs(int(self.years[items[0]]) - year) > 1:
                return None  # right words, wrong film: "Hamlet (1948)" is not "Hamlet (1996)"
        return items[0]

    def match_many(self, texts: list[str]) -> list[int | None]:
        return [self.match(t) for t in texts]


_LIST_MARKER = re.compile(r"^\s*(?:\d+\s*[.):-]|[-*\u2022]|[a-tA-T][.)])\s*")


def parse_list(text: str, max_items: int | None = None) -> list[str]:
    """Split a generated list into entries: one per line (or per ";"), numbering and bullets removed."""
    if not isinstance(text, str):
        return []
    lines = [part for line in text.splitlines() for part in line.split(";")]
    entries = [_LIST_MARKER.sub("", line).strip().strip("\"'*`").strip() for line in lines]
    entries = [e for e in entries if e]
    return entries[:max_items] if max_items else entries
