"""TIGER: generative retrieval over semantic IDs (Rajput et al., NeurIPS 2023).

https://arxiv.org/abs/2305.05065

Each item's text (title, year, genres) is embedded with all-MiniLM-L6-v2 and quantised
by an RQ-VAE (:mod:`genrec_lib.models.rqvae`) into a tuple of codes (c_1, ..., c_m, c_d),
the last one numbering items whose tuples collide. A user's history becomes a sequence of
semantic-ID tokens; an encoder-decoder transformer reads it and decodes the next item's
code tuple one level at a time. At inference a beam search walks a prefix trie of the
catalogue, so only tuples that name a real item are generated; the beam's items are the
recommendations, ranked by the sum of their code log-probabilities.

Deviations from the paper: each history item is one encoder token, the sum of its code
embeddings (the paper feeds the m + 1 codes as separate tokens), which is four times
cheaper; the encoder is causal and the decoder block of target t cross-attends to history
positions < t only, so one pass over a user's window trains every next-item prediction in
it (as SASRec does) instead of one prefix per example; no user-ID token; a small model
sized for ML-100K on a CPU; by default the trie also drops items the user has already seen
(the evaluator masks them anyway), so the beam is spent on rankable items.
"""

from __future__ import annotations

import torch
from torch import nn

from genrec_lib.data import Split, item_text, pad_sequences
from genrec_lib.models.base import TrainableRecommender, UserBatch, check_non_negative, check_positive, register
from genrec_lib.models.rqvae import RQVAE, add_disambiguation, codebook_report, fit_rqvae


