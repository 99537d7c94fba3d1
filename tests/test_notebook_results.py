"""The headline numbers each notebook recorded lie within two-sided bands.

These run after the notebooks (see the root conftest.py). A chapter whose notebook did not
run in this session is skipped; one that ran must have written fresh results.
"""

import json

import pytest

from genrec_lib.results import read, results_dir

# chapter -> {recorded name: (low, high)}. Two-sided: "low" is the floor a chapter must
# reach; "high" a ceiling that an honest run does not cross, so that a leak (a model that
# sees its test items, ties broken in a model's favour) fails as surely as a regression.
# Ceilings sit well above what the best model of the chapter's family reaches on this
# protocol (e.g. EASE's ~.33 NDCG@10 on random) but below what leaked scores look like.
BANDS = {
    "02_protocols_metrics_baselines": {
        # Pop: deterministic up to ties, .138. Ceilings a few hundredths above EASE's .329, the best
        # credible value on this split (CI: ItemKNN .279, BPR .292), so that a partial leak fails
        "pop.test.ndcg@10": (0.133, 0.143), "itemknn.test.ndcg@10": (0.270, 0.34),
        "bpr.test.ndcg@10": (0.280, 0.35), "ease.test.ndcg@10": (0.315, 0.36),
        # leave-one-out with random tie order and the input cut before the target (chapter 02's tie section);
        # a constant scorer must sit near chance (~.006): ties broken by item index gave .020
        "loo.pop.test.ndcg@10": (0.030, 0.055), "ties.constant_scorer_hit@10": (0.0, 0.012),
    },
    # random split: floors above ItemKNN (.279, which 03 and 05 claim to beat) or Pop (04); ceilings a few
    # hundredths above EASE's .329 (CI: Mult-VAE .303, Mult-DAE .292, CFGAN .282, DiffRec .312)
    "03_variational_autoencoders": {"multvae.test.ndcg@10": (0.290, 0.35), "multdae.test.ndcg@10": (0.280, 0.35)},
    "04_adversarial_recommenders": {"cfgan.test.ndcg@10": (0.275, 0.35)},
    "05_diffusion_recommenders": {"diffrec.test.ndcg@10": (0.305, 0.35)},
    "06_autoregressive_recommenders": {
        # loo: Pop .040-.044; CI SASRec .096 (HR@10 .186), BERT4Rec .074, GRU4Rec .072; the best reported
        # here with longer training is about .10, so ceilings sit at .13
        "sasrec.test.ndcg@10": (0.060, 0.13), "sasrec.test.hit@10": (0.12, 0.25),
        "bert4rec.test.ndcg@10": (0.055, 0.13), "gru4rec.test.ndcg@10": (0.050, 0.13),
        # without masking, already-rated items take top places: the number falls (.054, .043, .051 against
        # masked .096, .077, .072 in a run of this chapter), and a value at the masked level (> .065) would
        # mean the convention was not applied
        "sasrec.test.ndcg@10.unmasked": (0.015, 0.065), "bert4rec.test.ndcg@10.unmasked": (0.015, 0.065),
        "gru4rec.test.ndcg@10.unmasked": (0.015, 0.065),
    },
    # loo (chance ~.003): TIGER .052 in CI (.066 with 20 epochs); sequential models reach about .10 here
    "07_semantic_id_generative_retrieval": {"tiger.test.ndcg@10": (0.040, 0.12)},
    # The same models, splits and ties as chapter 02 (Pop .138 and EASE .329 on random, deterministic);
    # on loo EASE .071 against Pop .040
    "16_evaluating_generative_recommenders": {
        "random.pop.test.ndcg@10": (0.133, 0.143), "random.itemknn.test.ndcg@10": (0.270, 0.34),
        "random.ease.test.ndcg@10": (0.315, 0.36), "loo.pop.test.ndcg@10": (0.030, 0.055),
        "loo.ease.test.ndcg@10": (0.055, 0.10),
        # 20 llmrank candidates (random .227): popularity .528, EASE and ItemKNN about .65 (their
        # floors sit above Pop); no model of the book reaches .80 honestly on these candidates
        "llmrank.pop.test.ndcg@10": (0.45, 0.62), "llmrank.ease.test.ndcg@10": (0.55, 0.80),
        "llmrank.itemknn.test.ndcg@10": (0.55, 0.80),
    },
    "17_risks_and_harms": {
        # long-tail items get far less than their 80% share of the catalogue; a leak would not change this
        "exposure.ease.long_tail_share": (0.0, 0.5),
        # an overfit Mult-VAE leaks membership (AUC > .5); an AUC near 1 would mean the attack reads labels
        "privacy.mia_auc.overfit": (0.55, 0.95), "privacy.mia_auc.regularised": (0.40, 0.90),
        "feedback.multvae_exploration.coverage_last": (0.30, 1.0),
        # fake accounts holding the head of the catalogue lift a mid-list target (ItemKNN: about .06 clean)
        # for several models; identical fakes are all caught, and removing them restores the clean level
        "poison.models_lifted_by_head": (2, 3), "poison.itemknn.head@5%": (0.08, 0.40),
        "poison.clone.fakes_caught": (1.0, 1.0), "poison.itemknn.head@5%.clone": (0.0, 0.10),
        # an over-trained SASRec copies members' continuations (all of them would mean the truth leaked into
        # the prompt), never non-members'; dropout with early stopping copies none, sampling fewer than greedy
        "memorisation.overtrained.members.verbatim": (0.30, 0.97),
        "memorisation.overtrained.non_members.verbatim": (0.0, 0.05),
        "memorisation.overtrained.members_shuffled.verbatim": (0.0, 0.05),
        "memorisation.regularised.members.verbatim": (0.0, 0.05), "memorisation.sampled.members.verbatim": (0.02, 0.70),
        # without an injection the attacked candidate is first about 1/6 of the time (6 candidates, few users);
        # the pointwise payload lifts it, titles-only scoring never shows the payload
        "injection.clean.success": (0.0, 0.6), "injection.pointwise.clean.success": (0.0, 0.6),
        "injection.pointwise.injected.success": (0.30, 1.0), "injection.pointwise.titles_only.success": (0.0, 0.6),
        # constrained decoding spells catalogue titles only; free generation misses some (never all, if parsing works)
        "hallucination.constrained.not_in_catalogue_share": (0.0, 0.0),
        "hallucination.free.not_in_catalogue_share": (0.0, 0.90),
        # a 135M judge agreeing almost perfectly with string checks would mean it was shown their verdicts;
        # one far below chance (kappa 0) would mean its Yes and No were swapped
        "judge.kappa": (-0.5, 0.8),
        # an LLM told the user's gender (FaiRLLM, section 7): the record matches the chapter's own scores; the
        # own-value top 5 stays far closer to the neutral one than two random top-5 lists (Jaccard .15), and
        # identical lists (1.0) would mean the statement never reached the prompt; llmrank NDCG@10 from the neutral
        # prompt sits above chance (.227) and well below 1 (a leaked target). The chapter's conclusions rest on
        # paired tests over at least 100 recorded users
        "llm_fairness.tie_gap": (0.0, 0.05), "llm_fairness.users": (100, 200),
        "llm_fairness.jaccard.own_value": (0.30, 0.99), "llm_fairness.ndcg.neutral": (0.23, 0.75),
    },
    "08_flows_flow_matching": {
        # random split (CI: FlowCF .309, planar-flow VAE .303, Mult-VAE .303, DiffRec .312; EASE .329 the best)
        "flowcf.test.ndcg@10": (0.305, 0.35), "planarvae.test.ndcg@10": (0.280, 0.35),
        "multvae.test.ndcg@10": (0.280, 0.35), "diffrec.test.ndcg@10": (0.295, 0.35),
    },
    "09_structured_outputs": {
        # CI: EASE greedy .329, MMR .326, List-CVAE .193-.202
        "slate.ease_greedy.ndcg_at_10": (0.300, 0.36), "slate.ease_mmr.ndcg_at_10": (0.280, 0.36),
        "slate.listcvae_slate.ndcg_at_10": (0.100, 0.30),
        # Bundles of 3 against the held-out bundle: popularity sits near .03, the models at .057-.077 in CI;
        # a model that saw the target bundle would pass .15 easily. Coherence of the real bundles is a property of the data.
        "bundle.bgn.f1": (0.040, 0.15), "bundle.bgn_independent.f1": (0.040, 0.15), "bundle.ease.f1": (0.040, 0.15),
        "bundle.pop.f1": (0.010, 0.06), "bundle.real.coherence": (0.40, 0.75),
    },
    # Simulated users (chapter 14): cold items are ranked among themselves, so an ID-only
    # model sits at chance (~.05) and a leak of test interactions would lift it; the
    # image-aware models must clear 1.3-1.5x chance (the chapter's claim). The latent share is
    # set by the simulator (.5); the sweep's ends check both mechanisms.
    "14_joint_image_text_space": {
        "lit.t2i.recall@10": (0.30, 0.90), "lit.i2t.recall@10": (0.30, 0.90),
        "content.cold.ndcg@10": (0.08, 0.45), "vbpr.cold.ndcg@10": (0.065, 0.45), "bpr.cold.ndcg@10": (0.02, 0.10),
        "pop.warm.ndcg@10": (0.015, 0.06), "bpr.warm.ndcg@10": (0.10, 0.35), "vbpr.warm.ndcg@10": (0.10, 0.35),
        "content.warm.ndcg@10": (0.01, 0.10), "simulation.latent_share": (0.48, 0.52),
        "sweep.0.1.content.cold.ndcg@10": (0.10, 0.45), "sweep.0.9.bpr.warm.ndcg@10": (0.25, 0.60),
        "request.mixed.ndcg@10": (0.03, 0.30),
        # LiT arm (text tower's top layer trained): held-out chance R@10 is ~.065, R@1 ~.006.
        "lit_unlocked.t2i.recall@10": (0.30, 0.90), "lit_unlocked.t2i.recall@1": (0.05, 0.80),
        "lit_unlocked.i2t.recall@10": (0.30, 0.90),
    },
    # Cosines in the joint space: generated images above random catalogue items (~0), below
    # the nearest catalogue item (~.45, which a copying generator would reach).
    # By the simulated users' utility (percentile over the catalogue): a random item sits at .5,
    # retrieval far above it; a generator that copied the retrieved item would pass .75.
    "15_personalised_image_generation": {
        "request.cos.generated": (0.01, 0.40), "user.cos.generated": (0.005, 0.40),
        "novelty.generated_to_catalogue": (0.02, 0.60),
        "user.utility_percentile.random": (0.45, 0.55), "user.utility_percentile.generated": (0.45, 0.75),
        "user.utility_percentile.retrieved": (0.65, 0.95),
    },
    # llmrank, 20 candidates: chance NDCG@10 is 0.227 (random_expectation). Floors at chance for
    # every ranker the chapter shows above it; ceilings near the best credible value (SASRec
    # ~.72, Pop .53 on all 200 users; a leaked target reaches 1.0). Random on all 200 users sits
    # within ~2.5 standard errors of chance. The shared prompt cache must pay for itself; reading
    # the prompt once instead of 20 times saves at most ~20x (the ceiling leaves room for timing noise).
    # The controls come from genrec_lib/records/llmrank_controls.json, tied to the run by tie_gap.
    "10_llm_zero_shot_rankers": {
        "llm_likelihood.test.ndcg@10": (0.23, 0.75), "random.test.ndcg@10": (0.17, 0.29),
        "pop.test.ndcg@10": (0.23, 0.75), "pop.all200.test.ndcg@10": (0.45, 0.62), "kv_cache.speedup": (3.0, 30.0),
        "controls.tie_gap": (0.0, 5e-3), "controls.n_users": (16, 200),
        "controls.llm_likelihood.ndcg@10": (0.23, 0.75), "controls.pop.ndcg@10": (0.30, 0.65),
        "candidates.pop_tie_gap": (0.0, 1e-5),  # the candidate-set record's Pop is this run's Pop, user by user
    },
    # Full-ranking loo (chance ~.003 NDCG@10; CI: frozen text .015, Pop .040, ItemKNN .061, bi-encoder
    # .072, SASRec .082). Text alone is weak; the trained bi-encoder must beat it (its floor sits at the
    # frozen model's ceiling); sequential models reach about .10 here, so ceilings of .12 catch a
    # partial leak. Recall@50 of the first stage: Pop reaches ~.19, SASRec ~.41.
    # Cold films were in no training data (CI: 77 cold targets): ID models cannot retrieve them, text
    # models can (.10 each), and placing a third of them in a top 50 by text alone would be a leak.
    "11_encoder_retrieval_rag": {
        "minilm_mean.test.ndcg@10": (0.005, 0.035), "biencoder.test.ndcg@10": (0.035, 0.12),
        "pop.test.ndcg@10": (0.030, 0.055), "itemknn.test.ndcg@10": (0.04, 0.12),
        "crossencoder.first_stage.recall@50": (0.20, 0.50), "crossencoder.test.ndcg@10": (0.02, 0.12),
        "cold.best_id.recall@50": (0.0, 0.02), "cold.biencoder.recall@50": (0.02, 0.35),
        "cold.minilm_mean.recall@50": (0.02, 0.35),
    },
    # AUC of SmolLM2's yes/no answers: near chance untuned, and no 135M model tuned on a few
    # hundred instructions reaches 0.9 honestly; llmrank NDCG@10 over 20 candidates (random 0.227).
    "12_fine_tuning_llms": {
        "tallrec.auc_before": (0.25, 0.85), "tallrec.auc_after": (0.55, 0.90),  # 40 pairs: AUC standard error ~.09; a tuning that learns nothing (.5) fails
        # TALLRec ranks at chance on llmrank (the chapter says so): a ceiling catches a contradiction
        "tallrec.llmrank.ndcg@10": (0.0, 0.45), "pop.llmrank.ndcg@10": (0.227, 0.75),
        # P5 and zero-shot on the chapter's 10 llmrank users (an illustration; chance .227): a scorer at or
        # below chance fails, and so does a partial leak (the 200-user best, SASRec, is ~.72); training
        # throughput is tokens per CPU-second
        "p5.title.llmrank.ndcg@10": (0.227, 0.80), "p5.id.llmrank.ndcg@10": (0.227, 0.80),
        "zeroshot.llmrank.ndcg@10": (0.227, 0.80), "p5.train_tokens_per_cpu_second": (5, 5000),
        # all 200 llmrank users: P5 with item tokens must clear .50 (popularity scores ~.53 there);
        # no honest model of this size reaches .85 on these candidates (SASRec ~.72)
        "p5.token.llmrank200.ndcg@10": (0.50, 0.78), "pop.llmrank200.ndcg@10": (0.50, 0.56),
        # popularity-matched negatives (same 200 users): Pop falls to about chance, as the chapter says
        "pop.popularity_matched200.ndcg@10": (0.22, 0.30),
        "bpr.llmrank200.ndcg@10": (0.45, 0.78), "sasrec.llmrank200.ndcg@10": (0.45, 0.78),
        "p5.token.train_tokens_per_cpu_second": (5, 5000),
    },
    # SASRec's item table from text on loo with a fifth of the films cold (in no training data).
    # An ID table cannot retrieve a cold film (HR@50 ~ 0); frozen text tables can (chance: 50 of ~1,600
    # unseen films, HR@50 ~.03; run: .148 for both, interval from .099), rarely at the top (NDCG@10
    # chance ~.003; run .013); on warm films ID embeddings lead (.076 against .032 and .040 for frozen
    # text). Ceilings: a leaked target would break them.
    "12b_llm_item_representations": {
        "id.warm.ndcg@10": (0.04, 0.12), "smollm2_init.warm.ndcg@10": (0.04, 0.12),
        "smollm2_frozen.warm.ndcg@10": (0.01, 0.07), "minilm_frozen.warm.ndcg@10": (0.01, 0.08),
        "id.cold.hit@50": (0.0, 0.02), "smollm2_frozen.cold.hit@50": (0.06, 0.30),
        "minilm_frozen.cold.hit@50": (0.06, 0.30), "smollm2_frozen.cold.ndcg@10": (0.003, 0.06),
    },
    # LLaRA. The records tie to the page's own Pop (1 = identical user by user). Small run (an illustration on
    # 40 users; Pop is deterministic there, .417): the hybrid's bias starts at log popularity, so it sits at
    # or above chance (.227); a leak would reach ~1. The 200-user hybrid (record, .621) must clear Pop (.528)
    # and stay below a leak; the page says it beats P5 with item tokens (Holm p < .05).
    "12c_collaborative_llm": {
        "records_tie": (1, 1), "small.pop.ndcg@10": (0.41, 0.43), "small.hybrid.ndcg@10": (0.227, 0.90),
        "hybrid.uniform.ndcg@10": (0.53, 0.80), "hybrid_vs_p5.uniform.p_holm": (0.0, 0.05),
        "hybrid_vs_sasrec.uniform.lift": (-0.30, 0.10),
    },
    # Success within 10 lists of 5 on 100 simulated users (CI: conversational .89, history only
    # .25): talking must help (the chapter's exact McNemar test, Holm-adjusted) and its floor sits
    # above the baseline's ceiling; a simulator that leaks its target would reach 1.0. The
    # history-only list must beat 50 random unseen films (~.03 of the targets); honesty problems must be 0.
    # The scaling page reads genrec_lib/records/scaling.json (benchmarks/scaling.py). EASE's item x item
    # matrices measured 28-32 bytes per item pair (the co-occurrence product, float32 and float64 copies, the
    # inverse, LAPACK's workspace: fewer than 16 means a matrix was not measured, more than 48 a leak of
    # memory), ItemKNN's 13-18; the 24 GB catalogue follows. An epoch costs batches (linear in the
    # interactions) times a batch, which grows with the user and item tables: a slope under 0.5 means the
    # timing missed the batches, over 2.5 something quadratic in the data
    "18_scaling_up": {
        "ease.bytes_per_item_pair": (16, 48), "ease.largest_items": (15_000, 45_000),
        "itemknn.bytes_per_item_pair": (6, 40),
        "slope.epoch.min": (0.5, 1.5), "slope.epoch.max": (0.8, 2.5),
        # benchmarks/threads.py: with one thread per free core no chapter may take twice its idle time beside one
        # busy process (under 0.8 the idle run was not idle); two threads beside it must cost BPR more than one,
        # or the benchmark did not reproduce the effect the choice exists for
        "threads.chapter_slowdown.max": (0.8, 2.0), "threads.bpr_busy.two_over_one": (1.2, 100),
    },
    "13_conversational_recommendation": {
        "conversational.success@10": (0.50, 0.97), "history_only.success@10": (0.03, 0.45),
        "conversational_vs_history.holm_p": (0.0, 0.05), "honesty.problems": (0, 0),
    },
}


@pytest.mark.results
@pytest.mark.parametrize("chapter", sorted(BANDS))
def test_recorded_results_are_in_band(chapter, notebooks_run, session_start):
    if chapter not in notebooks_run:
        pytest.skip(f"notebook {chapter} did not run in this session")
    path = results_dir() / f"{chapter}.json"
    assert path.is_file(), f"{chapter} ran but recorded nothing in {path}"
    stamp = json.loads(path.read_text())["updated"]
    import time

    assert time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")) >= int(session_start) - 1, "stale results file"
    values = read(chapter)
    for name, (low, high) in BANDS[chapter].items():
        assert name in values, f"{chapter} did not record {name}"
        assert values[name] >= low, f"{chapter}: {name} = {values[name]:.4f} < floor {low}"
        assert values[name] <= high, f"{chapter}: {name} = {values[name]:.4f} > ceiling {high}: a leak?"
    # every chapter's seconds come with the thread count they were measured with (start_chapter records it)
    assert isinstance(values.get("chapter.threads"), int) and values["chapter.threads"] >= 1, \
        f"{chapter} recorded no chapter.threads: does it call start_chapter?"
