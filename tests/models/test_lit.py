"""LiTUnlocked: LiT's configuration (image tower locked, MiniLM's top layers trained with the heads)."""

import pytest
import torch

from genrec_lib.assets import AssetMissingError, minilm_dir
from genrec_lib.models.multimodal.lit import LiT, LiTUnlocked, joint_space, retrieval_ranks, retrieval_recall
from genrec_lib.text_encoders import _load, encode_texts

try:
    minilm_dir()
except AssetMissingError as error:  # pragma: no cover - the wheel is a declared dependency
    pytest.skip(str(error), allow_module_level=True)

COLOURS = ["red", "blue", "green", "yellow", "black", "white"]
THINGS = ["apple", "car", "bird", "house", "flower", "boat", "shoe"]


def pairs(seed=0):
    """Captions 'A red car.' and image features that carry the colour and the thing, plus noise."""
    g = torch.Generator().manual_seed(seed)
    texts, rows = [], []
    for c, colour in enumerate(COLOURS):
        for k, thing in enumerate(THINGS):
            texts.append(f"A {colour} {thing}.")
            rows.append(torch.cat([torch.nn.functional.one_hot(torch.tensor(c), 6), torch.nn.functional.one_hot(torch.tensor(k), 7)]).float())
    x = torch.stack(rows) @ torch.randn(13, 24, generator=g) + 0.1 * torch.randn(len(rows), 24, generator=g)
    return x, texts


def snapshot(module):
    return {name: p.detach().clone() for name, p in module.state_dict().items()}


def test_untrained_top_layers_reproduce_the_library_encoder():
    _, texts = pairs()
    for k in (1, 2):
        lit = LiTUnlocked(image_dim=24, dim=8, unlocked_layers=k)
        states, mask = lit.lower_states(texts)  # (N, T, 384), (N, T)
        assert states.shape[:2] == mask.shape and states.shape[0] == len(texts) and states.shape[2] == 384
        with torch.no_grad():
            pooled = lit.pooled_features(states, mask)
        assert torch.allclose(pooled, encode_texts(texts, device="cpu"), atol=1e-5)
        assert len(lit.text_layers) == k and lit.first_unlocked == 6 - k


def test_fit_trains_the_top_layers_and_leaves_the_locked_ones_alone():
    x, texts = pairs()
    minilm = _load("cpu")[1]
    before_encoder = snapshot(minilm)
    before_features = encode_texts(texts, device="cpu")
    torch.manual_seed(0)
    lit = LiTUnlocked(image_dim=24, dim=8, unlocked_layers=1)
    start = snapshot(lit.text_layers)
    heads = snapshot(lit.g)
    losses = lit.fit(x, texts, epochs=4, unlocked_epochs=2, batch_size=16, text_learning_rate=1e-3, seed=0)
    assert len(losses) == 4 and losses[-1] < losses[0]
    after = snapshot(lit.text_layers)
    assert any(not torch.equal(start[name], after[name]) for name in start)  # the unlocked layer moved
    assert not torch.equal(heads["weight"], lit.g.weight)
    # The library's MiniLM (the locked lower layers and the text encoder of every chapter) did not change.
    assert all(torch.equal(before_encoder[name], value) for name, value in minilm.state_dict().items())
    assert torch.equal(encode_texts(texts, device="cpu"), before_features)
    assert all(p.grad is None for p in minilm.parameters())  # no gradient reached the locked tower
    v, w = lit.encode_image_features(x), lit.encode_texts(texts)
    assert v.shape == w.shape == (len(texts), 8)
    assert torch.allclose(w.norm(dim=1), torch.ones(len(texts)), atol=1e-5)
    # The trained text side differs from the same heads on the locked features.
    with torch.no_grad():
        assert not torch.allclose(w, lit.encode_text_features(before_features), atol=1e-4)


def test_no_unlocked_epochs_is_the_locked_configuration():
    x, texts = pairs()
    torch.manual_seed(1)
    unlocked = LiTUnlocked(image_dim=24, dim=8)
    start = snapshot(unlocked.text_layers)
    torch.manual_seed(1)
    locked = LiT(image_dim=24, text_dim=384, dim=8)  # the same heads at initialisation
    assert torch.equal(locked.g.weight, unlocked.g.weight)
    unlocked.fit(x, texts, epochs=3, unlocked_epochs=0, batch_size=16, seed=0)
    locked.fit(x, encode_texts(texts, device="cpu"), epochs=3, batch_size=16, seed=0)
    assert all(torch.equal(start[name], value) for name, value in snapshot(unlocked.text_layers).items())
    with torch.no_grad():
        assert torch.allclose(unlocked.encode_texts(texts), locked.encode_texts(texts), atol=1e-4)
        assert torch.allclose(unlocked.encode_image_features(x), locked.encode_image_features(x), atol=1e-4)


def test_save_and_reload(tmp_path):
    x, texts = pairs()
    lit = LiTUnlocked(image_dim=24, dim=8)
    lit.fit(x, texts, epochs=2, unlocked_epochs=1, batch_size=16, text_learning_rate=1e-3, seed=0)
    torch.save(lit.state_dict(), tmp_path / "lit.pt")
    again = LiTUnlocked(image_dim=24, dim=8)
    again.load_state_dict(torch.load(tmp_path / "lit.pt"))
    again.eval()
    with torch.no_grad():
        assert torch.equal(again.encode_texts(texts), lit.encode_texts(texts))
    space = joint_space("lit", lit=again)  # the chapters' two calls run the trained text layer
    assert torch.allclose(space.encode_texts(texts[:3]), lit.encode_texts(texts[:3]))


def test_retrieval_ranks_match_recall():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(30, 5, generator=g), dim=1)
    k = torch.nn.functional.normalize(q + 0.5 * torch.randn(30, 5, generator=g), dim=1)
    ranks = retrieval_ranks(q, k)
    assert ranks.shape == (30,) and int(ranks.min()) >= 0 and int(ranks.max()) < 30
    assert retrieval_recall(q, k, ks=(1, 5))["R@5"] == pytest.approx(float((ranks < 5).float().mean()))
    assert retrieval_ranks(k, k).eq(0).all()


def test_bad_settings_fail_with_one_line():
    x, texts = pairs()
    with pytest.raises(ValueError, match="unlocked_layers must be 1..6"):
        LiTUnlocked(unlocked_layers=0)
    lit = LiTUnlocked(image_dim=24, dim=8)
    with pytest.raises(ValueError, match="caption strings"):
        lit.fit(x, encode_texts(texts, device="cpu"))
    with pytest.raises(ValueError, match="matched pairs"):
        lit.fit(x[:5], texts)
    with pytest.raises(ValueError, match="matched pairs"):
        lit.fit(x[:5], lit.lower_states(texts))
    with pytest.raises(ValueError, match="cannot exceed epochs"):
        lit.fit(x, texts, epochs=2, unlocked_epochs=3)
    with pytest.raises(ValueError, match="text_learning_rate must be >= 0"):
        lit.fit(x, texts, text_learning_rate=-1.0)
