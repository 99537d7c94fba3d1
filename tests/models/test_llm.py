"""The LLM layer: cached scoring equals full scoring, generation, the title trie and matcher,
the LLMRank ranker through the llmrank protocol and the CLI."""

import numpy as np
import pytest
import torch

from genrec_lib.data import make_split
from genrec_lib.evaluation.llmrank import candidate_metrics, candidate_scores, evaluate_llmrank, make_llmrank_task
from genrec_lib.models import get_model
from genrec_lib.models.llm.items import TitleMatcher, display_title, item_names, normalise_title, parse_list
from genrec_lib.models.llm.lm import TitleTrie, load_lm


@pytest.fixture(scope="module")
def lm():
    return load_lm()


@pytest.fixture(scope="module")
def loo(ml100k):
    return make_split(ml100k, "loo", seed=2020)


def test_display_titles_and_normalisation():
    assert display_title("Godfather, The", 1972) == "The Godfather (1972)"
    assert display_title("Postino, Il", 1994) == "Il Postino (1994)"
    assert display_title("Horseman on the Roof, The (Hussard sur le toit, Le)", 1995) == \
        "The Horseman on the Roof (Le Hussard sur le toit) (1995)"
    assert normalise_title("The Godfather (1972)") == normalise_title("Godfather, The") == "godfather"
    assert normalise_title("Ben & Jerry") == "ben and jerry"


def test_title_matcher(ml100k):
    matcher = TitleMatcher(ml100k)
    title = lambda q: None if matcher.match(q) is None else ml100k.items["title"][matcher.match(q)]  # noqa: E731
    assert title("the godfather") == "Godfather, The"
    assert title("Se7en") == "Seven (Se7en)"  # an alternative title
    assert title("Shawshank Redemtion") == "Shawshank Redemption, The"  # a typo
    assert title("The Mandalorian (2019)") is None  # not in the catalogue
    assert title("Hamlet (1948)") is None  # right words, another film
    assert title("") is None and matcher.match(None) is None
    assert parse_list("1. Toy Story (1995)\n2) Heat\n- Fargo\n\n") == ["Toy Story (1995)", "Heat", "Fargo"]


def test_cached_scoring_equals_full_scoring(lm):
    prompt = lm.chat("I watched Toy Story (1995) and Star Wars (1977). Recommend one movie.", system="You recommend movies.")
    continuations = ["Fargo (1996)" + lm.end_text, "The Godfather (1972)" + lm.end_text, "Heat (1995)" + lm.end_text]
    yes_no = [lm.token_id("Yes"), lm.token_id("No")]
    cached = lm.score_continuations(prompt, continuations, next_tokens=yes_no, batch_size=2)
    full = lm.score_continuations_naive(prompt, continuations, next_tokens=yes_no)
    assert torch.allclose(cached.sum, full.sum, atol=2e-3)
    assert torch.allclose(cached.next_logprobs, full.next_logprobs, atol=2e-3)
    assert (cached.sum < 0).all() and (cached.mean * cached.n_tokens - cached.sum).abs().max() < 1e-4
    with pytest.raises(ValueError, match="empty"):
        lm.score_continuations(prompt, ["Fargo", ""])
    with pytest.raises(ValueError, match="single-token"):
        lm.token_id("Absolutely not")


def test_generation_and_constrained_generation(lm, ml100k):
    prompts = [lm.chat("Name one famous movie.", system="Answer briefly.")] * 2
    texts = lm.generate(prompts, max_new_tokens=8)
    assert len(texts) == 2 and texts[0] == texts[1] and len(lm.encode(texts[0])) <= 8
    names = item_names(ml100k)
    trie = TitleTrie(lm, names)
    items = lm.generate_constrained([lm.chat("Recommend a science-fiction movie.")], trie, n=3)[0]
    assert 1 <= len(items) <= 3 and len(set(items)) == len(items)
    assert all(0 <= i < ml100k.n_items for i in items)


