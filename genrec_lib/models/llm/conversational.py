"""Conversational recommendation: a dialogue state, a parser, a recommender and a user simulator.

The recommender keeps a :class:`DialogueState` (liked and rejected items, wanted and
avoided genres, a year range, "no sequels"); each user utterance updates it through a
parser (an LLM asked for a fixed output format, falling back to :func:`rule_parse`);
each turn retrieves candidates with sentence embeddings of the item texts (a query built
from the user's history and the state) and may re-rank the shortlist with a language
model. The :class:`UserSimulator` knows one held-out target item and answers from its
metadata only (genres, year, whether it is a sequel), never naming it;
:func:`check_honesty` verifies both properties after every dialogue.

Surveys: Jannach et al., "A Survey on Conversational Recommender Systems", ACM CSUR 2021
(https://arxiv.org/abs/2004.00646). Simulator-based evaluation and its limits: Wang et
al., "Rethinking the Evaluation for Conversational Recommendation in the Era of Large
Language Models" (iEvaLM), EMNLP 2023 (https://arxiv.org/abs/2305.13112).

Deviations from the literature: the simulator is template-based and answers only with
critiques that follow from the target's metadata (no free-form LLM role play), which makes
its honesty checkable but its language narrow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from genrec_lib.data import Interactions
from genrec_lib.data.movielens import ML100K_GENRES
from genrec_lib.models.base import check_positive

GENRES = [g for g in ML100K_GENRES if g != "unknown"]
#: genres a "less violent" critique rules out
VIOLENT = ("Action", "Crime", "Horror", "Thriller", "War")
#: words that map to a genre, besides the genre's own name
SYNONYMS = {
    "sci-fi": "Sci-Fi", "science fiction": "Sci-Fi", "scifi": "Sci-Fi", "space": "Sci-Fi",
    "scary": "Horror", "horror": "Horror", "funny": "Comedy", "comedy": "Comedy", "comedies": "Comedy",
    "kids": "Children's", "children": "Children's", "family": "Children's", "animated": "Animation",
    "cartoon": "Animation", "animation": "Animation", "romantic": "Romance", "romance": "Romance",
    "love story": "Romance", "noir": "Film-Noir", "documentary": "Documentary", "documentaries": "Documentary",
    "musical": "Musical", "musicals": "Musical", "mystery": "Mystery", "mysteries": "Mystery",
    "thriller": "Thriller", "thrillers": "Thriller", "western": "Western", "westerns": "Western",
    "war": "War", "crime": "Crime", "drama": "Drama", "dramas": "Drama", "fantasy": "Fantasy",
    "adventure": "Adventure", "adventures": "Adventure", "action": "Action",
}
NEGATIONS = ("no ", "not ", "without", "don't", "dont", "avoid", "less ", "nothing ", "hate", "except")
_SEQUEL = re.compile(r"(\b(II|III|IV|V|VI)\b|\b[2-6]\b|\bPart\b)")
_DECADE = re.compile(r"\b(?:19)?([2-9])0'?s\b")


def is_sequel(title: str) -> bool:
    """A heuristic: a numeral (2-6, II-VI) or "Part" in the title marks a sequel."""
    return bool(_SEQUEL.search(str(title)))


@dataclass
class DialogueState:
    """What the recommender knows after each turn; every field is a hard or soft constraint."""

    liked: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)
    want_genres: set[str] = field(default_factory=set)
    avoid_genres: set[str] = field(default_factory=set)
    year_min: int | None = None
    year_max: int | None = None
    no_sequels: bool = False
    shown: list[int] = field(default_factory=list)  # the last list the user saw

    def describe(self) -> str:
        """The state as one line of text (the query the retriever embeds)."""
        parts = []
        if self.want_genres:
            parts.append("A " + " and ".join(sorted(self.want_genres)) + " movie")
        else:
            parts.append("A movie")
        if self.year_min and self.year_max:
            parts.append(f"released between {self.year_min} and {self.year_max}")
        elif self.year_min:
            parts.append(f"released after {self.year_min}")
        elif self.year_max:
            parts.append(f"released before {self.year_max}")
        if self.avoid_genres:
            parts.append("not " + " or ".join(sorted(self.avoid_genres)))
        return ", ".join(parts) + "."


@dataclass
class ParseResult:
    """The state changes read from one utterance; ``understood`` is False when nothing was."""

    want_genres: set[str] = field(default_factory=set)
    avoid_genres: set[str] = field(default_factory=set)
    older: bool = False
    newer: bool = False
    decade: int | None = None
    no_sequels: bool = False
    accept: bool = False

    @property
    def understood(self) -> bool:
        return bool(self.want_genres or self.avoid_genres or self.older or self.newer or self.decade
                    or self.no_sequels or self.accept)


def rule_parse(utterance: str) -> ParseResult:
    """Read genres (wanted or avoided), era critiques, "no sequels" and acceptance from text.

    A clause (split at punctuation and "but") that holds a negation word puts its genres
    among the avoided ones; "less violent" avoids every violent genre.
    """
    out = ParseResult()
    text = " " + utterance.lower().replace("’", "'") + " "
    if re.search(r"\b(yes|that's it|that one|perfect|i'll watch)\b", text):
        out.accept = True
    for clause in re.split(r"[.,;!?]| but ", text):
        clause = " " + clause.strip() + " "
        negated = any(n in clause for n in NEGATIONS)
        found = {genre for word, genre in SYNONYMS.items() if re.search(rf"\b{re.escape(word)}\b", clause)}
        if "violen" in clause:
            out.avoid_genres |= set(VIOLENT)
        (out.avoid_genres if negated else out.want_genres).update(found)
        if "sequel" in clause and negated:
            out.no_sequels = True
    if re.search(r"\b(older|earlier|classic|not so recent|less recent)\b", text):
        out.older = True
    if re.search(r"\b(newer|more recent|recent|later|modern)\b", text) and not out.older:
        out.newer = True
    match = _DECADE.search(text)
    if match:
        out.decade = 1900 + 10 * int(match.group(1))
    return out


def apply(state: DialogueState, parse: ParseResult, years: np.ndarray) -> DialogueState:
    """Update ``state`` in place from a parse; era critiques are relative to the items last shown."""
    state.want_genres |= parse.want_genres - parse.avoid_genres
    state.avoid_genres |= parse.avoid_genres
    state.want_genres -= state.avoid_genres
    shown_years = [int(years[i]) for i in state.shown if years[i] > 0]
    if parse.older and shown_years:
        state.year_max = min(shown_years) - 1 if state.year_max is None else min(state.year_max, min(shown_years) - 1)
    if parse.newer and shown_years:
        state.year_min = max(shown_years) + 1 if state.year_min is None else max(state.year_min, max(shown_years) + 1)
    if parse.decade:
        state.year_min, state.year_max = parse.decade, parse.decade + 9
    state.no_sequels |= parse.no_sequels
    return state


class ConversationalRecommender:
    """Embedding retrieval under the dialogue state's constraints, optionally re-ranked by an LLM.

    Args:
        data: the dataset (for titles, years and genres).
        item_vectors: unit vectors of the item texts (N, d), e.g. from MiniLM.
        encode: a function from a list of texts to unit vectors (to embed the state).
        popularity: interactions per item in the training data (N,), a weak prior.
        genre_weight, pop_weight: the soft-score weights of wanted genres and popularity.
        reranker: optional ``f(state, history, candidates) -> scores`` (e.g. an LLM) that
            re-orders the ``shortlist`` best items.
    """

    def __init__(self, data: Interactions, item_vectors: torch.Tensor, encode, popularity: np.ndarray,
                 genre_weight: float = 0.5, pop_weight: float = 0.3, shortlist: int = 20, reranker=None):
        check_positive(shortlist=shortlist)
        self.titles = data.items["title"].astype(str).to_numpy()
        self.years = np.array([int(y) if str(y) not in ("<NA>", "nan", "None") else 0 for y in data.items["year"]])
        self.genre_matrix = np.array([[g in (gs if isinstance(gs, list) else []) for g in GENRES]
                                      for gs in data.items["genres"]], dtype=bool)  # (N, G)
        self.sequel = np.array([is_sequel(t) for t in self.titles])
        self.E = torch.nn.functional.normalize(item_vectors.float(), dim=-1)  # (N, d)
        self.encode = encode
        logpop = np.log1p(np.asarray(popularity, dtype=float))
        self.prior = logpop / max(logpop.max(), 1e-9)
        self.genre_weight, self.pop_weight, self.shortlist, self.reranker = genre_weight, pop_weight, shortlist, reranker
        self._state_vectors: dict[str, torch.Tensor] = {}  # state text -> its embedding (states repeat across dialogues)

    def embed_state(self, state: DialogueState) -> torch.Tensor:
        text = state.describe()
        if text not in self._state_vectors:
            self._state_vectors[text] = self.encode([text])[0]
        return self._state_vectors[text]

    def allowed(self, state: DialogueState, seen: set[int]) -> np.ndarray:
        """Items the hard constraints leave (not seen, not rejected, no avoided genre, in the years)."""
        ok = np.ones(len(self.titles), dtype=bool)
        ok[list(seen | state.rejected)] = False
        if state.avoid_genres:
            ok &= ~self.genre_matrix[:, [GENRES.index(g) for g in state.avoid_genres]].any(1)
        if state.year_min:
            ok &= self.years >= state.year_min
        if state.year_max:
            ok &= (self.years <= state.year_max) & (self.years > 0)
        if state.no_sequels:
            ok &= ~self.sequel
        return ok

    def scores(self, state: DialogueState, history: list[int], use_state: bool = True) -> np.ndarray:
        """Soft scores of every item: similarity to the history (+ the state text), genres, popularity."""
        query = self.E[history[-20:]].mean(0) if history else torch.zeros(self.E.shape[1])
        if use_state and (state.want_genres or state.year_min or state.year_max):
            query = query + self.embed_state(state)
        s = (self.E @ torch.nn.functional.normalize(query, dim=0)).numpy().astype(float)
        if use_state and state.want_genres:
            cols = [GENRES.index(g) for g in state.want_genres]
            s = s + self.genre_weight * self.genre_matrix[:, cols].mean(1)
        return s + self.pop_weight * self.prior

    def recommend(self, state: DialogueState, history: list[int], k: int = 5, use_state: bool = True,
                  generator: np.random.Generator | None = None, seen: set[int] | None = None) -> list[int]:
        """The top ``k`` allowed items (ties broken at random), re-ranked when a reranker is set.

        ``history`` is the model's input (time order); ``seen`` (default: the history) are
        the items never to recommend.
        """
        check_positive(k=k)
        s = self.scores(state, history, use_state)
        seen = set(history) if seen is None else set(seen)
        ok = self.allowed(state, seen) if use_state else self.allowed(DialogueState(rejected=state.rejected), seen)
        if not ok.any():  # the constraints rule out everything: relax all but seen / rejected
            ok = self.allowed(DialogueState(rejected=state.rejected), seen)
        generator = generator or np.random.default_rng(0)
        noise = generator.random(len(s)) * 1e-9
        s = np.where(ok, s + noise, -np.inf)
        top = np.argsort(-s)[: max(k, self.shortlist if self.reranker else k)]
        top = [int(i) for i in top if np.isfinite(s[i])]
        if self.reranker is not None and len(top) > k:
            r = np.asarray(self.reranker(state, history, top), dtype=float)
            top = [top[i] for i in np.argsort(-r, kind="stable")]
        return top[:k]


# --- the language model's part: a constrained parser and a re-ranker ----------------------

PARSE_SYSTEM = ("You read what a user says to a movie recommender and fill in a form. Reply with one line "
                "in exactly this format: want: <genres or none> | avoid: <genres or none> | "
                "era: <older, newer, a decade such as 1980s, or none> | sequels: <ok or no>")
PARSE_EXAMPLES = (
    ("I'd like a funny movie, but no horror.", "want: Comedy | avoid: Horror | era: none | sequels: ok"),
    ("Something older, please. Not another sequel.", "want: none | avoid: none | era: older | sequels: no"),
    ("Ideally a western from the 1960s.", "want: Western | avoid: none | era: 1960s | sequels: ok"),
)
_FORM = re.compile(r"want:\s*(?P<want>[^|]*)\|\s*avoid:\s*(?P<avoid>[^|]*)\|\s*era:\s*(?P<era>[^|]*)\|\s*"
                   r"sequels:\s*(?P<sequels>\w+)", re.IGNORECASE)


def read_form(text: str) -> ParseResult | None:
    """A :class:`ParseResult` from the form line an LLM wrote, or ``None`` if it broke the format.

    Every genre must be one of the catalogue's (or a known synonym), the era one of the
    allowed values and sequels "ok" or "no"; anything else is a parse failure.
    """
    match = _FORM.search(text)
    if not match:
        return None
    out = ParseResult()
    for slot in ("want", "avoid"):
        value = match.group(slot).strip().strip(".").lower()
        if value in ("none", ""):
            continue
        for word in re.split(r",|\band\b", value):
            word = word.strip()
            genre = SYNONYMS.get(word) or next((g for g in GENRES if g.lower() == word), None)
            if genre is None:
                return None
            getattr(out, slot + "_genres").add(genre)
    era = match.group("era").strip().strip(".").lower()
    decade = _DECADE.search(era)
    if era == "older":
        out.older = True
    elif era == "newer":
        out.newer = True
    elif decade:
        out.decade = 1900 + 10 * int(decade.group(1))
    elif era != "none":
        return None
    sequels = match.group("sequels").lower()
    if sequels not in ("ok", "no"):
        return None
    out.no_sequels = sequels == "no"
    if "violen" in text.lower():
        out.avoid_genres |= set(VIOLENT)
    return out


def llm_parser(lm, max_new_tokens: int = 32):
    """A parser for :func:`simulate` and :func:`chat`: the LM fills the form, ``None`` on a broken form.

    Answers are cached per utterance (the simulator repeats its phrasings).
    """
    cache: dict[str, ParseResult | None] = {}

    def parse(utterance: str) -> ParseResult | None:
        if utterance not in cache:
            prompt = lm.chat(utterance, system=PARSE_SYSTEM, examples=PARSE_EXAMPLES)
            form = read_form(lm.generate([prompt], max_new_tokens=max_new_tokens)[0])
            if form is not None:  # acceptance is not part of the form; the rules read it
                form.accept = rule_parse(utterance).accept
            cache[utterance] = form
        return cache[utterance]

    parse.cache = cache
    return parse


def llm_reranker(lm, names: list[str], n_history: int = 10):
    """A re-ranker for :class:`ConversationalRecommender`: mean log-likelihood of each candidate title.

    The prompt gives the user's last ``n_history`` items and the dialogue state; the
    candidates share the prompt's key/value cache.
    """

    def rerank(state: DialogueState, history: list[int], candidates: list[int]) -> np.ndarray:
        watched = "; ".join(names[i] for i in history[-n_history:]) or "nothing yet"
        prompt = lm.chat(f"I have watched: {watched}. Now I want: {state.describe()} Recommend one movie.",
                         system="You are a movie recommender. Answer with one movie title.")
        scores = lm.score_continuations(prompt, [names[i] + lm.end_text for i in candidates])
        return scores.mean.numpy()

    return rerank


# --- the user simulator -------------------------------------------------------------------


class UserSimulator:
    """A user who wants one target item and describes it from its metadata only.

    Each turn it looks at the shown list: if the target is there it accepts (without
    naming it); otherwise it states one new fact that is true of the target, chosen at
    random (seeded) among: a genre of the target not yet stated; a genre of a shown item
    that the target lacks ("no ..."); "less violent" when shown items are violent and the
    target is not; "something older / more recent" relative to the shown years; the
    target's decade; "no sequels" when a sequel was shown and the target is none.
    """

    def __init__(self, data: Interactions, target: int, seed: int = 0):
        self.target = int(target)
        self.title = str(data.items["title"].iloc[target])
        year = data.items["year"].iloc[target]
        self.year = int(year) if str(year) not in ("<NA>", "nan", "None") else None
        genres = data.items["genres"].iloc[target]
        self.genres = [g for g in (genres if isinstance(genres, list) else []) if g in GENRES]
        self.sequel = is_sequel(self.title)
        self._titles = data.items["title"].astype(str).to_numpy()
        self._years = data.items["year"]
        self._genres = data.items["genres"]
        self.rng = np.random.default_rng(seed)
        self.stated: set[str] = set()

    def opening(self) -> str:
        if not self.genres:
            return "I'm looking for a movie to watch tonight."
        g = self.genres[int(self.rng.integers(len(self.genres)))]
        self.stated.add("want:" + g)
        return f"I'm looking for a {g.lower()} movie."

    def reply(self, shown: list[int]) -> tuple[str, bool]:
        """The user's answer to a shown list, and whether the target was found."""
        if self.target in shown:
            return f"Yes, number {shown.index(self.target) + 1} is exactly what I wanted!", True
        options = []
        for g in self.genres:
            if "want:" + g not in self.stated:
                options.append(("want:" + g, f"Maybe something with some {g.lower()} in it."))
        shown_genres = {g for i in shown for g in (self._genres.iloc[i] or []) if g in GENRES}
        for g in sorted(shown_genres - set(self.genres)):
            if "avoid:" + g not in self.stated and g not in VIOLENT:
                options.append(("avoid:" + g, f"No {g.lower()}, please."))
        if shown_genres & set(VIOLENT) and not set(self.genres) & set(VIOLENT) and "violent" not in self.stated:
            options.append(("violent", "Something less violent, please."))
        years = [int(self._years.iloc[i]) for i in shown if str(self._years.iloc[i]) not in ("<NA>", "nan", "None")]
        if self.year and years:
            if self.year < min(years):
                options.append(("older", "Something older, please."))
            elif self.year > max(years):
                options.append(("newer", "Something more recent, please."))
        if self.year and "decade" not in self.stated and self.year >= 1920:
            options.append(("decade", f"Ideally from the {self.year // 10 * 10}s."))
        if not self.sequel and "sequel" not in self.stated and any(is_sequel(self._titles[i]) for i in shown):
            options.append(("sequel", "Not another sequel, please."))
        if not options:
            return "None of these, sorry. Something else?", False
        key, text = options[int(self.rng.integers(len(options)))]
        if key not in ("older", "newer"):
            self.stated.add(key)
        return text, False


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower())


