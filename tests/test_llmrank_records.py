"""Two-sided bands on the llmrank benchmark records that chapter 12 reads (measured outside CI).

Each record's numbers are re-derived from its per-user scores and held to bands whose floors
sit at what the chapter says of them (random ranking .227, popularity) and whose ceilings sit
near the best credible value (a leaked target scores near 1).
"""

import numpy as np
import pytest

from genrec_lib.evaluation.llmrank import random_expectation
from genrec_lib.evaluation.stats import paired_test
from genrec_lib.results import benchmark_record

CHANCE = random_expectation()["ndcg@10"]  # .227

# llmrank_finetuned (uniform negatives, 200 users): Pop ~.53; BPR and SASRec must beat it; P5 with item tokens must
# clear Pop (the chapter says so); text models sit between chance and Pop; TALLRec is at chance (the chapter says so
# and explains it): a TALLRec clearly above chance would fail here, and the chapter's explanation with it.
FINETUNED = {
    "pop": (0.45, 0.62), "bpr": (0.55, 0.80), "sasrec": (0.55, 0.82), "llm-p5": (0.53, 0.80),
    "llm-p5:n_examples=400": (0.45, 0.80), "llm-p5:init=random": (0.35, 0.75), "llm-p5:item_repr=id": (0.25, 0.65),
    "llm-zeroshot": (0.25, 0.55), "llm-tallrec": (0.15, 0.32),
}

# llmrank_candidates: the same 200 users on three candidate sets. Popularity-matched negatives take Pop's advantage
# away (about chance); on retrieved candidates the first stage (BPR) ranks the target last wherever it missed it.
CANDIDATES = {
    # Pop and BPR are deterministic here (seeded ties): narrow bands; BPR beats Pop on uniform and matched negatives.
    "uniform": {"pop": (0.50, 0.56), "bpr": (0.60, 0.76), "sasrec": (0.55, 0.82), "llm-p5": (0.45, 0.75),
                "llm-zeroshot": (0.25, 0.55), "llm-tallrec": (0.15, 0.32),
                # chapter 10's few-shot prompt and calibrated score (the no-history score subtracted: it drops the
                # popularity prior, so it may sit near or below chance here); no claim above chance is made for them
                "llm-fewshot": (0.15, 0.55), "llm-calibrated": (0.10, 0.55)},
    # matched negatives: Pop about chance (.227), a personalised model above it
    "popularity": {"pop": (0.22, 0.30), "bpr": (0.40, 0.65), "sasrec": (0.30, 0.65), "llm-p5": (0.23, 0.50),
                   "llm-zeroshot": (0.15, 0.45), "llm-fewshot": (0.15, 0.45), "llm-calibrated": (0.10, 0.45),
                   "llm-tallrec": (0.10, 0.40)},
    # retrieved: the first stage's own order puts a missed target last (far below chance); a reranker that
    # follows popularity falls below chance too (the shortlist holds the popular films BPR prefers)
    "retrieved": {"pop": (0.05, 0.25), "bpr": (0.03, 0.12), "sasrec": (0.05, 0.40), "llm-p5": (0.05, 0.30),
                  "llm-zeroshot": (0.03, 0.40), "llm-fewshot": (0.03, 0.40), "llm-calibrated": (0.03, 0.40),
                  "llm-tallrec": (0.03, 0.40)},
}


# llmrank_history: the uniform set's 200 users with the history cut to L items (SASRec's window, P5's item-token
# history, the zero-shot prompt's titles). SASRec beats Pop (.528) at every length; each language model stays above
# chance (.227) at every length (chapter 12 says both); ceilings near the best credible value (SASRec ~.73 at L=20).
HISTORY = {
    "sasrec": {5: (0.55, 0.82), 10: (0.55, 0.82), 20: (0.55, 0.82), 50: (0.55, 0.82)},
    "llm-p5": {5: (0.30, 0.75), 10: (0.30, 0.75), 20: (0.45, 0.75), 50: (0.30, 0.75)},
    "llm-zeroshot": {5: (0.24, 0.55), 10: (0.24, 0.55), 20: (0.25, 0.55), 50: (0.24, 0.55)},
}