def test_llmrank_rankers_score_titles_by_likelihood(lm, loo):
    task = make_llmrank_task(loo, "test", seed=2020).subset(np.arange(3))
    ranker = get_model("llm-zeroshot").fit(loo, lm=lm)
    assert "SmolLM2" in ranker.model_name
    scores = candidate_scores(ranker, task)
    assert scores.shape == (3, 20) and torch.isfinite(scores).all()
    # the score of a candidate is log p(title, END | the user's prompt), computed here directly
    prompt = ranker.prompt(task.history[1])
    direct = lm.score_continuations(prompt, [ranker.names[i] + lm.end_text for i in task.candidates[1]]).sum
    assert torch.allclose(scores[1], direct, atol=1e-3)
    assert all(ranker.names[i] in prompt for i in task.history[1][-3:])
    # calibration subtracts the same titles' log-likelihood under the no-history prompt
    calibrated = get_model("llm-calibrated").fit(loo, lm=lm)
    neutral = calibrated.neutral_scores(task.candidates[0])
    assert np.allclose(candidate_scores(calibrated, task.subset([0]))[0].numpy(), scores[0].numpy() - neutral, atol=1e-3)
    # evaluating the ranker is ranking these very scores (random ties, the task's seed)
    assert evaluate_llmrank(ranker, task).per_user["rank"].tolist() == candidate_metrics(scores, task).per_user["rank"].tolist()


def test_prompt_truncation_drops_oldest_history(lm, loo):
    ranker = get_model("llm-zeroshot", max_prompt_tokens=120).fit(loo, lm=lm)
    history = list(range(20))
    prompt = ranker.prompt(history)
    assert ranker.truncated_ > 0 and lm.n_tokens(prompt) <= 120
    assert ranker.names[19] in prompt and ranker.names[0] not in prompt


def test_plain_prompt_format_for_models_without_a_chat_template(lm, loo):
    task = make_llmrank_task(loo, "test", seed=2020).subset(np.arange(2))
    chat = get_model("llm-zeroshot").fit(loo, lm=lm)
    plain = get_model("llm-zeroshot", prompt_format="plain").fit(loo, lm=lm)
    history, candidates = task.history[0], task.candidates[0]
    # the chat default is untouched: the chat template, titles ending with the end-of-answer token
    body = chat.history_text(list(history)[-20:]) + chat._ask()
    assert chat.prompt(history) == lm.chat(body, system="You are a movie recommender.")
    assert chat.continuation(int(candidates[0])) == chat.names[int(candidates[0])] + lm.end_text
    # plain: the numbered history (no template, no system message) ends with the next number; a title continues it
    prompt = plain.prompt(history)
    assert "<|im_start|>" not in prompt and prompt.endswith("\n21.") and prompt.startswith("I have watched")
    assert plain.continuation(int(candidates[0])) == f" {plain.names[int(candidates[0])]}\n"
    scores = candidate_scores(plain, task)
    direct = lm.score_continuations(prompt, [f" {plain.names[i]}\n" for i in candidates]).sum
    assert torch.allclose(scores[0], direct, atol=1e-3) and not torch.allclose(scores[0], candidate_scores(chat, task)[0])
    assert get_model("llm-calibrated", prompt_format="plain").fit(loo, lm=lm).neutral_prompt().endswith("first:\n1.")
    with pytest.raises(ValueError, match="unknown prompt_format"):
        get_model("llm-zeroshot", prompt_format="raw")
    with pytest.raises(ValueError, match="likelihood only"):
        get_model("llm-pointwise", prompt_format="plain")


def test_llm_models_ask_for_the_llmrank_protocol(capsys):
    from genrec_lib.cli import main

    assert main(["bench", "--model", "llm-zeroshot", "--protocol", "loo"]) == 2
    assert "use --protocol llmrank" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown scoring"):
        get_model("llm-zeroshot", scoring="vibes")
