"""A cross-encoder reranker over MiniLM text embeddings, reranking a first stage's top K.

Nogueira & Cho, "Passage Re-ranking with BERT", 2019 (monoBERT). https://arxiv.org/abs/1901.04085

A bi-encoder (:mod:`genrec_lib.models.text_retrieval`) embeds the history and the item
separately and compares them with one dot product, so it can score the whole catalogue with
a matrix product. A cross-encoder reads the history and the candidate *together*: every
history item can attend to the candidate, and a classification head on the joint state says
whether the candidate is the next item. That is more expressive and far more expensive per
(user, item) pair, so it only reranks the K best items of a cheap first stage:

    s_CE(u, i) = w^T Transformer([CLS], e_i, e_{s_{T-H+1}}, ..., e_{s_T})_CLS + b.

The input "tokens" are the candidate's and the last H history items' MiniLM embeddings
(projected to ``d``, with a segment embedding for candidate / history and a position
embedding for recency). Training examples are (history, next item) pairs of the training
sequences, positives against hard negatives from the first stage's top K for that history,
with a binary cross-entropy loss on the head.

Deviations from the paper: monoBERT feeds the *word pieces* of query and passage through all
of BERT; here each item is one token (its frozen sentence embedding) and the joint encoder is
a small transformer trained from scratch on top of MiniLM, which keeps training and
reranking to seconds on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.data import Split
from genrec_lib.models.base import Recommender, UserBatch, check_positive, get_model, register
from genrec_lib.models.text_retrieval import training_pairs

#: Reranked items sit this far above the rest, whose first-stage order is kept below them.
_OFFSET = 1e4


@register("minilm-crossencoder")
class CrossEncoderReranker(Recommender):
    """First stage (a registered full-ranking model) + a cross-encoder over its top ``k``.

    Args:
        first_stage: a fitted :class:`Recommender` or a registered name (fitted in ``fit``)
            that reads ``batch.sequences`` (``minilm-biencoder``, ``minilm-mean``).
        k: items of the first stage the cross-encoder reranks.
        n_history: most recent history items the cross-encoder reads (H).
        d, n_heads, n_layers, dropout: the joint transformer.
        n_negatives: hard negatives per training example, drawn from the first stage's top ``k``.
        steps, batch_size, learning_rate: training (``batch_size`` examples per step).
        seed: seeds initialisation and sampling.
    """

    def __init__(self, first_stage: str | Recommender = "minilm-biencoder", k: int = 50, n_history: int = 10,
                 d: int = 128, n_heads: int = 4, n_layers: int = 1, dropout: float = 0.1, n_negatives: int = 7,
                 steps: int = 300, batch_size: int = 64, learning_rate: float = 2e-3, seed: int = 2020):
        super().__init__()
        check_positive(k=k, n_history=n_history, d=d, n_heads=n_heads, n_layers=n_layers, n_negatives=n_negatives,
                       steps=steps, batch_size=batch_size, learning_rate=learning_rate)
        if d % n_heads:
            raise ValueError(f"d ({d}) must be a multiple of n_heads ({n_heads})")
        if n_negatives >= k:
            raise ValueError(f"n_negatives ({n_negatives}) must be smaller than k ({k}), the pool they come from")
        self.first_stage_arg, self.k, self.H, self.d = first_stage, k, n_history, d
        self.n_heads, self.n_layers, self.dropout, self.n_negatives = n_heads, n_layers, dropout, n_negatives
        self.steps, self.batch_size, self.learning_rate, self.seed = steps, batch_size, learning_rate, seed

    # --- the model ----------------------------------------------------------------------
    def _build(self, e: torch.Tensor) -> None:
        torch.manual_seed(self.seed)
        self.register_buffer("e", F.normalize(e.float(), dim=-1))  # (I, 384), frozen
        self.proj = nn.Linear(e.shape[1], self.d)
        self.cls = nn.Parameter(torch.randn(self.d) * 0.02)
        self.segment = nn.Embedding(3, self.d)  # 0 = [CLS], 1 = candidate, 2 = history
        self.position = nn.Embedding(self.H + 2, self.d)
        layer = nn.TransformerEncoderLayer(self.d, self.n_heads, 2 * self.d, self.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, self.n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(self.d, 1)

    def forward(self, histories: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Logits (N,) for N (history, candidate) pairs: histories (N, H) left-padded with n_items, candidates (N,)."""
        N, I = len(candidates), self.e.shape[0]
        real = histories < I  # (N, H)
        h = self.proj(self.e[histories.clamp(max=I - 1)])  # (N, H, d)
        c = self.proj(self.e[candidates]).unsqueeze(1)  # (N, 1, d)
        x = torch.cat([self.cls.expand(N, 1, self.d), c, h], 1)  # (N, H + 2, d)
        segments = torch.tensor([0, 1] + [2] * self.H, device=x.device)
        x = x + self.segment(segments) + self.position(torch.arange(self.H + 2, device=x.device))
        pad = torch.cat([torch.zeros(N, 2, dtype=torch.bool, device=x.device), ~real], 1)  # (N, H + 2), True = ignore
        z = self.encoder(x, src_key_padding_mask=pad)  # (N, H + 2, d)
        return self.head(z[:, 0]).squeeze(-1)  # (N,)

    # --- training -----------------------------------------------------------------------
    def fit(self, split: Split) -> "CrossEncoderReranker":
        stage = self.first_stage_arg
        self.first_stage = get_model(stage).fit(split) if isinstance(stage, str) else stage
        fs = self.first_stage
        if getattr(fs, "max_seq_len", None) is None or not hasattr(fs, "user_vectors"):
            raise ValueError("first_stage must be a sequence-reading text model with user_vectors "
                             "(minilm-biencoder or minilm-mean)")
        self.max_seq_len = fs.max_seq_len
        self._build(fs.e)
        L = max(self.max_seq_len, self.H)
        histories, targets = training_pairs(split.train.sequences(), split.n_items, L)
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam([p for n, p in self.named_parameters() if not n.startswith("first_stage.")],
                                     lr=self.learning_rate)
        self.losses_ = []
        self.train()
        for _ in range(self.steps):
            rows = torch.randint(len(targets), (self.batch_size,), generator=generator)
            hist, pos = histories[rows], targets[rows]  # (B, L), (B,)
            neg = self._hard_negatives(hist, pos, generator)  # (B, n_neg)
            cand = torch.cat([pos[:, None], neg], 1)  # (B, 1 + n_neg)
            labels = torch.zeros(cand.shape)
            labels[:, 0] = 1
            short = hist[:, -self.H :].repeat_interleave(cand.shape[1], 0)  # (B (1 + n_neg), H)
            logits = self(short, cand.reshape(-1)).view(cand.shape)
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.losses_.append(float(loss.detach()))
        self.eval()
        return self

    @torch.no_grad()
    def _hard_negatives(self, hist: torch.Tensor, pos: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``n_negatives`` items per row drawn from the first stage's top k, without the positive or the history."""
        fs = self.first_stage
        scores = fs.user_vectors(hist[:, -fs.max_seq_len :]) @ fs.item_vectors().T  # (B, I)
        I = scores.shape[1]
        scores[torch.arange(len(pos)), pos] = float("-inf")
        in_history = hist < I
        scores.scatter_(1, hist.clamp(max=I - 1), torch.where(in_history, float("-inf"), scores.gather(1, hist.clamp(max=I - 1))))
        pool = torch.topk(scores, self.k, dim=1).indices  # (B, k)
        pick = torch.rand(pool.shape, generator=generator).argsort(1)[:, : self.n_negatives]
        return pool.gather(1, pick)

    # --- ranking ------------------------------------------------------------------------
    @torch.no_grad()
    def first_stage_top(self, batch: UserBatch, seed: int = 2020) -> torch.Tensor:
        """The first stage's top ``k`` unseen items per user, (B, k), best first (random ties)."""
        from genrec_lib.evaluation.ranking import masked_scores, topk_random_ties

        return topk_random_ties(masked_scores(self.first_stage, batch), self.k, seed, batch.users)

    @torch.no_grad()
    def rerank(self, sequences: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Cross-encoder logits (B, K) of candidates (B, K) given input sequences (B, L)."""
        B, K = candidates.shape
        hist = sequences[:, -self.H :].repeat_interleave(K, 0)  # (B K, H)
        return self(hist, candidates.reshape(-1)).view(B, K)

    @torch.no_grad()
    def score(self, batch: UserBatch) -> torch.Tensor:
        """First-stage scores, with its top ``k`` replaced by the cross-encoder's (above all others)."""
        first = self.first_stage.score(batch)  # (B, I)
        top = self.first_stage_top(batch)  # (B, k)
        out = first - _OFFSET
        return out.scatter(1, top, self.rerank(batch.sequences, top))