def reveals_title(utterance: str, title: str) -> bool:
    """Whether ``utterance`` names ``title`` (its main part, before a comma or parenthesis, words compared)."""
    main = _normalise(re.split(r"[,(]", title)[0]).split()
    if not main:
        return False
    words = _normalise(utterance).split()
    n = len(main)
    return any(words[i : i + n] == main for i in range(len(words) - n + 1))


def check_honesty(sim: UserSimulator, utterances: list[str], rec: ConversationalRecommender,
                  states: list[DialogueState]) -> list[str]:
    """Problems with one simulated dialogue (empty when honest).

    Checks that no utterance names the target's title and that the target satisfies every
    hard constraint the parser read from the simulator's words, turn after turn (apart from
    having been shown: a shown target ends the dialogue).
    """
    problems = []
    for turn, text in enumerate(utterances):
        if reveals_title(text, sim.title):
            problems.append(f"turn {turn}: names the target {sim.title!r}: {text!r}")
    for turn, state in enumerate(states):
        if not rec.allowed(DialogueState(avoid_genres=state.avoid_genres, year_min=state.year_min,
                                         year_max=state.year_max, no_sequels=state.no_sequels), set())[sim.target]:
            problems.append(f"turn {turn}: the state {state.describe()!r} (sequels {'excluded' if state.no_sequels else 'allowed'}) rules out the target")
        missing = state.want_genres - set(sim.genres)
        if missing:
            problems.append(f"turn {turn}: wanted genres {sorted(missing)} are not the target's")
    return problems


