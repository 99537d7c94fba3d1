"""TALLRec instruction data, the LoRA loop and adapters saved in peft's format."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from genrec_lib.data import load_split
from genrec_lib.models.llm import lora, tallrec


class TemplateOnly:
    """Just the chat template of an LM: enough to build instructions without loading a model."""

    def chat(self, user, system=None, examples=()):
        return f"<s>{system}</s><u>{user}</u><a>"


@pytest.fixture(scope="module")
def split():
    return load_split("ml-100k", "loo", 2020)


def test_training_instructions_come_from_the_training_split_and_are_balanced(split):
    examples = tallrec.training_examples(TemplateOnly(), split.train, 40, seed=3)
    assert len(examples) == 40 and sum(e.label for e in examples) == 20
    train_pairs = set(zip(split.train.user.tolist(), split.train.item.tolist()))
    assert all((e.user, e.item) in train_pairs for e in examples)  # no valid/test interaction is a target
    e = examples[0]
    assert e.prompt == e.prefix + e.continuation and e.continuation.endswith("?</u><a>")
    assert "Will the user like the movie" in e.prompt


def test_ranking_negatives_are_never_interacted_with_in_training(split):
    examples = tallrec.ranking_examples(TemplateOnly(), split.train, 60, seed=1)
    seen = split.train.csr()
    assert sum(e.label for e in examples) == 30
    assert all(seen[e.user, e.item] == (1 if e.label else 0) for e in examples)


def test_heldout_history_is_strictly_before_the_target(split):
    held = tallrec.heldout_examples(TemplateOnly(), split.input("test"), split.test, users=np.arange(50))
    names = tallrec.item_names(split.dataset)
    test_time = dict(zip(split.test.user.tolist(), split.test.timestamp.tolist()))
    data = split.dataset
    for e in held:
        assert names[e.item] in e.continuation
        # every history title belongs to an interaction of this user strictly before the target's second
        earlier = {names[i] for u, i, t in zip(data.user, data.item, data.timestamp) if u == e.user and t < test_time[e.user]}
        body = e.prefix.split("liked these movies: ", 1)[1].split("\nWill", 1)[0]
        liked, disliked = body.split(".\nThe user disliked these movies: ")
        for title in liked.split("; ") + disliked.rstrip(".").split("; "):
            assert title in earlier or title == "nothing yet", title


def test_auc_and_bad_input():
    assert tallrec.auc([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert tallrec.auc([1, 0], [0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="one positive and one negative"):
        tallrec.auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="unknown task"):
        tallrec.TALLRec(task="rate")
    with pytest.raises(ValueError, match="n_examples must be > 0"):
        tallrec.TALLRec(n_examples=0)


def test_left_pad_positions_skip_padding():
    ids, mask, pos = lora.left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos[1, -1] == 0 and pos[0].tolist() == [0, 1, 2]


def test_shared_length_keeps_a_token_of_every_list_and_skips_short_prefixes():
    assert lora.shared_length([[1, 2, 3, 4], [1, 2, 3, 5, 6]], min_shared=1) == 3
    assert lora.shared_length([[1, 2, 3], [1, 2, 3, 4]], min_shared=1) == 2  # the shorter list keeps its last token
    assert lora.shared_length([[7, 2], [1, 2]], min_shared=1) == 0
    assert lora.shared_length([[1, 2, 3, 4], [1, 2, 3, 5]], min_shared=4) == 0  # too short to pay


def test_shared_prefix_pass_equals_the_plain_pass_with_lora_gradients():
    """A tiny random Llama with LoRA: logits of the rows and LoRA gradients, shared prefix or whole sequences."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = lora.add_lora(LlamaForCausalLM(config), r=4, alpha=8).eval()  # eval: no dropout, gradients still flow
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)  # B = 0 at the start would give A no gradient
    shared = [3, 4, 5, 6, 7, 8]
    rests = [[9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19, 20]]
    lora_params = [p for p in model.parameters() if p.requires_grad]

    def run(P):
        ids, mask, positions = lora.left_pad([shared[P:] + r for r in rests], pad_id=0)
        prefix = {"input_ids": torch.tensor([shared[:P]])} if P else None
        logits = lora.forward_shared(model, prefix, mask, positions, input_ids=ids).logits  # (B, T, V)
        last = logits[:, -3:]  # the last three tokens of every row, whose padding differs
        grads = torch.autograd.grad(last.square().mean(), lora_params)
        return last.detach(), grads

    plain, plain_grads = run(0)
    cached, cached_grads = run(len(shared))
    assert torch.allclose(cached, plain, atol=1e-5)
    for g, g0 in zip(cached_grads, plain_grads):
        assert g0.abs().max() > 0 and torch.allclose(g, g0, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_lora_learns_saves_and_reloads(split, tmp_path):
    from genrec_lib.models.llm.lm import LM, load_lm

    lm = load_lm(device="cpu")
    before = {k: v.clone() for k, v in lm.model.state_dict().items() if "q_proj" in k}
    examples = tallrec.training_examples(lm, split.train, 8, n_history=3, seed=0)
    prompts, answers = [e.prompt for e in examples], ["Yes" if e.label else "No" for e in examples]
    model = lora.add_lora(copy.deepcopy(lm.model), r=4, alpha=8)
    tuned = LM(model, lm.tokenizer, "tuned", lm.device)
    log = lora.train_lora(model, lm.tokenizer, prompts, answers, epochs=4, batch_size=4, learning_rate=5e-3, progress=False)
    assert np.mean(log.losses[-2:]) < np.mean(log.losses[:2])  # it fits 8 examples
    s = tallrec.score_examples(tuned, examples)
    y = np.array([e.label for e in examples])
    assert tallrec.auc(y, s) >= 0.75
    lora.save_adapter(model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    reloaded = LM(lora.load_adapter(copy.deepcopy(lm.model), tmp_path / "adapter"), lm.tokenizer, "reloaded", lm.device)
    assert np.allclose(tallrec.score_examples(reloaded, examples), s, atol=1e-4)
    after = {k: v for k, v in lm.model.state_dict().items() if "q_proj" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)  # the shared model is untouched
    with pytest.raises(FileNotFoundError, match="no peft adapter"):
        lora.load_adapter(copy.deepcopy(lm.model), tmp_path)


@pytest.mark.slow
def test_batched_scoring_equals_one_question_at_a_time(split):
    from genrec_lib.models.llm.lm import load_lm

    lm = load_lm(device="cpu")
    users = np.unique(split.test.user)[:6]
    held = tallrec.heldout_examples(lm, split.input("test"), split.test, n_history=3, users=users)
    # two candidates of one user share a prefix: that group keeps the shared-cache path
    held.append(dataclasses.replace(held[0], continuation=held[1].continuation))
    one_by_one = np.array([tallrec.yes_no_scores(lm, e.prefix, [e.continuation])[0] for e in held])
    batched = tallrec.score_examples(lm, held, batch_size=4)
    assert np.abs(batched - one_by_one).max() < 1e-3, np.abs(batched - one_by_one).max()
    assert np.ptp(one_by_one) > 0.01  # the scores differ between questions, so equality means something
    with pytest.raises(ValueError, match="batch_size"):
        tallrec.score_examples(lm, held, batch_size=0)
    # a prompt past the model's context is refused as on the one-at-a-time path, not silently truncated
    too_long = dataclasses.replace(held[0], continuation=" and" * (lm.max_context + 1))
    with pytest.raises(ValueError, match="more than .* context"):
        tallrec.score_examples(lm, [too_long, held[2]])
