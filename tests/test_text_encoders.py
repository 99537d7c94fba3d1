"""all-MiniLM-L6-v2 sentence embeddings: shape, unit norm, semantics, batching invariance."""

import pytest
import torch

from genrec_lib.assets import AssetMissingError, minilm_dir
from genrec_lib.text_encoders import EMBEDDING_DIM, encode_texts, mean_pool

try:
    minilm_dir()
except AssetMissingError as error:  # pragma: no cover - the wheel is a declared dependency
    pytest.skip(str(error), allow_module_level=True)

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "Aladdin (1992). Genres: Animation, Children's, Comedy, Musical.",
    "Scream (1996). Genres: Horror, Thriller.",
    "The Shining (1980). Genres: Horror.",
]


def test_shape_and_unit_norm():
    E = encode_texts(TEXTS, device="cpu")
    assert E.shape == (4, EMBEDDING_DIM) and E.dtype == torch.float32
    assert torch.allclose(E.norm(dim=1), torch.ones(4), atol=1e-5)


def test_similar_items_are_closer():
    E = encode_texts(TEXTS, device="cpu")
    S = E @ E.T
    assert S[0, 1] > S[0, 2] and S[0, 1] > S[0, 3]  # two animated comedies
    assert S[2, 3] > S[2, 0] and S[2, 3] > S[2, 1]  # two horror films


def test_batching_and_order_do_not_change_embeddings():
    a = encode_texts(TEXTS, batch_size=1, device="cpu")
    b = encode_texts(TEXTS[::-1], batch_size=3, device="cpu").flip(0)
    assert torch.allclose(a, b, atol=1e-5)


def test_mean_pool_ignores_padding():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.allclose(mean_pool(states, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
    first = encode_texts(TEXTS[:2], device="cpu", cache=True)
    assert len(list(tmp_path.glob("minilm-*.pt"))) == 1
    assert torch.equal(encode_texts(TEXTS[:2], device="cpu", cache=True), first)


def test_empty_and_bad_arguments():
    assert encode_texts([]).shape == (0, EMBEDDING_DIM)
    with pytest.raises(ValueError, match="batch_size"):
        encode_texts(TEXTS, batch_size=0)