@dataclass
class Dialogue:
    """One simulated conversation: the turns, whether and when it succeeded, the states."""

    user: int
    target: int
    turns: list[tuple[str, str]]  # (speaker, text)
    success_turn: int | None
    states: list[DialogueState]
    parse_failures: int
    problems: list[str]


def simulate(rec: ConversationalRecommender, data: Interactions, user: int, history: list[int], target: int,
             max_turns: int = 10, k: int = 5, seed: int = 0, parser=None, conversational: bool = True,
             seen: set[int] | None = None) -> Dialogue:
    """Run one dialogue between ``rec`` and a :class:`UserSimulator` that wants ``target``.

    Each turn the recommender shows ``k`` items; shown items the user passes over are not
    shown again. ``conversational=False`` gives the history-only baseline: it ignores the
    user's words and only moves down its own ranking. ``history`` is the recommender's
    input, ``seen`` (default: the history) the items it must not recommend. ``parser(utterance) -> ParseResult
    | None`` reads the words (default :func:`rule_parse`); ``None`` counts as a parse failure
    and falls back to the rules.
    """
    check_positive(max_turns=max_turns, k=k)
    sim = UserSimulator(data, target, seed=seed)
    rng = np.random.default_rng(seed)
    state, turns, states, said = DialogueState(liked=set(history)), [], [], []
    failures, success = 0, None
    utterance = sim.opening()
    for turn in range(1, max_turns + 1):
        turns.append(("user", utterance))
        said.append(utterance)
        if conversational:
            parse = parser(utterance) if parser is not None else rule_parse(utterance)
            if parse is None:
                failures += 1
                parse = rule_parse(utterance)
            apply(state, parse, rec.years)
        states.append(DialogueState(**{k_: (set(v) if isinstance(v, set) else v) for k_, v in vars(state).items()}))
        shown = rec.recommend(state, history, k=k, use_state=conversational, generator=rng, seen=seen)
        state.shown = shown
        turns.append(("recommender", "; ".join(f"{j + 1}. {rec.titles[i]} ({rec.years[i]})" for j, i in enumerate(shown))))
        utterance, found = sim.reply(shown)
        if found:
            turns.append(("user", utterance))
            said.append(utterance)
            success = turn
            break
        state.rejected |= set(shown)
    problems = check_honesty(sim, said, rec, states) if conversational else \
        [p for p in check_honesty(sim, said, rec, []) if "names" in p]
    return Dialogue(user, target, turns, success, states, failures, problems)


