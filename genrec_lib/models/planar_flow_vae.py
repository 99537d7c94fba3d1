"""Mult-VAE with a planar-flow posterior (Rezende and Mohamed, ICML 2015, on Liang et al., WWW 2018).

https://arxiv.org/abs/1505.05770 (normalising flows for variational inference);
https://arxiv.org/abs/1802.05814 (Mult-VAE)

Mult-VAE's posterior ``q(z | x)`` is a diagonal Gaussian. A normalising flow makes it more
flexible: draw ``z_0 ~ N(mu, diag sigma^2)`` and push it through ``K`` invertible planar maps

    z_k = z_{k-1} + u_k h(w_k^T z_{k-1} + b_k),   h = tanh,

whose Jacobian determinants are cheap, ``log |det dz_k / dz_{k-1}| = log |1 + u_k^T psi_k|`` with
``psi_k = h'(w_k^T z_{k-1} + b_k) w_k``. The change of variables gives the density of ``z_K``
exactly, so the ELBO keeps its closed form up to a one-sample estimate of the KL part:

    log p(x | z_K) - beta * [ log q_0(z_0) - sum_k log |det_k| - log p(z_K) ].

The flow's parameters ``(u_k, w_k, b_k)`` are amortised: a linear head on the encoder's hidden
layer emits them for each user, so every user gets her own posterior shape. ``u_k`` is
re-parameterised so that ``w_k^T u_k >= -1``, the condition under which a planar map with
``tanh`` is invertible. At inference the posterior mean ``mu`` is pushed through the flow and
decoded, as Mult-VAE decodes ``mu``.

Deviations from the papers: Rezende and Mohamed use planar flows on images with a Bernoulli
decoder; here they sit on Mult-VAE's multinomial decoder with its KL annealing, the
training loop of :mod:`genrec_lib.training` and Mult-VAE's ML-100K defaults (chapter 03).
The number of flows (``n_flows=4``) was chosen on ML-100K's validation split.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.models.base import UserBatch, check_positive, register
from genrec_lib.models.multvae import _MultAutoencoder


def planar_flow(z: torch.Tensor, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One planar map per row: ``z`` (B, d), ``u``/``w`` (B, d), ``b`` (B,) -> ``z'`` (B, d), ``log|det|`` (B,).

    ``u`` is first projected so that ``w^T u >= -1`` (invertibility with ``tanh``).
    """
    wu = (w * u).sum(1, keepdim=True)  # (B, 1)
    u_hat = u + (F.softplus(wu) - 1 - wu) * w / (w.pow(2).sum(1, keepdim=True) + 1e-8)
    a = (w * z).sum(1) + b  # (B,)
    z_new = z + u_hat * torch.tanh(a)[:, None]
    psi = (1 - torch.tanh(a).pow(2))[:, None] * w  # (B, d)
    log_det = torch.log((1 + (u_hat * psi).sum(1)).abs() + 1e-8)
    return z_new, log_det


@register("planarvae")
class PlanarFlowVAE(_MultAutoencoder):
    """Mult-VAE whose Gaussian posterior is reshaped by ``n_flows`` amortised planar flows."""

    variational = True

    def __init__(self, n_flows: int = 4, hidden: int = 600, latent: int = 64, dropout: float = 0.5,
                 beta_cap: float = 1.0, anneal_steps: int = 400, batch_size: int = 256, learning_rate: float = 1e-3,
                 weight_decay: float = 0.0, epochs: int = 150, patience: int = 25, eval_every: int = 5,
                 seed: int = 2020):
        check_positive(n_flows=n_flows)
        super().__init__(hidden, latent, dropout, beta_cap, anneal_steps, batch_size, learning_rate,
                         weight_decay, epochs, patience, eval_every, seed)
        self.n_flows = n_flows

    def build(self, split) -> None:
        super().build(split)
        # (u_k, w_k, b_k) for every flow k, from the encoder's hidden layer.
        self.flow_head = nn.Linear(self.hidden, self.n_flows * (2 * self.latent + 1))
        nn.init.normal_(self.flow_head.weight, std=1e-3)
        nn.init.zeros_(self.flow_head.bias)

    def posterior(self, x: torch.Tensor):
        """``x`` (B, I) -> ``mu``, ``log sigma^2`` (B, d) and the flow parameters ``u``, ``w`` (B, K, d), ``b`` (B, K)."""
        h = F.dropout(F.normalize(x, dim=1), p=self.dropout, training=self.training)
        hidden = self.encoder[1](self.encoder[0](h))  # (B, hidden)
        mu, logvar = self.encoder[2](hidden).chunk(2, dim=1)
        params = self.flow_head(hidden).view(len(x), self.n_flows, 2 * self.latent + 1)
        u, w, b = params[..., : self.latent], params[..., self.latent : -1], params[..., -1]
        return mu, logvar, u, w, b

    def push(self, z: torch.Tensor, u, w, b) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the ``K`` flows to ``z`` (B, d); return ``z_K`` and the summed ``log|det|`` (B,)."""
        total = torch.zeros(len(z), device=z.device)
        for k in range(self.n_flows):
            z, log_det = planar_flow(z, u[:, k], w[:, k], b[:, k])
            total = total + log_det
        return z, total

    def training_loss(self, batch) -> torch.Tensor:
        x_u = self.X[batch[0]].to(batch[0].device)  # (B, I), densified from the sparse rows
        mu, logvar, u, w, b = self.posterior(x_u)
        eps = torch.randn_like(mu)
        z_0 = mu + eps * torch.exp(0.5 * logvar)
        z_K, sum_log_det = self.push(z_0, u, w, b)
        log_pi = F.log_softmax(self.decoder(z_K), dim=1)
        nll = -(log_pi * x_u).sum(1).mean()
        log_2pi = math.log(2 * math.pi)
        log_q0 = -0.5 * (eps.pow(2) + logvar + log_2pi).sum(1)  # log N(z_0; mu, sigma^2)
        log_p = -0.5 * (z_K.pow(2) + log_2pi).sum(1)  # log N(z_K; 0, I)
        kl = (log_q0 - sum_log_det - log_p).mean()  # one-sample estimate of KL(q_K || p)
        self.last_beta = self.beta()
        self.update_count += 1
        return nll + self.last_beta * kl

    def score(self, batch: UserBatch) -> torch.Tensor:
        mu, _, u, w, b = self.posterior(batch.history)
        z_K, _ = self.push(mu, u, w, b)
        return self.decoder(z_K)  # (B, I)