@pytest.fixture(scope="module")
def finetuned():
    return benchmark_record("llmrank_finetuned")


@pytest.fixture(scope="module")
def candidates():
    return benchmark_record("llmrank_candidates")


@pytest.mark.parametrize("spec", sorted(FINETUNED))
def test_finetuned_record_in_band(finetuned, spec):
    low, high = FINETUNED[spec]
    value = float(np.mean(finetuned["models"][spec]["ndcg@10"]))
    assert low <= value <= high, f"llmrank_finetuned {spec}: NDCG@10 {value:.3f} outside ({low}, {high})"


def test_finetuned_claims(finetuned):
    ndcg = {spec: np.array(m["ndcg@10"]) for spec, m in finetuned["models"].items()}
    # P5 with item tokens beats popularity, and TALLRec is not distinguishable from chance (chapter 12 says both)
    assert ndcg["llm-p5"].mean() > ndcg["pop"].mean()
    assert paired_test(ndcg["llm-tallrec"], np.full(len(ndcg["llm-tallrec"]), CHANCE)) > 0.05


def test_candidates_record_in_band(candidates):
    # every recorded (set, model) has a band, and lies in it; a model not yet measured is simply absent
    for kind, rows in candidates["results"].items():
        for name, row in rows.items():
            assert name in CANDIDATES[kind], f"llmrank_candidates {kind}/{name} has no band here: add one"
            low, high = CANDIDATES[kind][name]
            value = float(np.mean(row["ndcg@10"]))
            assert low <= value <= high, f"llmrank_candidates {kind}/{name}: NDCG@10 {value:.3f} outside ({low}, {high})"
    assert {"pop", "bpr"} <= set(candidates["results"]["retrieved"])  # Pop and the first stage on every set


def test_candidates_record_is_consistent(candidates):
    users = candidates["protocol"]["users"]
    assert len(users) == 200 and set(candidates["results"]) <= {"uniform", "popularity", "retrieved"}
    for kind, rows in candidates["results"].items():
        assert len(candidates["sets"][kind]["targets"]) == len(users)
        for name, row in rows.items():
            # every ranker on all 200 users (the few-shot rows once held the first 100 only)
            assert len(row["ndcg@10"]) == len(users) and "users_subset" not in row, (kind, name, len(row["ndcg@10"]))
            assert abs(np.mean(row["ndcg@10"]) - row["metrics"]["ndcg@10"]) < 1e-3, (kind, name)
            if name != "pop":
                assert "lift_over_pop" in candidates["tests"][kind][name], (kind, name)
    # the uniform set is the task of llmrank_finetuned: the shared Pop rows agree user by user
    finetuned = benchmark_record("llmrank_finetuned")
    assert finetuned["models"]["pop"]["users"] == users
    assert np.allclose(finetuned["models"]["pop"]["ndcg@10"], candidates["results"]["uniform"]["pop"]["ndcg@10"])


# llmrank_hybrid (LLaRA on the same 200 users, page 12c): floors at what the page compares with (Pop; chance on the
# retrieved set, where the first stage's own order sits below it), ceilings near SASRec's best credible values.
HYBRID = {
    "uniform": {"pop": (0.50, 0.56), "sasrec": (0.60, 0.82), "llm-llara (hybrid)": (0.53, 0.80),
                "llm-llara (titles)": (0.40, 0.80), "llm-llara (frozen)": (0.40, 0.80)},
    "popularity": {"pop": (0.22, 0.30), "sasrec": (0.40, 0.70), "llm-llara (hybrid)": (0.25, 0.65),
                   "llm-llara (titles)": (0.15, 0.65), "llm-llara (frozen)": (0.15, 0.65)},
    "retrieved": {"pop": (0.05, 0.25), "sasrec": (0.10, 0.45), "llm-llara (hybrid)": (0.05, 0.40),
                  "llm-llara (titles)": (0.03, 0.40), "llm-llara (frozen)": (0.03, 0.40)},
}


