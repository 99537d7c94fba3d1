"""RQ-VAE semantic IDs: k-means, training, dead-code restarts, disambiguation, report, errors."""

import pytest
import torch

from genrec_lib.models.rqvae import RQVAE, add_disambiguation, codebook_report, fit_rqvae, kmeans


def clustered(n_per: int = 30, n_clusters: int = 4, dim: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 3
    return (centres.repeat_interleave(n_per, 0) + 0.3 * torch.randn(n_per * n_clusters, dim, generator=g))


def test_kmeans_finds_separated_clusters():
    x = clustered()
    centroids = kmeans(x, 4, generator=torch.Generator().manual_seed(0))
    assign = torch.cdist(x, centroids).argmin(1).view(4, -1)
    assert centroids.shape == (4, 24)
    assert all(len(row.unique()) == 1 for row in assign) and len(assign[:, 0].unique()) == 4


def test_fit_lowers_loss_and_uses_codebooks():
    x = clustered()
    model, history = fit_rqvae(x, RQVAE(input_dim=24, hidden_dims=(32,), latent_dim=8, codebook_sizes=(4, 4)), steps=150,
                               learning_rate=3e-3, restart_every=25)
    assert history.reconstruction[-1] < 0.5 * history.reconstruction[0]
    codes = model.encode(x)
    assert codes.shape == (120, 2) and codes.dtype == torch.long
    report = codebook_report(codes, (4, 4))
    assert report["usage"][0] == 1.0
    assert len(codes[:, 0].view(4, -1)[:, 0].unique()) == 4  # the first level separates the clusters


def test_dead_codes_are_restarted():
    x = clustered()
    model = RQVAE(input_dim=24, hidden_dims=(32,), latent_dim=8, codebook_sizes=(6,))
    model.init_codebooks(x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.codebooks[0][0] = 1e6  # a codeword nobody is near: dead
    assert model.restart_dead_codes(x, torch.Generator().manual_seed(0)) >= 1
    assert (model.codebooks[0].abs() < 1e5).all()


def test_deterministic_under_seed():
    x = clustered()
    a = fit_rqvae(x, RQVAE(input_dim=24, hidden_dims=(16,), latent_dim=8, codebook_sizes=(4, 4)), steps=30, seed=3)[0].encode(x)
    b = fit_rqvae(x, RQVAE(input_dim=24, hidden_dims=(16,), latent_dim=8, codebook_sizes=(4, 4)), steps=30, seed=3)[0].encode(x)
    assert torch.equal(a, b)


def test_disambiguation_makes_ids_unique():
    codes = torch.tensor([[0, 1], [2, 3], [0, 1], [0, 1], [2, 2]])
    ids = add_disambiguation(codes)
    assert ids[:, 2].tolist() == [0, 0, 1, 2, 0]
    assert len(torch.unique(ids, dim=0)) == len(ids)
    report = codebook_report(codes, (3, 4))
    assert report["collision_rate"] == pytest.approx(1 - 3 / 5)
    assert report["items_in_collisions"] == pytest.approx(3 / 5)
    assert report["max_items_per_tuple"] == 3
    assert report["usage"] == [2 / 3, 3 / 4]


@pytest.mark.parametrize("kwargs,param", [({"latent_dim": 0}, "latent_dim"), ({"codebook_sizes": (8, 0)}, "codebook_sizes"),
                                          ({"codebook_sizes": ()}, "n_levels"), ({"beta": -1.0}, "beta")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        RQVAE(**kwargs)


def test_bad_fit_arguments_raise():
    with pytest.raises(ValueError, match="steps"):
        fit_rqvae(clustered(), steps=0)