def build_trie(codes: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Prefix trie of unique code tuples (N, D) as dense tables.

    Returns ``children`` and ``node_of_item``: ``children[l]`` (n_nodes_l, K_l) gives the
    depth-(l+1) node reached from a depth-l node by code c, or -1; leaves (depth D) are
    item indices. ``node_of_item[l]`` (N,) is the depth-l node on each item's path.
    """
    n_items, depth = codes.shape
    sizes = (codes.max(0).values + 1).tolist()
    node = torch.zeros(n_items, dtype=torch.long)  # depth 0: the root
    children, node_of_item = [], [node]
    for level in range(depth):
        if level + 1 < depth:
            _, next_node = torch.unique(codes[:, : level + 1], dim=0, return_inverse=True)
        else:
            next_node = torch.arange(n_items)
        table = torch.full((int(node.max()) + 1, sizes[level]), -1, dtype=torch.long)
        table[node, codes[:, level]] = next_node
        children.append(table)
        node, node_of_item = next_node, node_of_item + [next_node]
    return children, node_of_item


@register("tiger")
class TIGER(TrainableRecommender):
    """Encoder-decoder transformer that generates semantic IDs, with trie-constrained beam search."""

    def __init__(self, codebook_sizes: tuple[int, ...] = (32, 32, 32), rqvae_steps: int = 300, d_model: int = 64,
                 n_heads: int = 2, n_layers: int = 2, dim_feedforward: int = 256, dropout: float = 0.1,
                 max_seq_len: int = 20, beam_size: int = 20, batch_size: int = 32, learning_rate: float = 2e-3,
                 weight_decay: float = 0.0, latest_window: float = 0.5, epochs: int = 30, patience: int = 10,
                 eval_every: int = 5, seed: int = 2020, item_embeddings: torch.Tensor | None = None,
                 exclude_seen: bool = True, constrained: bool = True):
        super().__init__()
        check_positive(d_model=d_model, n_heads=n_heads, n_layers=n_layers, dim_feedforward=dim_feedforward,
                       max_seq_len=max_seq_len, beam_size=beam_size, batch_size=batch_size, rqvae_steps=rqvae_steps,
                       learning_rate=learning_rate, epochs=epochs, eval_every=eval_every, n_levels=len(codebook_sizes))
        check_non_negative(dropout=dropout, weight_decay=weight_decay, patience=patience)
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}")
        if not 0 <= latest_window <= 1:
            raise ValueError(f"latest_window must be in [0, 1], got {latest_window!r}")
        self.codebook_sizes, self.rqvae_steps = tuple(codebook_sizes), rqvae_steps
        self.d_model, self.n_heads, self.n_layers, self.dim_feedforward = d_model, n_heads, n_layers, dim_feedforward
        self.dropout, self.max_seq_len, self.beam_size, self.batch_size = dropout, max_seq_len, beam_size, batch_size
        self.learning_rate, self.weight_decay, self.latest_window = learning_rate, weight_decay, latest_window
        self.epochs, self.patience, self.eval_every, self.seed = epochs, patience, eval_every, seed
        self.item_embeddings, self.exclude_seen, self.constrained = item_embeddings, exclude_seen, constrained

    # --- semantic IDs ----------------------------------------------------------------------

    def build(self, split: Split) -> None:
        x = self.item_embeddings
        if x is None:
            from genrec_lib.text_encoders import encode_texts

            x = encode_texts(item_text(split.dataset))
        rqvae = RQVAE(input_dim=x.shape[1], codebook_sizes=self.codebook_sizes)
        rqvae, self.rqvae_history_ = fit_rqvae(x.float().cpu(), rqvae, steps=self.rqvae_steps, seed=self.seed)
        codes = rqvae.encode(x.float().cpu())
        self.codebook_report_ = codebook_report(codes, self.codebook_sizes)
        object.__setattr__(self, "rqvae_", rqvae)  # a tool of build, not a trained part of TIGER
        self.set_semantic_ids(add_disambiguation(codes))
        d = self.d_model
        self.item_pos = nn.Embedding(self.max_seq_len, d)
        self.level_pos = nn.Embedding(self.n_levels, d)
        # One table holds every level's codes (offset per level), a padding token and BOS.
        self.code_emb = nn.Embedding(self.vocab + 2, d)
        layer = dict(d_model=d, nhead=self.n_heads, dim_feedforward=self.dim_feedforward, dropout=self.dropout,
                     batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), self.n_layers, enable_nested_tensor=False)
        self.decoder = nn.ModuleList(_DecoderLayer(d, self.n_heads, self.dim_feedforward, self.dropout) for _ in range(self.n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, self.vocab)  # logits of level l are columns offset_l .. offset_l + K_l
        sequences = split.train.sequences()
        longest = max([2, *map(len, sequences)])
        self.train_sequences_ = torch.from_numpy(pad_sequences(sequences, longest, split.n_items))  # (U, T) left-padded
        self.train_lengths_ = (self.train_sequences_ != split.n_items).sum(1)

    def set_semantic_ids(self, codes: torch.Tensor) -> None:
        """Install item codes (N, m + 1): the token tables and the prefix trie."""
        self.sizes = tuple((codes.max(0).values + 1).tolist())
        self.n_levels, self.vocab = len(self.sizes), sum(self.sizes)
        offsets = torch.tensor([0, *self.sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets)
        pad = torch.full((1, self.n_levels), -1, dtype=torch.long)
        self.register_buffer("item_codes", torch.cat([codes, pad]))  # (N + 1, D); the pad item has -1
        children, node_of_item = build_trie(codes)
        for level, (table, nodes) in enumerate(zip(children, node_of_item[1:])):
            self.register_buffer(f"children_{level}", table)
            self.register_buffer(f"node_of_item_{level + 1}", nodes)

    # --- network ---------------------------------------------------------------------------

    def encode_history(self, seq: torch.Tensor) -> torch.Tensor:
        """History (B, L) item indices -> memory (B, L, d); each item token sums its code embeddings."""
        codes = self.item_codes[seq]  # (B, L, D)
        tokens = torch.where(codes >= 0, codes + self.offsets, self.vocab)  # pad item -> pad token
        h = self.code_emb(tokens).sum(2) + self.item_pos.weight[-seq.shape[1]:]  # (B, L, d)
        return self.encoder(h, mask=_causal(seq.shape[1], seq.device), is_causal=True)

    def decode(self, prefix: torch.Tensor, memory: torch.Tensor, memory_mask=None) -> torch.Tensor:
        """Token prefixes (B, T, l) -> states (B, T, l, d): T code tuples per user decoded at once."""
        h = self.code_emb(prefix) + self.level_pos.weight[: prefix.shape[2]]
        for layer in self.decoder:
            h = layer(h, memory, memory_mask)
        return self.norm(h)

    def level_logits(self, states: torch.Tensor, level: int) -> torch.Tensor:
        start = int(self.offsets[level])
        return self.head(states)[..., start : start + self.sizes[level]]

    # --- training --------------------------------------------------------------------------

    def training_batches(self, split: Split, generator: torch.Generator):
        seq, length, window = self.train_sequences_, self.train_lengths_, self.max_seq_len + 1
        users = torch.nonzero(length >= 2).squeeze(1)
        users = users[torch.randperm(len(users), generator=generator)]
        # A window of the history per user: the latest one, or (data augmentation) a random earlier one.
        slack = (length[users] - window).clamp(min=0)
        shift = (torch.rand(len(users), generator=generator) * (slack + 1)).long()
        shift = torch.where(torch.rand(len(users), generator=generator) < self.latest_window, 0, shift)
        cols = seq.shape[1] - window - shift.unsqueeze(1) + torch.arange(window)  # (U, L + 1)
        windows = torch.where(cols >= 0, seq[users.unsqueeze(1), cols.clamp(min=0)], split.n_items)
        for start in range(0, len(users), self.batch_size):
            yield windows[start : start + self.batch_size]

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        x, y = batch[:, :-1], batch[:, 1:]  # inputs and next items, (B, L)
        B, L, D = *x.shape, self.n_levels
        memory = self.encode_history(x)
        codes = self.item_codes[y]  # (B, L, D); -1 where y is padding
        bos = torch.full((B, L, 1), self.vocab + 1, device=x.device)
        prefix = torch.cat([bos, (codes + self.offsets)[..., :-1].clamp(min=0)], 2)  # (B, L, D) teacher forcing
        block = torch.arange(L * D, device=x.device) // D
        memory_mask = torch.arange(L, device=x.device)[None, :] > block[:, None]  # target t sees history <= t
        states = self.decode(prefix, memory, memory_mask)  # (B, L, D, d)
        loss = 0.0
        for level in range(D):
            logits = self.level_logits(states[:, :, level], level)  # (B, L, K_l)
            loss = loss + nn.functional.cross_entropy(logits.reshape(B * L, -1), codes[:, :, level].reshape(-1), ignore_index=-1)
        return loss / D

    # --- generation ------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, batch: UserBatch, beam_size: int | None = None, constrained: bool = True):
        """Beam search over code tuples: (B, W) item indices (-1: no such item) and log-probabilities."""
        W = beam_size or self.beam_size
        seq = batch.sequences
        B = len(seq)
        memory = self.encode_history(seq)  # (B, L, d), shared by the user's W beams
        prefix = torch.full((B, W, 1), self.vocab + 1, device=seq.device)
        node = torch.zeros(B, W, dtype=torch.long, device=seq.device)  # trie node per beam; -1 off the trie
        score = torch.full((B, W), float("-inf"), device=seq.device)
        score[:, 0] = 0.0  # one live beam at the root
        unseen = 1.0 - batch.seen if self.exclude_seen else torch.ones_like(batch.seen)
        for level in range(self.n_levels):
            logp = self.level_logits(self.decode(prefix, memory)[:, :, -1], level).log_softmax(-1)  # (B, W, K_l)
            child = getattr(self, f"children_{level}")[node.clamp(min=0)]  # (B, W, K_l)
            child = torch.where(node.unsqueeze(-1) >= 0, child, -1)
            if constrained:
                nodes = getattr(self, f"node_of_item_{level + 1}")
                counts = torch.zeros(B, int(nodes.max()) + 1, device=seq.device).index_add_(1, nodes, unseen)
                live = (child >= 0) & (counts.gather(1, child.clamp(min=0).view(B, -1)).view_as(child) > 0)
                logp = logp.masked_fill(~live, float("-inf"))
            total = (score.unsqueeze(-1) + logp).view(B, -1)  # (B, W K_l)
            score, pick = total.topk(W, dim=1)
            beam, code = pick // self.sizes[level], pick % self.sizes[level]
            node = child.view(B, -1).gather(1, pick)
            prefix = torch.cat([prefix.gather(1, beam.unsqueeze(-1).expand(-1, -1, prefix.shape[2])),
                                (code + self.offsets[level]).unsqueeze(-1)], 2)
        node = torch.where(torch.isfinite(score), node, -1)
        return node, score

    def score(self, batch: UserBatch) -> torch.Tensor:
        items, logp = self.generate(batch, constrained=self.constrained)
        return self._beam_scores(batch, items, logp)

    def _beam_scores(self, batch: UserBatch, items: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
        scores = torch.full_like(batch.history, float("-inf"))
        # Beams that fell off the trie (-1) write to a spare column that is then dropped.
        spare = torch.cat([scores, scores[:, :1]], 1)
        spare.scatter_(1, torch.where(items >= 0, items, scores.shape[1]), logp)
        return spare[:, :-1]

    @torch.no_grad()
    def score_with_cold_slots(self, batch: UserBatch, is_cold: torch.Tensor, k: int = 10, max_share: float = 0.1,
                              shared_levels: int | None = None) -> torch.Tensor:
        """Scores whose top ``k`` may hold cold items, at most ``max_share * k`` of them (the paper's ε rule).

        TIGER's cold-start rule (Rajput et al., Sec. 4.3): a generated ID retrieves the
        item it names and also every cold item (``is_cold``, (n_items,) bool: never a
        training target) whose first ``shared_levels`` codes equal its own; the paper
        matches all content codes, i.e. everything but the disambiguation code (the
        default, ``shared_levels = m``), and caps the share of cold items in the top ``k``
        at ``max_share`` (ε). A cold candidate inherits the log-probability of its best
        matching beam and is ranked just after that beam's item; only the best
        ``floor(max_share * k)`` cold items are kept, the others score ``-inf``. Warm items
        keep the plain beam's scores and order.
        """
        m = self.n_levels - 1  # content codes; the last level only separates collisions
        shared_levels = m if shared_levels is None else shared_levels
        check_positive(k=k, max_share=max_share, shared_levels=shared_levels)
        if max_share > 1 or shared_levels > m:
            raise ValueError(f"need max_share <= 1 and shared_levels <= {m} (the content codes), "
                             f"got max_share={max_share}, shared_levels={shared_levels}")
        if is_cold.shape != (batch.seen.shape[1],) or is_cold.dtype != torch.bool:
            raise ValueError(f"is_cold must be a bool tensor of shape ({batch.seen.shape[1]},), got "
                             f"{tuple(is_cold.shape)} {is_cold.dtype}")
        n_cold = int(max_share * k)  # the cap, e.g. 1 of 10 for the paper's ε = 0.1
        items, logp = self.generate(batch, constrained=self.constrained)  # (B, W)
        scores = self._beam_scores(batch, items, logp).masked_fill(batch.seen > 0, float("-inf"))  # (B, N)
        cold = torch.nonzero(is_cold.to(scores.device)).squeeze(1)  # (C,)
        if n_cold == 0 or len(cold) == 0:
            return scores
        prefix_of = getattr(self, f"node_of_item_{shared_levels}")  # (N,) trie node after `shared_levels` codes
        beam_prefix = torch.where(items >= 0, prefix_of[items.clamp(min=0)], -1)  # (B, W)
        match = beam_prefix.unsqueeze(-1) == prefix_of[cold]  # (B, W, C)
        cold_logp = torch.where(match, logp.unsqueeze(-1), float("-inf")).amax(1)  # (B, C)
        cold_logp = cold_logp.masked_fill(batch.seen[:, cold] > 0, float("-inf"))
        # Just below the matching beam's own score (the beam's item first, then its cold
        # neighbours); then keep only the best n_cold candidates per user.
        gap = 1e-4 * torch.arange(1, len(cold) + 1, device=scores.device, dtype=scores.dtype)
        cold_logp = cold_logp - gap[cold_logp.argsort(1, descending=True).argsort(1)]
        cold_scores = torch.maximum(scores[:, cold], cold_logp)  # (B, C): generated directly, or by a prefix
        keep = torch.zeros_like(cold_scores, dtype=torch.bool)
        keep.scatter_(1, cold_scores.topk(min(n_cold, len(cold)), 1).indices, True)
        scores[:, cold] = cold_scores.masked_fill(~keep, float("-inf"))
        return scores


class _DecoderLayer(nn.Module):
    """Pre-norm decoder layer for T code tuples per user: causal self-attention within each
    tuple (its l <= m + 1 tokens), cross-attention from every token to the user's history."""

    def __init__(self, d: int, n_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, dim_feedforward), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim_feedforward, d))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, memory: torch.Tensor, memory_mask=None) -> torch.Tensor:
        B, T, l, d = h.shape
        x = self.norms[0](h).reshape(B * T, l, d)
        x = self.self_attn(x, x, x, attn_mask=_causal(l, h.device), need_weights=False)[0]
        h = h + self.drop(x.view(B, T, l, d))
        x = self.norms[1](h).reshape(B, T * l, d)
        x = self.cross_attn(x, memory, memory, attn_mask=memory_mask, need_weights=False)[0]
        h = h + self.drop(x.view(B, T, l, d))
        return h + self.drop(self.ff(self.norms[2](h)))


def _causal(n: int, device) -> torch.Tensor:
    return torch.triu(torch.ones(n, n, dtype=torch.bool, device=device), 1)
