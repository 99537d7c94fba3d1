"""LLM item representations: shapes, agreement with transformers' hidden states, determinism,
independence of the batch, clear errors."""

import pytest
import torch

from genrec_lib.models.llm.lm import load_lm
from genrec_lib.models.llm.representations import hidden_state_vectors, n_layers, text_item_vectors
from genrec_lib.text_encoders import mean_pool

TEXTS = ["Toy Story (1995): Animation, Children's, Comedy", "Heat (1995): Action, Crime, Thriller",
         "Fargo (1996): Crime, Drama, Thriller", "Babe (1995): Children's, Comedy, Drama"]


@pytest.fixture(scope="module")
def lm():
    return load_lm()


def test_shapes_and_layers_match_transformers(lm):
    L = n_layers(lm)
    out = hidden_state_vectors(lm, TEXTS, layers=(0, 3, L), pooling="mean", batch_size=2)
    d = lm.model.config.hidden_size
    assert set(out) == {0, 3, L} and all(v.shape == (len(TEXTS), d) and v.dtype == torch.float32 for v in out.values())
    with torch.no_grad():  # one text at a time, no padding: transformers' own hidden states
        for i, text in enumerate(TEXTS[:2]):
            ids = torch.tensor([lm.encode(text)], device=lm.device)
            states = lm.model(ids, output_hidden_states=True).hidden_states
            for layer in (0, 3, L):
                expected = mean_pool(states[layer].float(), torch.ones_like(ids))[0].cpu()
                assert torch.allclose(out[layer][i], expected, atol=1e-4, rtol=1e-4), layer
            last = hidden_state_vectors(lm, [text], layers=(3,), pooling="last")[3][0]
            assert torch.allclose(last, states[3][0, -1].float().cpu(), atol=1e-4)


def test_deterministic_and_independent_of_batching(lm):
    a = hidden_state_vectors(lm, TEXTS, layers=(5,), batch_size=1)[5]
    b = hidden_state_vectors(lm, TEXTS, layers=(5,), batch_size=4)[5]  # padded batch, texts of several lengths
    c = hidden_state_vectors(lm, TEXTS, layers=(5,), batch_size=4)[5]
    assert torch.equal(b, c)
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a[0], a[1], atol=1e-2)  # different films, different vectors


def test_bad_arguments_give_one_line_errors(lm):
    L = n_layers(lm)
    for layers in ((L + 1,), (-1,), ()):
        with pytest.raises(ValueError, match=rf"layers must be in 0..{L}") as error:
            hidden_state_vectors(lm, TEXTS, layers=layers)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="pooling must be one of"):
        hidden_state_vectors(lm, TEXTS, pooling="max")
    with pytest.raises(ValueError, match="non-empty strings"):
        hidden_state_vectors(lm, ["Heat (1995)", ""])
    with pytest.raises(ValueError, match="encoder must be one of"):
        text_item_vectors(None, encoder="bert")
