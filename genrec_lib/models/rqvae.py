"""RQ-VAE: residual-quantised autoencoder that turns item embeddings into semantic IDs.

Residual (multistage) vector quantisation goes back to speech coding (Juang & Gray, ICASSP
1982) and is used in neural codecs such as SoundStream (Zeghidour et al., 2021,
https://arxiv.org/abs/2107.03312); Lee et al. (CVPR 2022), https://arxiv.org/abs/2203.01941,
named the RQ-VAE; Rajput et al., "Recommender Systems with Generative Retrieval" (TIGER,
NeurIPS 2023), https://arxiv.org/abs/2305.05065, use it to give each item a short tuple of codes.

An MLP encoder maps an item's text embedding x to a latent z. Level 1 picks the nearest
codeword e_1 of codebook 1 to z; level 2 quantises the residual r_2 = z - e_1 with codebook 2,
and so on: the code tuple (c_1, ..., c_m) is coarse-to-fine, so similar items share prefixes.
The decoder reconstructs x from z_q = sum_l e_l. The loss is
``||x - x_hat||^2 + sum_l (||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2)`` (TIGER's per-level
form; Lee et al. share one codebook across levels, update it by moving averages and commit
the partial sums instead) with the
straight-through estimator for the gradient of z. Items whose tuples collide get one
more code, 0, 1, 2, ... (the disambiguation level), so every item has a unique ID.

This is a plain ``nn.Module`` plus :func:`fit_rqvae`, not a Recommender: TIGER uses it.

Deviations from the paper: full-batch training (the catalogue has 1,682 items);
codebooks initialised by k-means on the first batch of residuals, and codewords unused
for a while re-seeded at random residuals (guards against codebook collapse); inputs
centred before encoding; small codebooks sized for ML-100K.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from genrec_lib.models.base import check_non_negative, check_positive


def kmeans(points: torch.Tensor, k: int, iterations: int = 20, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lloyd's k-means: (N, d) points -> (k, d) centroids; empty clusters keep a random point."""
    centroids = points[torch.randperm(len(points), generator=generator)[:k]].clone()
    if len(centroids) < k:  # fewer points than codewords: repeat them with a little noise
        extra = points[torch.randint(len(points), (k - len(centroids),), generator=generator)]
        centroids = torch.cat([centroids, extra + 1e-3 * torch.randn(extra.shape, generator=generator)])
    for _ in range(iterations):
        assign = torch.cdist(points, centroids).argmin(1)  # (N,)
        onehot = nn.functional.one_hot(assign, k).to(points.dtype)  # a matmul, unlike index_add_, is deterministic
        sums, counts = onehot.T @ points, onehot.sum(0).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


