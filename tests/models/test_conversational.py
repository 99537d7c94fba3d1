"""The dialogue state, the rule parser, the user simulator's honesty and `genrec chat`."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from genrec_lib.data import load_split
from genrec_lib.models.llm.conversational import (
    ConversationalRecommender, DialogueState, UserSimulator, apply, check_honesty, is_sequel, reveals_title,
    rule_parse, simulate,
)


@pytest.fixture(scope="module")
def split():
    return load_split("ml-100k", "loo", 2020)


@pytest.fixture(scope="module")
def rec(split):
    # Random item vectors keep the test fast; the chapter uses MiniLM.
    g = torch.Generator().manual_seed(0)
    E = torch.nn.functional.normalize(torch.randn(split.n_items, 16, generator=g), dim=-1)
    return ConversationalRecommender(split.dataset, E, lambda texts: torch.zeros(len(texts), 16),
                                     split.train.item_popularity())


def test_rule_parser_reads_genres_negations_and_critiques():
    p = rule_parse("Something funny, but no horror please")
    assert p.want_genres == {"Comedy"} and p.avoid_genres == {"Horror"}
    p = rule_parse("Something less violent and older, please.")
    assert {"Action", "War", "Horror"} <= p.avoid_genres and p.older and not p.newer
    p = rule_parse("Ideally from the 1980s. Not another sequel.")
    assert p.decade == 1980 and p.no_sequels
    assert rule_parse("Yes, number 2 is exactly what I wanted!").accept
    assert not rule_parse("hmm").understood


def test_state_update_is_relative_to_the_shown_years(rec):
    state = DialogueState(shown=[int(np.argmax(rec.years))])  # the most recent item shown
    apply(state, rule_parse("something older"), rec.years)
    assert state.year_max == rec.years.max() - 1
    assert not rec.allowed(state, set())[rec.years > state.year_max].any()


def test_sequel_heuristic_and_title_check():
    assert is_sequel("Die Hard 2") and is_sequel("Godfather: Part II, The") and not is_sequel("Fargo")
    assert reveals_title("I loved the godfather so much", "Godfather, The")
    assert not reveals_title("a crime movie from the 1970s", "Godfather, The")


def test_simulator_is_honest_and_never_names_the_target(split, rec):
    seqs = split.input("test").sequences()
    users, items = split.test.user[:40], split.test.item[:40]
    found = 0
    for u, i in zip(users, items):
        d = simulate(rec, split.dataset, int(u), list(seqs[u]), int(i), max_turns=8, k=5, seed=int(u))
        assert d.problems == [], d.problems
        found += d.success_turn is not None
        for speaker, text in d.turns:
            if speaker == "user":
                assert not reveals_title(text, str(split.dataset.items["title"].iloc[i]))
    assert found >= 10  # the constraints narrow the catalogue enough to find some targets


def test_honesty_check_catches_a_lying_simulator(split, rec):
    target = int(split.test.item[0])
    sim = UserSimulator(split.dataset, target)
    wrong = next(g for g in ("Horror", "Documentary", "Western") if g not in sim.genres)
    lie = DialogueState(want_genres={wrong}, avoid_genres=set(sim.genres[:1]))
    problems = check_honesty(sim, [f"I want {sim.title}"], rec, [lie])
    assert any("names the target" in p for p in problems)
    assert any("rules out the target" in p for p in problems) and any("wanted genres" in p for p in problems)


def test_conversation_beats_the_history_only_baseline(split, rec):
    seqs = split.input("test").sequences()
    pairs = list(zip(split.test.user[:60], split.test.item[:60]))
    talk = [simulate(rec, split.dataset, int(u), list(seqs[u]), int(i), max_turns=8, seed=1).success_turn for u, i in pairs]
    base = [simulate(rec, split.dataset, int(u), list(seqs[u]), int(i), max_turns=8, seed=1,
                     conversational=False).success_turn for u, i in pairs]
    assert sum(t is not None for t in talk) > sum(t is not None for t in base) + 10


def test_genrec_chat_reads_piped_input():
    talk = "something funny\nno romance, from the 80s\nyes\n"
    result = subprocess.run([sys.executable, "-m", "genrec_lib.cli", "chat", "--user", "42", "--max-turns", "3"],
                            input=talk, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "turn 2; state: A Comedy movie, released between 1980 and 1989, not Romance." in result.stdout
    assert "Enjoy the movie!" in result.stdout and "turn 3" not in result.stdout


def test_genrec_chat_rejects_an_unknown_user():
    result = subprocess.run([sys.executable, "-m", "genrec_lib.cli", "chat", "--user", "99999"], input="",
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "unknown user 99999" in result.stderr
