"""A conditional VAE that generates item images from a point of the joint space.

Conditional VAE: Sohn, Lee & Yan, "Learning Structured Output Representation using Deep
Conditional Generative Models", NeurIPS 2015 (https://papers.nips.cc/paper/5775);
the VAE itself: Kingma & Welling, ICLR 2014 (https://arxiv.org/abs/1312.6114).

The condition ``c`` is a unit vector of the joint image-text space (chapter 14). The
encoder ``q(z | x, c)`` and decoder ``p(x | z, c)`` are small convolutional networks at
32 x 32 pixels; training maximises the conditional ELBO

    log p(x | c) >= E_q[log p(x | z, c)] - beta * KL(q(z | x, c) || N(0, I)),

with a Bernoulli likelihood on pixel intensities in [0, 1]. To generate for a condition we
draw ``z ~ N(0, I)`` and decode.

Deviations from the paper: the prior is the standard normal, not a learned ``p(z | c)``;
during training the condition is the item's *image* embedding or, with probability
``text_condition_prob``, its *caption* embedding, so that the decoder accepts conditions
from either side of the joint space (a text request, a user's taste vector); a little
Gaussian noise on the condition smooths it between catalogue points.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.models.base import check_non_negative, check_positive


class ConditionalVAE(nn.Module):
    """Conditional VAE on (N, 3, 32, 32) images in [0, 1], conditioned on (N, cond_dim) vectors.

    Args:
        cond_dim: width of the condition (the joint space's d).
        latent_dim: width of z.
        width: channels of the first convolution (doubled twice).
        beta: weight of the KL term.
    """

    image_size = 32

    def __init__(self, cond_dim: int = 128, latent_dim: int = 32, width: int = 32, beta: float = 1.0):
        super().__init__()
        check_positive(cond_dim=cond_dim, latent_dim=latent_dim, width=width)
        check_non_negative(beta=beta)
        self.cond_dim, self.latent_dim, self.beta = cond_dim, latent_dim, beta
        w = width
        self.encoder = nn.Sequential(  # (N, 3, 32, 32) -> (N, 4w, 4, 4)
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),
        )
        self.to_stats = nn.Linear(4 * w * 16 + cond_dim, 2 * latent_dim)  # -> (mu, log sigma^2)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim + cond_dim, 4 * w * 16), nn.ReLU())
        self.decoder = nn.Sequential(  # (N, 4w, 4, 4) -> (N, 3, 32, 32) logits
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, 3, 4, 2, 1),
        )
        self.width = w

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, c): mean and log-variance, (N, latent_dim) each."""
        h = self.encoder(x).flatten(1)  # (N, 4w*16)
        mu, logvar = self.to_stats(torch.cat([h, c], 1)).chunk(2, dim=1)
        return mu, logvar.clamp(-8, 8)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """p(x | z, c): pixel logits, (N, 3, 32, 32)."""
        h = self.from_latent(torch.cat([z, c], 1)).view(-1, 4 * self.width, 4, 4)
        return self.decoder(h)

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative conditional ELBO per image (reconstruction, KL), both averaged over the batch."""
        mu, logvar = self.encode(x, c)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation
        recon = F.binary_cross_entropy_with_logits(self.decode(z, c), x, reduction="sum") / len(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / len(x)
        return recon, kl

    def fit(self, images: torch.Tensor, image_conditions: torch.Tensor, text_conditions: torch.Tensor | None = None,
            epochs: int = 60, batch_size: int = 64, learning_rate: float = 2e-3, text_condition_prob: float = 0.5,
            condition_noise: float = 0.05, seed: int = 2020) -> list[dict]:
        """Train on (images, conditions); returns per-epoch mean reconstruction and KL terms."""
        if images.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"images must be (N, 3, 32, 32), got {tuple(images.shape)}; use catalogue.images(32)")
        if len(images) != len(image_conditions) or (text_conditions is not None and len(text_conditions) != len(images)):
            raise ValueError("images and conditions must have the same number of rows")
        check_positive(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
        if not 0 <= text_condition_prob <= 1:
            raise ValueError(f"text_condition_prob must lie in [0, 1], got {text_condition_prob!r}")
        device = next(self.parameters()).device
        x, c_img = images.to(device), image_conditions.float().to(device)
        c_txt = c_img if text_conditions is None else text_conditions.float().to(device)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(self.parameters(), lr=learning_rate)
        history = []
        self.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            totals = torch.zeros(2)
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size].to(device)
                use_text = (torch.rand(len(index), 1, generator=generator) < text_condition_prob).to(device)
                c = torch.where(use_text, c_txt[index], c_img[index])
                c = F.normalize(c + condition_noise * torch.randn(c.shape, generator=generator).to(device), dim=-1)
                recon, kl = self.loss(x[index], c)
                optimizer.zero_grad(set_to_none=True)
                (recon + self.beta * kl).backward()
                optimizer.step()
                totals += torch.tensor([float(recon.detach()), float(kl.detach())]) * len(index)
            history.append({"recon": float(totals[0]) / len(x), "kl": float(totals[1]) / len(x)})
        self.eval()
        return history

    @torch.no_grad()
    def generate(self, c: torch.Tensor, n: int = 1, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` images per condition: c (M, cond_dim) -> (M * n, 3, 32, 32) in [0, 1], grouped by condition."""
        check_positive(n=n)
        check_non_negative(temperature=temperature)
        device = next(self.parameters()).device
        c = F.normalize(c.float(), dim=-1).repeat_interleave(n, dim=0).to(device)
        z = temperature * torch.randn(len(c), self.latent_dim, generator=generator).to(device)
        was_training = self.training
        self.eval()
        images = torch.sigmoid(self.decode(z, c)).cpu()
        self.train(was_training)
        return images


@torch.no_grad()
def nearest_pixel_distance(queries: torch.Tensor, references: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """RMS pixel distance from each query image to its nearest reference image: (Q,).

    With ``exclude_self`` (queries are the references) each image's distance to itself is ignored.
    """
    q, r = queries.flatten(1), references.flatten(1)
    d = torch.cdist(q, r, compute_mode="donot_use_mm_for_euclid_dist") / q.shape[1] ** 0.5  # (Q, R) RMS per pixel
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    return d.min(1).values
