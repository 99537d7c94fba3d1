"""List-CVAE: generating whole slates with a conditional VAE (Jiang et al., ICLR 2019).

https://arxiv.org/abs/1803.01682 ("Beyond Greedy Ranking: Slate Optimization via List-CVAE")

A ranker scores items one by one and a slate is its top k. List-CVAE instead models the
*whole slate* ``s = (s_1, ..., s_k)`` jointly, conditioned on ``c``: the user and the
response the slate received, ``r in {0,1}^k`` (which positions were engaged with). It is a
conditional VAE: an encoder ``q(z | s, c)``, a conditional prior ``p(z | c)`` and a decoder
``p(s | z, c)`` that emits one vector per position; position ``j``'s distribution over items
is the softmax of that vector's dot products with every item embedding. Training
maximises the conditional ELBO

    sum_j log p(s_j | z, c) - beta * KL(q(z | s, c) || p(z | c)).

At inference the condition asks for the *ideal* response, ``r = 1^k`` (every position
engaged), ``z`` is the prior's mean, and the slate is decoded position by position without
repeating an item. Because the positions are decoded from one shared ``z``, the model can
learn which items go well together rather than scoring each one alone.

Deviations from the paper: the paper trains on logged slates with their real responses; a
public dataset of logged slates with responses is not available offline, so training slates
are *constructed* from ML-100K: each user's training items are split at random (every
epoch) into a conditioning part and a target part, each slate position holds a target item
with probability ``positive_share`` and otherwise a random item the user never rated, and
``r_j`` says which is which. The user enters the condition through a linear encoder of the
conditioning part (the paper's condition is the response vector, with user features as an
option), and the prior's mean and variance are a network of the condition (the paper
learns a prior N(mu_0, sigma_0)). Item embeddings are learned jointly (the paper pre-trains
them), and each position's softmax runs over the whole catalogue (the paper down-samples
negatives to scale to large corpora; 1,682 films need no sampling). ``score`` returns,
for every item, the log of its summed probability over the k positions, so that
``genrec bench`` can rank with the model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.data import Split
from genrec_lib.models.base import TrainableRecommender, UserBatch, check_non_negative, check_positive, register
from genrec_lib.models.layers import SparseRows


@register("listcvae")
class ListCVAE(TrainableRecommender):
    """Conditional VAE over slates of ``slate_size`` items, conditioned on user and response."""

    def __init__(self, slate_size: int = 10, dim: int = 64, latent: int = 32, hidden: int = 256,
                 positive_share: float = 0.5, condition_share: float = 0.7, beta: float = 0.5,
                 batch_size: int = 128, learning_rate: float = 1e-3, weight_decay: float = 0.0, epochs: int = 80,
                 patience: int = 15, eval_every: int = 5, seed: int = 2020):
        super().__init__()
        check_positive(slate_size=slate_size, dim=dim, latent=latent, hidden=hidden, batch_size=batch_size,
                       learning_rate=learning_rate, epochs=epochs, patience=patience, eval_every=eval_every)
        check_non_negative(beta=beta, weight_decay=weight_decay)
        for key, value in dict(positive_share=positive_share, condition_share=condition_share).items():
            if not 0 < value < 1:
                raise ValueError(f"{key} must be in (0, 1), got {value!r}")
        self.slate_size, self.dim, self.latent, self.hidden = slate_size, dim, latent, hidden
        self.positive_share, self.condition_share, self.beta = positive_share, condition_share, beta
        self.batch_size, self.learning_rate, self.weight_decay = batch_size, learning_rate, weight_decay
        self.epochs, self.patience, self.eval_every, self.seed = epochs, patience, eval_every, seed

    def build(self, split: Split) -> None:
        I, k, d = split.n_items, self.slate_size, self.dim
        if k > I:
            raise ValueError(f"slate_size ({k}) must be <= the number of items ({I})")
        self.E = nn.Embedding(I, d)  # item embeddings, shared by the encoder and the decoder's output layer
        nn.init.normal_(self.E.weight, std=0.1)
        self.user_enc = nn.Sequential(nn.Linear(I, d), nn.Tanh())  # condition part 1: the user
        c_dim = d + k  # c = [user, response r]
        self.q_net = nn.Sequential(nn.Linear(k * d + c_dim, self.hidden), nn.Tanh(), nn.Linear(self.hidden, 2 * self.latent))
        self.p_net = nn.Sequential(nn.Linear(c_dim, self.hidden), nn.Tanh(), nn.Linear(self.hidden, 2 * self.latent))
        self.dec = nn.Sequential(nn.Linear(self.latent + c_dim, self.hidden), nn.Tanh(), nn.Linear(self.hidden, k * d))
        self.X = SparseRows(split.train.csr())  # (U, I), densified per batch

    def condition(self, history: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``c = [user_enc(history), r]``: (B, d + k) from ``history`` (B, I) and responses ``r`` (B, k)."""
        return torch.cat([self.user_enc(F.normalize(history, dim=1)), r], dim=1)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Per-position logits over all items: (B, k, I)."""
        out = self.dec(torch.cat([z, c], dim=1)).view(len(z), self.slate_size, self.dim)  # (B, k, d)
        return out @ self.E.weight.T

    def make_slates(self, X: torch.Tensor, generator: torch.Generator | None = None):
        """Construct training slates from users' items ``X`` (B, I).

        Returns the conditioning history (B, I), slates ``s`` (B, k) and responses ``r`` (B, k).
        """
        k = self.slate_size
        rand = lambda: torch.rand(X.shape, generator=generator, device=X.device)  # noqa: E731
        keep = (rand() < self.condition_share) & (X > 0)
        history = keep.float()
        target = (X > 0) & ~keep
        # k random target items and k random never-rated items per user (random keys, top k).
        pos = torch.topk(rand().masked_fill(~target, -1.0), k, dim=1).indices
        neg = torch.topk(rand().masked_fill(X > 0, -1.0), k, dim=1).indices
        use_pos = torch.rand(len(X), k, generator=generator, device=X.device) < self.positive_share
        use_pos &= torch.gather(target, 1, pos)  # a user with fewer than k targets fills the rest with negatives
        s = torch.where(use_pos, pos, neg)  # (B, k); pos and neg are disjoint, each without repeats
        r = torch.gather(target.float(), 1, s)  # 1 where the slot holds a target item
        return history, s, r

    def training_batches(self, split: Split, generator: torch.Generator):
        order = torch.randperm(split.n_users, generator=generator)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            yield self.make_slates(self.X[rows], generator)

    def training_loss(self, batch) -> torch.Tensor:
        history, s, r = batch
        c = self.condition(history, r)
        mu_q, logvar_q = self.q_net(torch.cat([self.E(s).flatten(1), c], dim=1)).chunk(2, dim=1)
        mu_p, logvar_p = self.p_net(c).chunk(2, dim=1)
        z = mu_q + torch.randn_like(mu_q) * torch.exp(0.5 * logvar_q)
        logits = self.decode(z, c)  # (B, k, I)
        nll = F.cross_entropy(logits.flatten(0, 1), s.flatten(), reduction="sum") / len(s)
        kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1).sum(1).mean()
        return nll + self.beta * kl

    def slate_logits(self, history: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        """Decode from the prior mean under response ``r`` (default: the ideal ``1^k``): (B, k, I)."""
        if r is None:
            r = torch.ones(len(history), self.slate_size, device=history.device)
        c = self.condition(history, r)
        mu_p, _ = self.p_net(c).chunk(2, dim=1)
        return self.decode(mu_p, c)

    @torch.no_grad()
    def generate(self, history: torch.Tensor, r: torch.Tensor | None = None,
                 exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Slates (B, k) decoded position by position, never repeating an item.

        ``exclude`` (B, I) marks items that may not appear (default: the history itself).
        """
        logits = self.slate_logits(history, r)  # (B, k, I)
        banned = (history if exclude is None else exclude) > 0
        slate = []
        for j in range(self.slate_size):
            pick = logits[:, j].masked_fill(banned, float("-inf")).argmax(1)  # (B,)
            slate.append(pick)
            banned = banned.clone()
            banned[torch.arange(len(pick)), pick] = True
        return torch.stack(slate, 1)

    def score(self, batch: UserBatch) -> torch.Tensor:
        log_p = torch.log_softmax(self.slate_logits(batch.history), dim=2)  # (B, k, I)
        return torch.logsumexp(log_p, dim=1)  # log of each item's summed probability over the k positions