@pytest.fixture(scope="module")
def hybrid():
    return benchmark_record("llmrank_hybrid")


def test_hybrid_record_in_band(hybrid):
    for kind, rows in hybrid["results"].items():
        for name, row in rows.items():
            low, high = HYBRID[kind][name]
            value = float(np.mean(row["ndcg@10"]))
            assert low <= value <= high, f"llmrank_hybrid {kind}/{name}: NDCG@10 {value:.3f} outside ({low}, {high})"
    assert "llm-llara (hybrid)" in hybrid["results"]["uniform"]


def test_hybrid_record_is_consistent(hybrid, candidates):
    # same users and targets as the candidate-set record, Pop identical user by user, one rank per user for the cascade
    assert hybrid["protocol"]["users"] == candidates["protocol"]["users"]
    for kind, rows in hybrid["results"].items():
        assert hybrid["protocol"]["targets"][kind] == candidates["sets"][kind]["targets"], kind
        assert np.allclose(rows["pop"]["ndcg@10"], candidates["results"][kind]["pop"]["ndcg@10"]), kind
        for name, row in rows.items():
            assert abs(np.mean(row["ndcg@10"]) - row["metrics"]["ndcg@10"]) < 1e-3, (kind, name)
    ranks = np.asarray(hybrid["protocol"]["first_stage_target_rank"])
    assert len(ranks) == 200 and ranks.min() >= 1
    # where the first stage ranked the target in its top 20, its own NDCG@10 on the retrieved set is that rank's
    bpr = np.asarray(candidates["results"]["retrieved"]["bpr"]["ndcg@10"])
    top10 = ranks <= 10
    assert np.allclose(bpr[top10], 1 / np.log2(ranks[top10] + 1), atol=1e-5)
    assert np.all(bpr[ranks > 10] == 0)


# llmrank_size (page 12c's size comparison; SmolLM2-135M vs Gemma 3 270M on the same users, one thread). SmolLM2's P5
# is trained again in that run: the page holds it within .03 of chapter 12's recorded P5 (.588). Gemma's P5 sits above
# Pop (.528; the page says so, from the record's paired test); zero-shot with the plain prompt sits above chance (.227)
# for both models; ceilings near the best credible value (SASRec ~.72; a leak reaches ~1).
SIZE = {("smollm2-135m", "p5"): (0.558, 0.618), ("gemma3-270m", "p5"): (0.53, 0.80),
        ("smollm2-135m", "zero-shot (plain)"): (CHANCE, 0.60), ("gemma3-270m", "zero-shot (plain)"): (CHANCE, 0.75),
        ("smollm2-135m", "zero-shot (chat)"): (0.25, 0.55)}


