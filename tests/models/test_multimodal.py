"""LiT (joint space), VBPR, the content model and the conditional image generator."""

import numpy as np
import pytest
import torch

from genrec_lib.data import Interactions
from genrec_lib.evaluation import evaluate
from genrec_lib.models import get_model
from genrec_lib.models.multimodal.content import JointContent, OnlyItems
from genrec_lib.models.multimodal.generator import ConditionalVAE, nearest_pixel_distance
from genrec_lib.models.multimodal.lit import LiT, joint_space, retrieval_recall
from genrec_lib.models.multimodal.vbpr import VBPR


def paired_features(n=300, aligned=True, seed=0):
    """Image and text features that share a latent concept (aligned) or not (shuffled)."""
    g = torch.Generator().manual_seed(seed)
    concept = torch.randn(n, 16, generator=g)
    x = concept @ torch.randn(16, 64, generator=g) + 0.3 * torch.randn(n, 64, generator=g)
    t = concept @ torch.randn(16, 32, generator=g) + 0.3 * torch.randn(n, 32, generator=g)
    if not aligned:
        t = t[torch.randperm(n, generator=g)]
    return x, t


@pytest.mark.parametrize("aligned", [True, False])
def test_lit_aligns_paired_towers_and_only_those(aligned):
    x, t = paired_features(aligned=aligned)
    lit = LiT(image_dim=64, text_dim=32, dim=16)
    losses = lit.fit(x[:200], t[:200], epochs=40, batch_size=50, seed=0)
    with torch.no_grad():
        recall = retrieval_recall(lit.encode_text_features(t[200:]), lit.encode_image_features(x[200:]))
    chance = 10 / 100
    if aligned:
        assert losses[-1] < losses[0] and recall["R@10"] > 5 * chance
    else:  # nothing to learn about held-out pairs: retrieval stays near chance
        assert recall["R@10"] < 2.5 * chance


def test_lit_rejects_unmatched_pairs():
    with pytest.raises(ValueError, match="matched pairs"):
        LiT(image_dim=4, text_dim=4).fit(torch.randn(5, 4), torch.randn(6, 4))
    with pytest.raises(ValueError, match="unknown joint space"):
        joint_space("clip")


def test_open_clip_switch_runs_a_random_small_clip():
    space = joint_space("open_clip", model_name="ViT-S-32", pretrained=None, device="cpu")
    images = torch.rand(2, 3, 40, 40)
    v, w = space.encode_images(images), space.encode_texts(["a red apple", "a blue car"])
    assert v.shape == w.shape == (2, space.model.visual.output_dim)
    assert torch.allclose(v.norm(dim=1), torch.ones(2), atol=1e-4) and torch.allclose(w.norm(dim=1), torch.ones(2), atol=1e-4)


def feature_world(n_users=80, n_items=60, per_user=10, seed=0):
    """Two user groups, each picking items of one visual kind; feature 0 says which kind."""
    rng = np.random.default_rng(seed)
    kind = np.arange(n_items) % 2
    features = np.c_[np.where(kind == 1, 1.0, -1.0), rng.normal(size=(n_items, 7))] + 0.1 * rng.normal(size=(n_items, 8))
    rows = []
    for u in range(n_users):
        pool = np.flatnonzero(kind == u % 2)
        for t, i in enumerate(rng.choice(pool, per_user, replace=False)):
            rows.append((u, int(i), 1, t))
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    data = Interactions.from_frame(frame, pd.DataFrame(index=np.arange(n_items)), pd.DataFrame(index=np.arange(n_users)), "features")
    return data, torch.tensor(features, dtype=torch.float32)