class RQVAE(nn.Module):
    """MLP encoder, ``len(codebook_sizes)`` residual codebooks, MLP decoder."""

    def __init__(self, input_dim: int = 384, hidden_dims: tuple[int, ...] = (128,), latent_dim: int = 32,
                 codebook_sizes: tuple[int, ...] = (32, 32, 32), beta: float = 0.25):
        super().__init__()
        check_positive(input_dim=input_dim, latent_dim=latent_dim, n_levels=len(codebook_sizes), **{
            f"codebook_sizes[{i}]": k for i, k in enumerate(codebook_sizes)})
        check_non_negative(beta=beta)
        self.codebook_sizes, self.beta = tuple(int(k) for k in codebook_sizes), beta
        dims = [input_dim, *hidden_dims, latent_dim]
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])
        # e_l: one (K_l, d) codebook per level
        self.codebooks = nn.ParameterList([nn.Parameter(torch.randn(k, latent_dim) * 0.1) for k in self.codebook_sizes])
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("initialised", torch.tensor(False))

    def quantise(self, z: torch.Tensor):
        """Residual quantisation of z (N, d): codes (N, m), z_q (N, d), residuals r_l and codewords e_l, [(N, d)] * m each."""
        residual, z_q, codes, residuals, chosen = z, torch.zeros_like(z), [], [], []
        for codebook in self.codebooks:
            residuals.append(residual)
            c = torch.cdist(residual, codebook).argmin(1)  # (N,)
            # e = codebook[c] as a one-hot matmul: its backward is deterministic on multi-threaded CPUs
            e = nn.functional.one_hot(c, len(codebook)).to(z.dtype) @ codebook  # (N, d)
            codes.append(c)
            chosen.append(e)
            z_q = z_q + e
            residual = residual - e
        return torch.stack(codes, 1), z_q, residuals, chosen

    def forward(self, x: torch.Tensor):
        """Returns x_hat, codes, and the loss terms (reconstruction, quantisation)."""
        z = self.encoder(x - self.mean)
        codes, z_q, residuals, chosen = self.quantise(z)
        quant = sum(
            ((r.detach() - e) ** 2).sum(1).mean() + self.beta * ((r - e.detach()) ** 2).sum(1).mean()
            for r, e in zip(residuals, chosen)
        )
        z_st = z + (z_q - z).detach()  # straight-through: decoder gradient flows to the encoder
        x_hat = self.decoder(z_st) + self.mean
        reconstruction = ((x - x_hat) ** 2).sum(1).mean()
        return x_hat, codes, reconstruction, quant

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """k-means on each level's residuals, level by level (Zeghidour et al.'s initialisation)."""
        self.mean.copy_(x.mean(0))
        residual = self.encoder(x - self.mean)
        for codebook in self.codebooks:
            codebook.copy_(kmeans(residual, len(codebook), generator=generator))
            residual = residual - codebook[torch.cdist(residual, codebook).argmin(1)]
        self.initialised.fill_(True)

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor, generator: torch.Generator | None = None) -> int:
        """Re-seed codewords no item uses at a random residual of that level; returns how many."""
        z = self.encoder(x - self.mean)
        codes, _, residuals, _ = self.quantise(z)
        restarted = 0
        for level, codebook in enumerate(self.codebooks):
            dead = torch.bincount(codes[:, level], minlength=len(codebook)) == 0
            n_dead = int(dead.sum())
            if n_dead:
                pick = torch.randint(len(x), (n_dead,), generator=generator)
                codebook[dead] = residuals[level][pick]
                restarted += n_dead
        return restarted

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Code tuples (N, m), without the disambiguation level."""
        return self.quantise(self.encoder(x - self.mean))[0]


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


@dataclass
class RQVAEHistory:
    """Per-step losses and the number of restarted codewords of one :func:`fit_rqvae` run."""

    reconstruction: list[float] = field(default_factory=list)
    quantisation: list[float] = field(default_factory=list)
    restarted: list[int] = field(default_factory=list)


def fit_rqvae(x: torch.Tensor, model: RQVAE | None = None, steps: int = 300, learning_rate: float = 1e-3,
              restart_every: int = 100, restart_until: float = 0.8, kmeans_init: bool = True,
              seed: int = 2020) -> tuple[RQVAE, RQVAEHistory]:
    """Train an RQ-VAE on item embeddings ``x`` (N, input_dim) with full-batch Adam.

    Dead codewords are restarted every ``restart_every`` steps during the first
    ``restart_until`` share of the steps (``restart_every=0`` switches restarts off), so
    the last steps settle the codebooks. ``kmeans_init=False`` keeps the random initial
    codebooks (with ``restart_every=0``, to watch them collapse).
    """
    check_positive(steps=steps, learning_rate=learning_rate)
    check_non_negative(restart_every=restart_every, restart_until=restart_until)
    threads = torch.get_num_threads()
    # The problem is tiny (1,682 x 384): one thread is as fast, and it makes the codes
    # bit-identical whatever the machine's thread count (threaded reductions reorder sums).
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        x = x.float()
        model = model or RQVAE(input_dim=x.shape[1])
        for layer in model.modules():  # weights drawn under ``seed``, whatever the RNG did before
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        if kmeans_init:
            model.init_codebooks(x, generator)
        else:
            model.mean.copy_(x.mean(0))
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        history = RQVAEHistory()
        model.train()
        for step in range(1, steps + 1):
            _, _, reconstruction, quant = model(x)
            optimizer.zero_grad(set_to_none=True)
            (reconstruction + quant).backward()
            optimizer.step()
            history.reconstruction.append(float(reconstruction.detach()))
            history.quantisation.append(float(quant.detach()))
            if restart_every and step % restart_every == 0 and step <= restart_until * steps:
                history.restarted.append(model.restart_dead_codes(x, generator))
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model, history


def add_disambiguation(codes: torch.Tensor) -> torch.Tensor:
    """Append a code that numbers the items sharing a tuple (0, 1, ...): (N, m) -> (N, m + 1)."""
    _, group = torch.unique(codes, dim=0, return_inverse=True)  # (N,) tuple id per item
    order = torch.argsort(group, stable=True)  # items of one tuple next to each other, by index
    sorted_group = group[order]
    starts = torch.searchsorted(sorted_group, sorted_group, side="left")
    rank = torch.empty_like(group)
    rank[order] = torch.arange(len(group)) - starts
    return torch.cat([codes, rank.unsqueeze(1)], 1)


def codebook_report(codes: torch.Tensor, codebook_sizes: tuple[int, ...]) -> dict:
    """Share of codewords used per level, and collisions of the m-level tuples (before disambiguation)."""
    n_unique = len(torch.unique(codes, dim=0))
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    return {
        "usage": [len(torch.unique(codes[:, level])) / k for level, k in enumerate(codebook_sizes)],
        "collision_rate": 1 - n_unique / len(codes),  # items that need a disambiguation code > 0
        "items_in_collisions": float((counts[inverse] > 1).float().mean()),
        "max_items_per_tuple": int(counts.max()),
        "perplexity": [float(np.exp(-(p * np.log(p)).sum())) for p in (
            np.bincount(codes[:, level].numpy(), minlength=k) / len(codes) + 1e-12 for level, k in enumerate(codebook_sizes))],
    }