def test_size_record(hybrid, finetuned):
    size = benchmark_record("llmrank_size")
    smol, gemma = size["models"]["smollm2-135m"], size["models"]["gemma3-270m"]
    assert size["protocol"]["users"] == hybrid["protocol"]["users"]
    assert np.allclose(size["pop"]["ndcg@10"], finetuned["models"]["pop"]["ndcg@10"], atol=1e-6)
    assert np.allclose(smol["arms"]["zero-shot (chat)"]["ndcg@10"], finetuned["models"]["llm-zeroshot"]["ndcg@10"])
    # page 12c: twice the parameters, pretrained (not instruction-tuned), slower per token in a forward pass
    assert gemma["parameters"] >= 1.9 * smol["parameters"] and gemma["instruction_tuned"] is False
    assert not gemma["gguf"]["has_chat_template"] and smol["gguf"]["has_chat_template"]
    assert 20 < gemma["speed"]["forward_tokens_per_cpu_second"] < smol["speed"]["forward_tokens_per_cpu_second"] < 5000
    for model in (smol, gemma):
        assert 20 < model["arms"]["p5"]["train_tokens_per_cpu_second"] < 5000
        assert 20 < model["arms"]["zero-shot (plain)"]["scoring_tokens_per_cpu_second"] < 5000
    for (name, arm), (low, high) in SIZE.items():
        row = size["models"][name]["arms"][arm]
        value = float(np.mean(row["ndcg@10"]))
        assert low <= value <= high, f"llmrank_size {name}/{arm}: NDCG@10 {value:.3f} outside ({low}, {high})"
        assert abs(value - row["metrics"]["ndcg@10"]) < 1e-3, (name, arm)
    # zero-shot: both models on the same first users, at least 100 (the page's claims rest on them)
    n = len(gemma["arms"]["zero-shot (plain)"]["ndcg@10"])
    assert n == len(smol["arms"]["zero-shot (plain)"]["ndcg@10"]) >= 100
    # the recorded tests are the per-user values' paired t-tests
    pairs = {"gemma vs smollm2, p5": (gemma["arms"]["p5"], smol["arms"]["p5"]),
             "gemma vs smollm2, zero-shot (plain)": (gemma["arms"]["zero-shot (plain)"], smol["arms"]["zero-shot (plain)"])}
    for key, (a, b) in pairs.items():
        p = paired_test(np.asarray(a["ndcg@10"]), np.asarray(b["ndcg@10"]))
        assert np.isclose(size["tests"][key]["p"], p, rtol=1e-2, atol=1e-12), key
        assert size["tests"][key]["p"] <= size["tests"][key]["p_holm"] <= 1
    assert size["tests"]["gemma p5 vs pop"]["lift"] > 0 and size["tests"]["gemma p5 vs pop"]["p_holm"] < 0.05


def test_candidates_cascade(candidates):
    # the retrieved set read as a cascade: recomputed from the per-user scores and the first stage's ranks
    cascade = candidates.get("cascade")
    if not cascade:
        pytest.skip("the record holds no cascade view (no first-stage ranks)")
    ranks = np.asarray(candidates["sets"]["retrieved"]["first_stage_target_rank"])
    inside = ranks <= cascade["top"]
    # BPR retrieves the target in its top 20 of ~1,600 unseen films for a minority of users (32 of 200 recorded);
    # none would mean a broken rank, most a leak
    assert 15 <= cascade["n_retrieved"] == inside.sum() <= 80 and cascade["n_users"] == len(ranks) == 200
    first = np.asarray(candidates["results"]["retrieved"]["bpr"]["ndcg@10"])
    assert set(cascade["models"]) == set(candidates["results"]["retrieved"])
    for name, item in cascade["models"].items():
        ndcg = np.asarray(candidates["results"]["retrieved"][name]["ndcg@10"])
        keep = inside[: len(ndcg)]  # a row scored on the first n users only
        assert abs(ndcg[keep].mean() - item["ndcg@10_retrieved_users"]) < 1e-3, name
        assert abs(ndcg[keep].sum() / len(ndcg) - item["ndcg@10_end_to_end"]) < 1e-3, name
        if name != "bpr":
            mine, theirs = ndcg[keep], first[: len(ndcg)][keep]
            assert (item["wins"], item["losses"]) == (int((mine > theirs).sum()), int((mine < theirs).sum())), name
    # where BPR missed the target, its own order puts it last: NDCG@10 0 on every such user (the degenerate whole-set view)
    assert np.all(first[~inside] == 0)


@pytest.fixture(scope="module")
def history():
    return benchmark_record("llmrank_history")


def test_history_record_in_band(history):
    # every recorded (model, length) has a band, and lies in it; a length not yet measured is simply absent
    assert history["results"], "llmrank_history records no row"
    for name, rows in history["results"].items():
        for length, row in rows.items():
            assert int(length) in HISTORY.get(name, {}), f"llmrank_history {name} at L={length} has no band here: add one"
            low, high = HISTORY[name][int(length)]
            value = float(np.mean(row["ndcg@10"]))
            assert low <= value <= high, f"llmrank_history {name} L={length}: NDCG@10 {value:.3f} outside ({low}, {high})"