def minilm_recommender(split, **kwargs) -> ConversationalRecommender:
    """The chapter's recommender: MiniLM item vectors (cached on disk), training popularity."""
    from genrec_lib.data import item_text
    from genrec_lib.text_encoders import encode_texts

    vectors = encode_texts(item_text(split.dataset), cache=True)
    return ConversationalRecommender(split.dataset, vectors, encode_texts, split.train.item_popularity(), **kwargs)


def chat(rec: ConversationalRecommender, history: list[int], lines, write, max_turns: int = 5, k: int = 5,
         parser=None, seed: int = 0, seen: set[int] | None = None) -> DialogueState:
    """Hold a dialogue with a person: read utterances from ``lines``, ``write`` each turn's list.

    Stops after ``max_turns`` lists, when the input ends, or when the user accepts
    ("yes", "that one", ...). Returns the final state.
    """
    check_positive(max_turns=max_turns, k=k)
    state = DialogueState(liked=set(history))
    rng = np.random.default_rng(seed)
    turn = 0
    for line in lines:
        utterance = line.strip()
        if not utterance:
            continue
        parse = parser(utterance) if parser is not None else None
        if parse is None:
            parse = rule_parse(utterance)
        if parse.accept and state.shown:
            write("recommender: Enjoy the movie!")
            break
        if state.shown:
            state.rejected |= set(state.shown)
        apply(state, parse, rec.years)
        if not parse.understood:
            write("recommender: (I did not catch a preference in that; showing other options.)")
        turn += 1
        state.shown = rec.recommend(state, history, k=k, generator=rng, seen=seen)
        write(f"recommender [turn {turn}; state: {state.describe()}"
              f"{' no sequels;' if state.no_sequels else ''}]:")
        for j, i in enumerate(state.shown):
            write(f"  {j + 1}. {rec.titles[i]} ({rec.years[i]})")
        if turn >= max_turns:
            write(f"recommender: that was the last of {max_turns} turns.")
            break
    return state