def test_vbpr_and_content_rank_cold_items_by_their_looks_bpr_cannot():
    from genrec_lib.data.stamps import split_cold_items

    data, f = feature_world()
    split, cold = split_cold_items(data, seed=0, cold_fraction=0.3)
    scores = {}
    for name, model in (("bpr", get_model("bpr", dim=8, batch_size=64, epochs=30, patience=30, seed=0)),
                        # 8 features, not 1,280: the visual part may learn at the ID part's rate here
                        ("vbpr", VBPR(dim=8, visual_dim=4, batch_size=64, epochs=30, patience=30, seed=0, item_features=f,
                                      visual_learning_rate=3e-3)),
                        ("content", JointContent(item_embeddings=f))):
        model.fit(split)
        scores[name] = evaluate(OnlyItems(model, cold, data.n_items), split, "test", ks=(5,))["ndcg@5"]
    # Half of the cold items are of the user's kind and a few of those are her test items, so
    # even a perfect kind detector ranks them in random order (NDCG@5 near 0.5); ID-only is at chance (near 0.2).
    assert scores["vbpr"] > 0.38 and scores["content"] > 0.38, scores
    assert scores["bpr"] < 0.3, scores


def test_bench_runs_the_multimodal_models_on_the_stamps(bench_record):
    from genrec_lib.data import make_split
    from genrec_lib.data.stamps import load_stamps

    data, _ = feature_world(seed=1)
    with pytest.raises(ValueError, match="has no item images"):
        get_model("vbpr", epochs=1).fit(make_split(data, "random", seed=1))  # MovieLens-like data: a clear error
    split = make_split(load_stamps(n_users=120), "random", seed=1)
    vbpr = bench_record("vbpr", split, epochs=2)
    content = bench_record("joint-content", split, lit_epochs=5)
    assert content["metrics"]["test"]["ndcg@10"] > 0


def test_cvae_fits_and_generates_for_conditions():
    torch.manual_seed(0)
    n = 64
    c = torch.nn.functional.normalize(torch.randn(n, 8), dim=1)
    # Images whose colour is a function of the condition: the decoder must use c.
    colour = torch.sigmoid(3 * c[:, :3])
    images = colour[:, :, None, None].expand(n, 3, 32, 32).contiguous()
    vae = ConditionalVAE(cond_dim=8, latent_dim=4, width=8)
    history = vae.fit(images, c, epochs=100, batch_size=16, learning_rate=5e-3, text_condition_prob=0.0, condition_noise=0.0, seed=0)
    assert history[-1]["recon"] < history[0]["recon"]
    out = vae.generate(c[:8], n=2, generator=torch.Generator().manual_seed(0), temperature=0.0)
    assert out.shape == (16, 3, 32, 32)
    error = (out[::2].mean((2, 3)) - colour[:8]).abs().mean()
    assert error < 0.1, error  # follows its condition
    swapped = (out[::2].mean((2, 3)) - colour[:8].flip(0)).abs().mean()
    assert swapped > 2 * error
    assert nearest_pixel_distance(images[:4], images).max() < 1e-6
    assert nearest_pixel_distance(images[:4], images[:4], exclude_self=True).min() > 0
    with pytest.raises(ValueError, match="32, 32"):
        vae.fit(torch.rand(4, 3, 16, 16), c[:4])


def test_vbpr_trains_its_visual_part_at_its_own_rate():
    data, f = feature_world(seed=2)
    from genrec_lib.data import make_split

    split = make_split(data, "random", seed=2)
    vbpr = VBPR(dim=4, visual_dim=2, learning_rate=1e-2, epochs=1, seed=0, item_features=f)
    vbpr.fit(split)
    groups = vbpr.configure_optimizer().param_groups
    assert [g["lr"] for g in groups] == [1e-2, 1e-3]  # ID part, visual part (a tenth by default)
    assert {id(p) for p in groups[1]["params"]} == {id(vbpr.E.weight), id(vbpr.beta_prime.weight), id(vbpr.theta_u.weight)}
    assert abs(vbpr.f.norm(dim=1).pow(2).mean().item() - 1) < 0.2  # standardised features scaled to about unit norm
    with pytest.raises(ValueError, match="visual_learning_rate"):
        VBPR(visual_learning_rate=0.0)