def test_history_record_is_consistent(history, candidates):
    # the same 200 users, targets and candidates as the uniform set of llmrank_candidates
    protocol = history["protocol"]
    assert protocol["users"] == candidates["protocol"]["users"] and protocol["candidates"] == "uniform"
    assert protocol["targets"] == candidates["sets"]["uniform"]["targets"]
    assert protocol["candidates_checksum"] == candidates["sets"]["uniform"]["candidates_checksum"]
    pairs = 0
    for name, rows in history["results"].items():
        for length, row in rows.items():
            assert len(row["ndcg@10"]) == len(protocol["users"]), (name, length)
            assert abs(np.mean(row["ndcg@10"]) - row["metrics"]["ndcg@10"]) < 1e-3, (name, length)
            key = "max_seq_len" if name == "sasrec" else "n_history"
            assert row["overrides"][key] == int(length), (name, length, row["overrides"])
        pairs += len(rows) * (len(rows) - 1) // 2
        # every pair of lengths is tested, and Holm never lowers a p-value
        assert len(history["tests"].get(name, {})) == len(rows) * (len(rows) - 1) // 2, name
        assert all(t["p_holm"] >= t["p"] for t in history["tests"].get(name, {}).values()), name
    assert sum(len(t) for t in history["tests"].values()) == pairs
    # a cell the protocol leaves out says why (chapter 12 prints it), and is not also recorded
    for name, rows in protocol.get("not_run", {}).items():
        for length, why in rows.items():
            assert int(length) not in protocol["lengths"][name] and length not in history["results"].get(name, {})
            assert why.startswith("not measured: "), (name, length, why)


# llm_fairness (chapter 17, section 7): the zero-shot ranker scored under a neutral prompt and under "I am a woman."
# and "I am a man.". The chapter's conclusions rest on paired tests over at least 100 users. The own-value top 5
# stays far closer to the neutral one than two random top-5 lists of 20 candidates (Jaccard ~.15) yet is not always
# identical (1.0: the statement never reached the prompt); the neutral ranking finds the held-out film above chance
# (.227) and below a leaked target (1.0).
FAIRNESS = {"users": (100, 200), "jaccard.own_value": (0.30, 0.99), "ndcg.neutral": (0.23, 0.75)}


@pytest.fixture(scope="module")
def fairness_record():
    return benchmark_record("llm_fairness")


def test_fairness_record_is_consistent(fairness_record):
    settings, rows = fairness_record["settings"], fairness_record["users"]
    assert len({r["row"] for r in rows}) == len({r["user"] for r in rows}) == len(rows)
    assert [r["row"] for r in rows] == sorted(r["row"] for r in rows)
    for r in rows:
        assert set(r["scores"]) == set(fairness_record["statements"]) and r["gender"] in {"F", "M"}, r["row"]
        assert len(r["candidates"]) == settings["n_candidates"] and r["target"] in r["candidates"], r["row"]
        assert all(len(s) == settings["n_candidates"] and np.isfinite(s).all() for s in r["scores"].values()), r["row"]


def test_fairness_record_in_band(fairness_record):
    from genrec_lib.risks.fairness import jaccard_at_k, top_k_lists

    rows, seed = fairness_record["users"], fairness_record["settings"]["seed"]
    users = np.array([r["user"] for r in rows])
    scores = {p: np.array([r["scores"][p] for r in rows]) for p in fairness_record["statements"]}
    women = np.array([r["gender"] == "F" for r in rows])
    own = np.where(women[:, None], scores["gender=F"], scores["gender=M"])
    jaccard = jaccard_at_k(top_k_lists(own, 5, users=users, seed=seed),
                           top_k_lists(scores["neutral"], 5, users=users, seed=seed)).mean()
    target = np.array([r["candidates"].index(r["target"]) for r in rows])
    top10 = top_k_lists(scores["neutral"], 10, users=users, seed=seed)
    hit = top10 == target[:, None]
    ndcg = np.where(hit.any(1), 1 / np.log2(hit.argmax(1) + 2), 0.0).mean()
    for name, value in (("users", len(rows)), ("jaccard.own_value", jaccard), ("ndcg.neutral", ndcg)):
        low, high = FAIRNESS[name]
        assert low <= value <= high, f"llm_fairness {name}: {value:.3f} outside ({low}, {high})"
