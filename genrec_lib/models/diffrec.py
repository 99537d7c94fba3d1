"""DiffRec: diffusion recommender models (Wang et al., SIGIR 2023).

https://arxiv.org/abs/2304.04971

The forward process corrupts a user's interaction vector ``x_0`` in {0,1}^I with Gaussian
noise over a *short* schedule of ``T`` steps,

    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s<=t} (1 - beta_s),

where ``1 - abar_t`` grows linearly from ``noise_scale * noise_min`` to
``noise_scale * noise_max`` (the paper's "linear-var" schedule), so even ``x_T`` keeps most of
the user's signal: personalisation survives the noising. An MLP denoiser ``f_theta(x_t, t)``
with a sinusoidal step embedding predicts ``x_0`` directly; training minimises
``w_t * ||x_0 - f_theta(x_t, t)||^2`` for a uniform step ``t`` (``w_t`` the SNR
difference reweighting when ``reweight``). Inference starts from the *partially* noised
history ``x_{T'}`` (``T' = sampling_steps``; ``0`` starts from the clean history itself)
and runs the ``T`` reverse steps with the posterior mean and no added noise; the last
``x_0`` estimate is the score vector.

Deviations from the paper: the step-importance sampling option is left out (uniform
steps with the SNR reweighting gave the same validation NDCG@10 on ML-100K); training
batches are large (the whole user set fits in memory) and early stopping uses
validation NDCG@10 every ``eval_every`` epochs. Defaults were tuned on the validation
split of ML-100K: a 200-unit denoiser (the paper's 1,000 units over-fit this small
dataset; 200 and 300 units were within validation noise, and the smaller is cheaper).
Every rating counts as an interaction, where the paper's "clean training" setting keeps
only ratings of 4 or more; L-DiffRec (latent diffusion over item clusters) and T-DiffRec
(time-aware reweighting of interactions) are not implemented.
"""

from __future__ import annotations

import torch

from genrec_lib.data import Split
from genrec_lib.models.base import TrainableRecommender, UserBatch, check_non_negative, check_positive, register
from genrec_lib.models.blocks import StepMLP, shuffled_batches
from genrec_lib.models.layers import SparseRows


@register("diffrec")
class DiffRec(TrainableRecommender):
    """Gaussian diffusion on interaction vectors with an x0-predicting MLP denoiser."""

    def __init__(self, steps: int = 5, noise_scale: float = 1e-3, noise_min: float = 5e-4, noise_max: float = 5e-3,
                 sampling_steps: int = 0, hidden: int = 200, emb_dim: int = 10, dropout: float = 0.5,
                 reweight: bool = True, batch_size: int = 256, learning_rate: float = 5e-4,
                 weight_decay: float = 0.0, epochs: int = 400, patience: int = 40, eval_every: int = 10,
                 seed: int = 2020):
        super().__init__()
        check_positive(steps=steps, noise_scale=noise_scale, noise_min=noise_min, noise_max=noise_max, hidden=hidden,
                       emb_dim=emb_dim, batch_size=batch_size, learning_rate=learning_rate, epochs=epochs,
                       patience=patience, eval_every=eval_every)
        check_non_negative(sampling_steps=sampling_steps, weight_decay=weight_decay)
        if noise_min >= noise_max:
            raise ValueError(f"noise_min must be < noise_max, got {noise_min!r} >= {noise_max!r}")
        if noise_scale * noise_max >= 1:
            raise ValueError(f"noise_scale * noise_max must be < 1, got {noise_scale * noise_max!r}")
        if sampling_steps > steps:
            raise ValueError(f"sampling_steps must be <= steps ({steps}), got {sampling_steps!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.steps, self.noise_scale, self.noise_min, self.noise_max = steps, noise_scale, noise_min, noise_max
        self.sampling_steps, self.hidden, self.emb_dim, self.dropout = sampling_steps, hidden, emb_dim, dropout
        self.reweight, self.batch_size = reweight, batch_size
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.epochs, self.patience, self.eval_every, self.seed = epochs, patience, eval_every, seed

    def build(self, split: Split) -> None:
        self.denoiser = StepMLP(split.n_items, self.hidden, self.emb_dim, self.dropout)  # f_theta(x_t, t)
        # Schedule in float64 (the betas are ~1e-6): 1 - abar_t linear in t ("linear-var").
        one_minus_abar = torch.linspace(self.noise_scale * self.noise_min, self.noise_scale * self.noise_max,
                                        self.steps, dtype=torch.float64)
        abar = 1 - one_minus_abar  # (T,)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        beta = 1 - abar / abar_prev
        # Posterior q(x_{t-1} | x_t, x_0) mean = c0_t * x_0 + ct_t * x_t.
        c0 = beta * abar_prev.sqrt() / (1 - abar)
        ct = (1 - abar_prev) * (1 - beta).sqrt() / (1 - abar)
        snr = abar / (1 - abar)
        snr_prev = torch.cat([snr[:1], snr[:-1]])
        w = torch.where(torch.arange(self.steps) == 0, torch.ones_like(snr), snr_prev - snr)
        for name, value in dict(abar=abar, c0=c0, ct=ct, w=w / w.max()).items():
            self.register_buffer(name, value.float(), persistent=False)
        self.X = SparseRows(split.train.csr())  # (U, I), densified per batch

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``f_theta(x_t, t)``: predicted ``x_0`` (B, I) from ``x_t`` (B, I) and steps ``t`` (B,)."""
        return self.denoiser(x_t, t)

    def q_sample(self, x_0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0)`` for per-row steps ``t``."""
        abar_t = self.abar[t][:, None]
        return abar_t.sqrt() * x_0 + (1 - abar_t).sqrt() * noise

    def training_batches(self, split: Split, generator: torch.Generator):
        for rows in shuffled_batches(split.n_users, self.batch_size, generator):
            yield rows, torch.randint(0, self.steps, (len(rows),), generator=generator)

    def training_loss(self, batch) -> torch.Tensor:
        rows, t = batch
        x_0 = self.X[rows].to(rows.device)  # (B, I)
        x_t = self.q_sample(x_0, t, torch.randn_like(x_0))
        mse = (self.denoise(x_t, t) - x_0).pow(2).mean(1)  # (B,)
        weight = self.w[t] if self.reweight else torch.ones_like(mse)
        return (weight * mse).mean()

    @torch.no_grad()
    def reverse(self, x_0: torch.Tensor, sampling_steps: int | None = None, generator: torch.Generator | None = None):
        """Start at ``x_{T'}`` noised from ``x_0`` and run the ``T`` reverse steps; yields each ``x_0`` estimate."""
        start = self.sampling_steps if sampling_steps is None else sampling_steps
        x_t = x_0
        if start > 0:
            noise = torch.randn(x_0.shape, generator=generator, device=x_0.device) if generator else torch.randn_like(x_0)
            x_t = self.q_sample(x_0, torch.full((len(x_0),), start - 1, device=x_0.device), noise)
        for step in reversed(range(self.steps)):
            t = torch.full((len(x_0),), step, device=x_0.device, dtype=torch.long)
            x0_hat = self.denoise(x_t, t)
            yield x0_hat
            x_t = self.c0[step] * x0_hat + self.ct[step] * x_t

    def score(self, batch: UserBatch) -> torch.Tensor:
        # A fixed generator keeps scores deterministic when inference starts from a noised history.
        generator = torch.Generator(device=batch.history.device).manual_seed(self.seed) if self.sampling_steps else None
        for x0_hat in self.reverse(batch.history, generator=generator):
            pass
        return x0_hat  # (B, I)
